"""Renderer behaviour: WCS placement, analytic references, gradients, scale, bad input."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from scipy import special

from bayesprof.components import Gaussian, Moffat, PointSource, Sersic
from bayesprof.image import Image, tangent_plane_offsets
from bayesprof.psf import GaussianPSF, MoffatPSF, PixelPSF, gaussian_psf
from bayesprof.render import Renderer, render

DATA = pathlib.Path(__file__).parent / "data"
TPV_HEADER = DATA / "c4d_140818_232043_ooi_z_ls9.N12.hdr"


def _centroid(img):
    y, x = np.indices(img.shape)
    return (img * x).sum() / img.sum(), (img * y).sum() / img.sum()


def _erf_gaussian_pixels(shape, x0, y0, sigma):
    """Analytic pixel integrals of a unit-flux circular Gaussian centred at (x0, y0) px."""
    def line(n, c):
        edges = np.arange(n + 1) - 0.5 - c
        return np.diff(special.ndtr(edges / sigma))
    return np.outer(line(shape[0], y0), line(shape[1], x0))


# --------------------------------------------------------------------------- WCS placement
def _tan_image(reference, shape=(45, 39), scale=0.3, angle_deg=37.0):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [reference.ra.deg + 0.0004, reference.dec.deg - 0.0003]
    w.wcs.crpix = [shape[1] / 2 + 0.3, shape[0] / 2 - 1.7]
    a = np.deg2rad(angle_deg)
    w.wcs.cd = scale / 3600 * np.array([[-np.cos(a), np.sin(a)], [np.sin(a), np.cos(a)]])
    w.pixel_shape = (shape[1], shape[0])
    return Image(np.zeros(shape), variance=1.0, wcs=w, psf=GaussianPSF(0.9), name="tan")


def test_source_lands_where_astropy_says_in_tpv_and_tan_images():
    header = fits.Header.fromtextfile(TPV_HEADER)
    tpv = Image(np.zeros((header["NAXIS2"], header["NAXIS1"])), variance=1.0, wcs=WCS(header),
                psf=GaussianPSF(0.9), name="tpv")
    reference = tpv.center_sky()
    tan = _tan_image(reference)
    rng = np.random.default_rng(3)
    for _ in range(3):
        coord = SkyCoord(reference.ra.deg + rng.uniform(-1.5, 1.5) / 3600, reference.dec.deg + rng.uniform(-1.5, 1.5) / 3600,
                         unit="deg")
        xi, eta = tangent_plane_offsets(coord, reference)
        src = Gaussian(xi=float(xi), eta=float(eta), flux=1.0, fwhm=0.6)
        for image in (tpv, tan):
            model = np.asarray(Renderer(image, reference)(src))
            expect = image.wcs.world_to_pixel(coord)
            got = _centroid(model)
            assert abs(got[0] - expect[0]) < 1e-3 and abs(got[1] - expect[1]) < 1e-3, (image.name, got, expect)


def test_default_wcs_is_north_up_east_left():
    image = Image(np.zeros((31, 31)), variance=1.0, pixel_scale=0.5, psf=GaussianPSF(1.0))
    model = np.asarray(render(PointSource(xi=2.0, eta=1.0, flux=1.0), image))  # 2" east, 1" north
    x, y = _centroid(model)
    assert x == pytest.approx(15 - 4.0, abs=1e-6) and y == pytest.approx(15 + 2.0, abs=1e-6)


# --------------------------------------------------------------------------- analytic references
@pytest.mark.parametrize("fwhm_px", [1.2, 2.2, 4.0])
def test_point_source_is_pixel_integrated_gaussian(fwhm_px):
    """Point source + Gaussian PSF = exact erf pixel integrals (independent closed form)."""
    image = Image(np.zeros((33, 40)), variance=1.0, pixel_scale=0.25, psf=GaussianPSF(fwhm_px * 0.25))
    renderer = Renderer(image)
    src = PointSource(xi=-0.0731, eta=0.1374, flux=1.0 / renderer.counts_per_ujy)
    model = np.asarray(renderer(src))
    x0, y0 = (40 - 1) / 2 + 0.0731 / 0.25, (33 - 1) / 2 + 0.1374 / 0.25
    truth = _erf_gaussian_pixels(image.shape, x0, y0, fwhm_px / 2.3548200450309493)
    assert np.abs(model - truth).max() < 1e-6 * truth.max()


def test_gaussian_galaxy_with_gaussian_psf_is_erf_integral():
    """Round Gaussian (sigma_g) * Gaussian PSF (sigma_p) = Gaussian of sigma^2 = sum: erf integrals."""
    image = Image(np.zeros((40, 40)), variance=1.0, pixel_scale=1.0, psf=GaussianPSF(1.5))
    renderer = Renderer(image)
    model = np.asarray(renderer(Gaussian(xi=0.3, eta=-0.2, flux=1.0 / renderer.counts_per_ujy, fwhm=2.5)))
    sigma = np.hypot(1.5, 2.5) / 2.3548200450309493
    truth = _erf_gaussian_pixels(image.shape, 19.5 - 0.3, 19.5 - 0.2, sigma)
    assert np.abs(model - truth).max() < 2e-5 * truth.max()


def test_source_partly_outside_the_image_matches_a_crop_of_a_larger_render():
    psf = GaussianPSF(1.5)
    big = Image(np.zeros((80, 80)), variance=1.0, pixel_scale=1.0, psf=psf)
    small = Image(np.zeros((30, 30)), variance=1.0, pixel_scale=1.0, psf=psf, origin=(-0.5 - 29.5, -0.5 - 39.5))
    # small's CRVAL point (big's centre, 39.5, 39.5) sits at small's pixel (29.5, 39.5), so small is the
    # crop big[0:30, 10:40]: the galaxy centre is on its right-hand edge and 10 px above its top
    gal = Sersic(xi=0.0, eta=0.0, flux=1.0, re=4.0, n=3.0, q=0.5, pa=20.0)
    ref = np.asarray(Renderer(big, big.center_sky())(gal))
    part = np.asarray(Renderer(small, big.center_sky())(gal))
    x_off, y_off = 39.5 - 29.5, 39.5 - 39.5  # small pixel (i, j) is big pixel (i + 10, j + 0)
    crop = ref[int(y_off):int(y_off) + 30, int(x_off):int(x_off) + 30]
    assert np.abs(part - crop).max() < 1e-6 * ref.max()


# --------------------------------------------------------------------------- gradients
def _loss_fn(renderer, data):
    def loss(comp):
        return jnp.sum((renderer(comp) - data) ** 2)
    return loss


@pytest.mark.parametrize("comp", [
    Sersic(xi=0.3, eta=-0.2, flux=20.0, re=2.0, n=2.5, q=0.6, pa=35.0),
    Sersic(xi=-0.1, eta=0.4, flux=20.0, re=0.5, n=4.0, q=0.3, pa=120.0),
    Moffat(xi=0.1, eta=0.1, flux=10.0, fwhm=1.5, beta=3.0, q=0.8, pa=10.0),
    PointSource(xi=0.21, eta=-0.33, flux=5.0),
])
def test_gradients_agree_with_finite_differences(comp):
    image = Image(np.zeros((32, 32)), variance=1.0, pixel_scale=0.4, psf=GaussianPSF(1.0))
    renderer = Renderer(image)
    data = np.asarray(renderer(comp.replace(flux=comp.flux * 1.1, xi=comp.xi + 0.05)))
    loss = _loss_fn(renderer, data)
    grad = jax.grad(loss)(comp)
    for name in comp.__dataclass_fields__:
        value = getattr(comp, name)
        h = 1e-5 * max(abs(value), 1.0)
        fd = (loss(comp.replace(**{name: value + h})) - loss(comp.replace(**{name: value - h}))) / (2 * h)
        g = getattr(grad, name)
        assert np.isfinite(g)
        assert g == pytest.approx(float(fd), rel=2e-4, abs=1e-7 * max(1.0, abs(float(fd)))), name


def test_vmap_over_parameters_matches_loop():
    image = Image(np.zeros((24, 24)), variance=1.0, pixel_scale=0.5, psf=GaussianPSF(1.0))
    renderer = Renderer(image)
    ns = jnp.array([0.7, 1.5, 3.0, 5.0])
    batch = Sersic(xi=jnp.zeros(4), eta=jnp.zeros(4), flux=jnp.ones(4), re=jnp.full(4, 1.2), n=ns,
                   q=jnp.full(4, 0.7), pa=jnp.full(4, 30.0))
    out = jax.vmap(lambda c: renderer(c))(batch)
    for k, n in enumerate(ns):
        single = renderer(Sersic(flux=1.0, re=1.2, n=float(n), q=0.7, pa=30.0))
        np.testing.assert_allclose(out[k], single, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- scale and bad input
def test_render_is_independent_of_absolute_scale():
    """Fluxes of 1e-10 and 1e6 (GAMA-like and bright data) give identical shapes, no warnings."""
    image = Image(np.zeros((32, 32)), variance=1e-20, pixel_scale=0.2, zeropoint=0.0, psf=GaussianPSF(0.8))
    renderer = Renderer(image)
    gal = Sersic(re=1.0, n=4.0, q=0.5, pa=10.0, flux=1.0)
    unit = np.asarray(renderer(gal))
    for scale in (1e-10, 1e6):
        scaled = np.asarray(renderer(gal.replace(flux=scale)))
        assert np.all(np.isfinite(scaled))
        np.testing.assert_allclose(scaled, unit * scale, rtol=1e-12, atol=0)


def test_bad_psf_and_missing_psf_errors():
    with pytest.raises(ValueError, match="no PSF"):
        Renderer(Image(np.zeros((8, 8)), variance=1.0, pixel_scale=1.0, name="r"))
    with pytest.raises(ValueError, match="positive sum"):
        PixelPSF(-np.ones((5, 5)))
    with pytest.raises(ValueError, match="non-finite"):
        PixelPSF(np.full((5, 5), np.nan))
    with pytest.raises(ValueError, match="fwhm"):
        GaussianPSF(0.0)
    with pytest.raises(ValueError, match="beta"):
        MoffatPSF(1.0, beta=0.9)


def test_seed_gaussian_psf_helper_is_normalised_and_centred():
    psf = gaussian_psf(1.12 / 2.355, 51, 0.262)
    assert psf.image.shape == (51, 51)
    assert psf.image.sum() == pytest.approx(1.0)
    x, y = _centroid(psf.image)
    assert x == pytest.approx(25.0, abs=1e-12) and y == pytest.approx(25.0, abs=1e-12)
