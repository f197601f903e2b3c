"""Renderer accuracy against GalSim (independent reference, tight GSParams).

Tolerances (issue: foundation): max |model - GalSim| <= 1e-3 x peak and stamp sums equal
to 1e-4 over the grid n x re x q x PSF; chi2_sys < 0.01 for the three benchmark images.
"""

import pathlib

import numpy as np
import pytest

import galsim_reference as ref
from bayesprof.components import Sersic
from bayesprof.image import Image
from bayesprof.psf import GaussianPSF, MoffatPSF, PixelPSF
from bayesprof.render import Renderer
from bayesprof.scenes import seed_benchmark_galaxy, seed_benchmark_images

GRID = pathlib.Path(__file__).parent / "data" / "galsim_grid.npz"
PSF_NAMES = ("gauss1.2", "gauss2.2", "gauss4", "moffat2.5", "pixel1x", "pixel3x")
SIZE = 48


def _psfs(grid):
    return {
        "gauss1.2": GaussianPSF(1.2), "gauss2.2": GaussianPSF(2.2), "gauss4": GaussianPSF(4.0),
        "moffat2.5": MoffatPSF(2.0, beta=2.5),
        # GalSim's references interpolate the stamps with its quintic, so the stamps are read so here
        "pixel1x": PixelPSF(grid["pixel1x"], pixel_scale=1.0, interpolant="quintic"),
        "pixel3x": PixelPSF(grid["pixel3x"], pixel_scale=1.0 / 3, interpolant="quintic"),
    }


def _render_case(renderer, row):
    n, re, q, pa, dx, dy, _ = row
    # image x grows to the west (north-up east-left): xi = -dx arcsec at 1 arcsec/px
    comp = Sersic(xi=-dx, eta=dy, flux=1.0 / renderer.counts_per_ujy, re=re, n=n, q=q, pa=pa)
    return np.asarray(renderer(comp))


@pytest.fixture(scope="module")
def grid():
    return dict(np.load(GRID))


@pytest.mark.parametrize("psf_name", PSF_NAMES)
def test_grid_against_galsim(grid, psf_name):
    """Every (n, re, q) with random sub-pixel centre and PA, for one PSF."""
    psf = _psfs(grid)[psf_name]
    p = PSF_NAMES.index(psf_name)
    rows = np.nonzero(grid["params"][:, 6] == p)[0]
    assert len(rows) == 75
    renderer = Renderer(Image(np.zeros((SIZE, SIZE)), variance=1.0, pixel_scale=1.0, psf=psf))
    worst_peak, worst_sum = 0.0, 0.0
    for k in rows:
        model = _render_case(renderer, grid["params"][k])
        truth = grid["images"][k].astype(float)
        err_peak = np.abs(model - truth).max() / truth.max()
        err_sum = abs(model.sum() / truth.sum() - 1.0)
        worst_peak, worst_sum = max(worst_peak, err_peak), max(worst_sum, err_sum)
        assert err_peak <= 1e-3, (psf_name, grid["params"][k][:3], err_peak)
        assert err_sum <= 1e-4, (psf_name, grid["params"][k][:3], err_sum)
    print(f"{psf_name}: worst |model-GalSim|/peak = {worst_peak:.2e}, worst sum error = {worst_sum:.2e}")


@pytest.mark.parametrize("case", [
    (6.0, 0.3, 0.15, 1.2), (1.0, 3.0, 0.6, 2.2), (4.0, 1.0, 1.0, 4.0), (0.5, 10.0, 0.15, 1.2), (2.5, 3.0, 0.6, "moffat"),
])
def test_live_galsim_subset(case):
    """Draw a few cases with GalSim now (not from the stored grid) and compare."""
    n, re, q, fwhm = case
    psf = MoffatPSF(2.0, 2.5) if fwhm == "moffat" else GaussianPSF(fwhm)
    rng = np.random.default_rng(int(n * 100 + re * 10 + q * 1000))
    dx, dy = rng.uniform(-0.5, 0.5, 2)
    pa = rng.uniform(0, 180)
    renderer = Renderer(Image(np.zeros((SIZE, SIZE)), variance=1.0, pixel_scale=1.0, psf=psf))
    model = _render_case(renderer, (n, re, q, pa, dx, dy, 0))
    truth, _ = ref.draw_sersic(n, re, q, pa, 1.0, psf, (SIZE, SIZE), 1.0, (dx, dy))
    assert np.abs(model - truth).max() <= 1e-3 * truth.max()
    assert abs(model.sum() / truth.sum() - 1) <= 1e-4


def test_stored_grid_is_galsim(grid):
    """The stored grid images are GalSim's: re-draw the cheap ones and compare bit-for-bit-ish."""
    psfs = _psfs(grid)
    params = grid["params"]
    cheap = np.nonzero((params[:, 1] <= 3) & (params[:, 0] <= 2.5) & (params[:, 6] < 4))[0][::7]
    for k in cheap:
        n, re, q, pa, dx, dy, p = params[k]
        img, _ = ref.draw_sersic(n, re, q, pa, 1.0, psfs[PSF_NAMES[int(p)]], (SIZE, SIZE), 1.0, (dx, dy))
        np.testing.assert_allclose(grid["images"][k], img, rtol=0, atol=1e-6 * img.max())


def test_benchmark_images_chi2_sys():
    """The seed's r / W1 / NUV images of the benchmark galaxy: chi2_sys < 0.01 each.

    sigma per image gives the issue's peak S/N: 50 in r, 20 in W1, 8 in NUV.
    """
    images = seed_benchmark_images()
    gal = seed_benchmark_galaxy()
    for image, snr in zip(images, (50.0, 20.0, 8.0)):
        renderer = Renderer(image)
        model = np.asarray(renderer(gal))
        counts = gal.flux * renderer.counts_per_ujy
        truth, _ = ref.draw_sersic(gal.n, gal.re, gal.q, gal.pa, counts, image.psf, image.shape, image.pixel_scale,
                                   (0.0, 0.0))
        sigma = truth.max() / snr
        chi2 = np.sum(((model - truth) / sigma) ** 2)
        print(f"{image.name}: chi2_sys = {chi2:.2e}")
        assert chi2 < 0.01, (image.name, chi2)


@pytest.mark.parametrize("dx, dy", [(-78.5, 3.0), (70.0, -2.0), (10.0, 27.0)])
def test_sources_at_and_beyond_the_edges_of_a_wide_image_match_galsim(dx, dy):
    """The Fourier core is periodic and is cut to its source's window on the image: a galaxy
    centred 4 px beyond the left edge, 5 px inside the right edge of an image wider than the
    core's patch (so the patch is tiled), and 7.5 px beyond the top edge, against GalSim."""
    shape = (40, 150)
    psf = GaussianPSF(2.5)
    renderer = Renderer(Image(np.zeros(shape), variance=1.0, pixel_scale=1.0, psf=psf))
    assert renderer.patch < shape[1]
    n, re, q, pa = 2.0, 5.0, 0.5, 30.0
    model = _render_case(renderer, (n, re, q, pa, dx, dy, 0))
    truth, _ = ref.draw_sersic(n, re, q, pa, 1.0, psf, shape, 1.0, (dx, dy))
    assert np.abs(model - truth).max() <= 1e-3 * truth.max()
    assert abs(model.sum() / truth.sum() - 1) <= 1e-4


@pytest.mark.parametrize("beta, fwhm, n, re, q", [
    (1.5, 2.0, 1.0, 3.0, 0.6), (1.5, 2.0, 4.0, 1.0, 1.0), (1.5, 4.0, 0.5, 10.0, 0.15), (2.0, 2.0, 2.5, 3.0, 0.6),
])
def test_heavy_wing_moffat_against_galsim(beta, fwhm, n, re, q):
    """Moffat wings down to beta = 1.5 (~1 % of the light beyond 100 px) must not wrap around
    the periodic core patch or the halo kernels' period: the same tolerances as the grid.
    (Before the alias correction: stamp sums off by 7e-4 to 1.8e-3 at beta = 1.5.)"""
    psf = MoffatPSF(fwhm, beta)
    rng = np.random.default_rng(int(n * 100 + re * 10 + q * 1000))
    dx, dy = rng.uniform(-0.5, 0.5, 2)
    pa = rng.uniform(0, 180)
    renderer = Renderer(Image(np.zeros((SIZE, SIZE)), variance=1.0, pixel_scale=1.0, psf=psf))
    if beta <= 2:  # beyond, the wrapped light stays below Renderer.WING_WRAP_TOL uncorrected
        assert renderer._wing_type is MoffatPSF
    model = _render_case(renderer, (n, re, q, pa, dx, dy, 0))
    truth, _ = ref.draw_sersic(n, re, q, pa, 1.0, psf, (SIZE, SIZE), 1.0, (dx, dy))
    assert np.abs(model - truth).max() <= 1e-3 * truth.max()
    assert abs(model.sum() / truth.sum() - 1) <= 1e-4


@pytest.mark.parametrize("beta", [1.5, 2.0, 2.5])
def test_point_source_flux_in_the_image_with_heavy_wings(beta):
    """A point source's light inside a 48 x 48 image equals the Moffat's integral over that
    square (scipy quadrature, an independent reference) to 1e-6: nothing wraps in."""
    from scipy import integrate

    from bayesprof.components import PointSource

    psf = MoffatPSF(2.0, beta)
    a = psf.alpha_pixels(1.0)
    # folded to 8x Nyquist, so that only what wraps in is measured: the default folding (2x here)
    # leaves 1.4e-6 to 2.2e-6 of the flux out (psf.PSF.FOLD_TAIL; the grid above checks that part)
    renderer = Renderer(Image(np.zeros((SIZE, SIZE)), variance=1.0, pixel_scale=1.0, psf=psf), fold=8)
    model = np.asarray(renderer(PointSource(xi=0.0, eta=0.0, flux=1.0 / renderer.counts_per_ujy)))
    quarter, _ = integrate.dblquad(lambda y, x: (beta - 1) / (np.pi * a * a) * (1 + (x * x + y * y) / (a * a)) ** -beta,
                                   0, SIZE / 2, 0, SIZE / 2, epsabs=1e-13, epsrel=1e-11)
    assert abs(model.sum() / (4 * quarter) - 1) < 1e-6


def test_stamp_with_extended_wings_against_galsim():
    """A 201 x 201 stamp of a beta = 1.5 Moffat (wider than the image's diagonal, so the PSF is
    truncated there) on a 48 x 48 image: the grid's tolerances."""
    import galsim

    stamp = galsim.Moffat(beta=1.5, fwhm=2.0).drawImage(nx=201, ny=201, scale=1.0).array
    psf = PixelPSF(stamp, pixel_scale=1.0, interpolant="quintic")
    renderer = Renderer(Image(np.zeros((SIZE, SIZE)), variance=1.0, pixel_scale=1.0, psf=psf))
    for n, re, q in ((1.0, 3.0, 0.6), (4.0, 1.0, 1.0)):
        rng = np.random.default_rng(int(n * 100 + re * 10 + q * 1000))
        dx, dy = rng.uniform(-0.5, 0.5, 2)
        pa = rng.uniform(0, 180)
        model = _render_case(renderer, (n, re, q, pa, dx, dy, 0))
        truth, _ = ref.draw_sersic(n, re, q, pa, 1.0, psf, (SIZE, SIZE), 1.0, (dx, dy))
        assert np.abs(model - truth).max() <= 1e-3 * truth.max()
        assert abs(model.sum() / truth.sum() - 1) <= 1e-4


def _moffat_stamp(fwhm, size=121):
    """A ``size`` x ``size`` stamp of a pixel-integrated beta = 3 Moffat (FWHM in pixels) sampled
    at the pixel centres, drawn by GalSim: what a survey's effective-PSF stamp is."""
    import galsim

    eff = galsim.Convolve(galsim.Moffat(beta=3.0, fwhm=fwhm), galsim.Pixel(1.0))
    return eff.drawImage(nx=size, ny=size, scale=1.0, method="no_pixel").array


@pytest.mark.parametrize("fwhm, sinc_tol, quintic_min", [(4.0, 2e-4, 4e-3), (2.5, 3e-3, 1.5e-2)])
def test_band_limited_stamp_renders_the_sampled_psf(fwhm, sinc_tol, quintic_min):
    """A sampled PSF is read as band-limited ("auto" picks "sinc" for these stamps): a point
    source and two Sersics rendered through the stamp of a pixel-integrated Moffat match GalSim's
    rendering with the analytic Moffat itself to ``sinc_tol`` of the peak (measured: 1e-4 at
    FWHM 4 px, 2.2e-3 at 2.5 px, where the stamp has 1e-2 of its transform on the Nyquist
    boundary), with one fold and no oversampling.  GalSim's quintic reading of the same stamp
    is at least ``quintic_min`` off (5e-3 and 1.9e-2 measured)."""
    import galsim

    from bayesprof.components import PointSource

    stamp = _moffat_stamp(fwhm)
    analytic = MoffatPSF(fwhm, beta=3.0)
    assert PixelPSF(stamp, pixel_scale=1.0).interpolant == "sinc"
    cases = [(None, 0.0, 1.0, 0.0, 0.31, -0.27), (1.0, 2.0, 0.6, 30.0, 0.1, 0.4), (4.0, 1.0, 0.8, 70.0, -0.45, 0.2)]
    truths = []
    for n, re, q, pa, dx, dy in cases:
        if n is None:
            moffat = galsim.Moffat(beta=3.0, fwhm=fwhm, gsparams=ref.gsparams())
            truths.append(moffat.drawImage(nx=SIZE, ny=SIZE, scale=1.0, offset=(dx, dy)).array)
        else:
            truths.append(ref.draw_sersic(n, re, q, pa, 1.0, analytic, (SIZE, SIZE), 1.0, (dx, dy))[0])
    worst = {}
    for interpolant in ("sinc", "quintic"):
        renderer = Renderer(Image(np.zeros((SIZE, SIZE)), variance=1.0, pixel_scale=1.0,
                                  psf=PixelPSF(stamp, pixel_scale=1.0, interpolant=interpolant)))
        if interpolant == "sinc":
            assert renderer.fold == 1 and renderer.oversample == 1
        errs = []
        for (n, re, q, pa, dx, dy), truth in zip(cases, truths):
            comp = (PointSource(xi=-dx, eta=dy, flux=1.0 / renderer.counts_per_ujy) if n is None
                    else Sersic(xi=-dx, eta=dy, flux=1.0 / renderer.counts_per_ujy, re=re, n=n, q=q, pa=pa))
            errs.append(np.abs(np.asarray(renderer(comp)) - truth).max() / truth.max())
        worst[interpolant] = max(errs)
    print(f"FWHM {fwhm} px: worst |model - analytic|/peak: sinc {worst['sinc']:.1e}, quintic {worst['quintic']:.1e}")
    assert worst["sinc"] <= sinc_tol
    assert worst["quintic"] >= quintic_min


def test_band_limited_point_source_is_the_whittaker_shannon_sum():
    """The renderer's band-limited stamp (its transform cut at Nyquist) equals the real-space
    Whittaker-Shannon interpolation of the samples, sum_mn s_mn sinc(x - m) sinc(y - n)
    (``simulate``'s independent drawing), to 1e-4 of the peak at sub-pixel offsets, in a
    non-square image."""
    from bayesprof.components import PointSource
    from bayesprof.simulate import _draw_psf_at

    image = Image(np.zeros((40, 52)), variance=1.0, pixel_scale=1.0, psf=PixelPSF(_moffat_stamp(3.0, 63)))
    assert image.psf.interpolant == "sinc"
    renderer = Renderer(image)
    for x, y in ((25.5, 19.5), (20.27, 22.81), (30.9, 12.05)):
        model = np.asarray(renderer(PointSource(xi=-(x - 25.5), eta=y - 19.5, flux=1.0 / renderer.counts_per_ujy)))
        direct = _draw_psf_at(image, x, y, 1.0)
        assert np.abs(model - direct).max() <= 1e-4 * direct.max(), (x, y)


def test_auto_interpolant_follows_the_sampling():
    """"auto" reads a stamp as band-limited when its transform on the Nyquist boundary is at most
    PixelPSF.BANDLIMIT_TOL (1e-2) of its sum, else with the quintic: a Moffat of FWHM 2 px
    (3.4e-2) is quintic, 2.5 px (1e-2) and wider are sinc, a 3x oversampled stamp is sinc."""
    import galsim_reference

    levels = {f: PixelPSF(_moffat_stamp(f, 61)).nyquist_level() for f in (2.0, 2.5, 4.0)}
    assert levels[2.0] > PixelPSF.BANDLIMIT_TOL >= levels[2.5] > levels[4.0]
    assert PixelPSF(_moffat_stamp(2.0, 61)).interpolant == "quintic"
    assert PixelPSF(_moffat_stamp(2.5, 61)).interpolant == "sinc"
    assert PixelPSF(galsim_reference.pixel_psf_stamp(3), pixel_scale=1.0 / 3).interpolant == "sinc"
    with pytest.raises(ValueError, match="interpolant"):
        PixelPSF(_moffat_stamp(2.0, 61), interpolant="cubic")
