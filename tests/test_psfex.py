"""PSFEx models evaluated at a position (bayesprof.psf.PSFExModel, Image.from_fits(psf=<PSFEx file>)).

The independent reference is legacypipe's own evaluation of the same PSFEx models at the
cut-out centres, bundled as ``*.psf_at_center.fits`` (float32, negative pixels set to 0,
unit sum).  legacypipe plugs the 0-indexed pixel position straight into the PSFEx
polynomial, whose variable is SExtractor's 1-indexed X_IMAGE, so:

* ``stamp(c, origin=1)`` (X_IMAGE = the 0-indexed centre, legacypipe's evaluation) must
  reproduce the stamps to float32 precision: max |diff| / peak < 1e-6 (worst measured
  4.9e-8);
* bayesprof's evaluation at the centre (X_IMAGE = centre + 1, what Image.from_fits uses)
  is the PSF one pixel further along x and y: max |diff| / peak < 3e-4 (worst measured
  1.6e-4, legacy test case 4; <= 6.1e-5 for test case 3).
"""

import pathlib
import warnings

import numpy as np
import pytest
from astropy.io import fits

import bayesprof as bp
from bayesprof import datasets
from bayesprof.psf import PSFExModel, is_psfex_file

DATA = pathlib.Path(__file__).resolve().parents[1] / "bayesprof" / "data"
EXPOSURES = sorted(DATA.glob("legacy-testcase3/images/*_ooi_*[0-9].fits")) + [
    DATA / "legacy-testcase4" / "decam" / "c4d_170316_062107_ooi_z_ls9.N2.fits"]
EXACT_TOL = 1e-6   # legacypipe's own convention, float32 reference
CENTRE_TOL = 3e-4  # bayesprof's 1-indexed X_IMAGE: one pixel away from legacypipe's position


def psfex_file(image):
    stem, ccd = image.name.split(".")[:2]
    if "testcase4" in str(image):
        return DATA / "legacy-testcase4" / "psfex" / f"{stem}-psfex.fits"
    return DATA / "legacy-testcase3" / "psfex" / f"{stem}-{ccd}-psfex.fits"


def reference(image):
    ref = fits.getdata(str(image).replace(".fits", ".psf_at_center.fits")).astype(float)
    with fits.open(image) as h:
        ny, nx = h[1].data.shape
        ccd = h[1].header["EXTNAME"].strip()
    return ref, ((nx - 1) / 2, (ny - 1) / 2), ccd


def rel(a, ref):
    return np.abs(a - ref).max() / ref.max()


def test_all_exposures_have_a_psfex_file():
    assert len(EXPOSURES) == 9
    for image in EXPOSURES:
        assert psfex_file(image).is_file()


@pytest.mark.parametrize("image", EXPOSURES, ids=lambda p: p.name.split("_ooi")[0])
def test_psfex_at_cutout_centre_matches_legacypipe_stamp(image):
    ref, (cx, cy), ccd = reference(image)
    model = PSFExModel.from_fits(psfex_file(image), ccdname=ccd)
    assert model.ccdname == ccd and model.degree == 2 and model.sampling == 1.0
    # legacypipe's convention (X_IMAGE = 0-indexed position): exact up to float32
    assert rel(model.stamp(cx, cy, origin=1), ref) < EXACT_TOL
    # bayesprof's convention, and what Image.from_fits gives for a PSFEx path
    assert rel(model.stamp(cx, cy), ref) < CENTRE_TOL
    im = bp.Image.from_fits(image, psf=str(psfex_file(image)), sigma=1.0)
    assert isinstance(im.psf, bp.PixelPSF) and im.psf.includes_pixel
    assert im.psf.image.shape == ref.shape and im.psf.sampling is None
    assert rel(im.psf.image, ref) < CENTRE_TOL
    np.testing.assert_allclose(im.psf.fourier(0.0, 0.0, im.pixel_scale), 1.0, atol=1e-12)


def test_psfex_varies_across_the_ccd_and_stays_normalised():
    image = EXPOSURES[-1]  # test case 4: the largest spatial variation
    ref, (cx, cy), ccd = reference(image)
    model = PSFExModel.from_fits(psfex_file(image), ccd)
    x0, y0 = model.zero
    sx, sy = model.scale
    for x, y in ((x0 - sx / 2, y0 - sy / 2), (x0 + sx / 2, y0 + sy / 2), (x0 - sx / 2, y0 + sy / 2)):
        psf = model.at(x - 1, y - 1)  # 0-indexed position of a corner of the fitted region
        assert psf.image.sum() == pytest.approx(1.0, abs=1e-12)
        assert psf.image.min() >= 0.0
        assert rel(psf.image, ref) > 30 * CENTRE_TOL  # really differs from the centre's PSF
    # the reference itself shows the variation: a stamp 500 px away does not match it
    assert rel(model.stamp(cx + 500, cy + 500), ref) > 10 * CENTRE_TOL
    # 0-indexed (default) position x is X_IMAGE = x + 1
    np.testing.assert_array_equal(model.stamp(cx, cy), model.stamp(cx + 1, cy + 1, origin=1))
    # unclipped: negative wings kept, still unit sum
    raw = model.stamp(cx, cy, clip_negative=False)
    assert raw.min() < 0 and raw.sum() == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="far outside the region"):
        model.at(1e5, 1e5)


def write_standard_psf(merged, out, **override):
    """A PSFEx ``.psf`` file (PSF_DATA table, model in header keywords) from a merged file."""
    row = fits.getdata(merged, 1)[0]
    mask = np.asarray(row["psf_mask"], dtype=np.float32)
    nterm, ny, nx = mask.shape
    col = fits.Column(name="PSF_MASK", format=f"{mask.size}E", dim=f"({nx},{ny},{nterm})", array=mask[None])
    hdu = fits.BinTableHDU.from_columns([col], name="PSF_DATA")
    h = hdu.header
    h["LOADED"], h["ACCEPTED"], h["CHI2"] = int(row["loaded"]), int(row["accepted"]), float(row["chi2"])
    h["POLNAXIS"] = 2
    h["POLGRP1"], h["POLNAME1"] = 1, "X_IMAGE"
    h["POLZERO1"], h["POLSCAL1"] = float(row["polzero1"]), float(row["polscal1"])
    h["POLGRP2"], h["POLNAME2"] = 1, "Y_IMAGE"
    h["POLZERO2"], h["POLSCAL2"] = float(row["polzero2"]), float(row["polscal2"])
    h["POLNGRP"], h["POLDEG1"] = 1, int(row["poldeg1"])
    h["PSF_FWHM"], h["PSF_SAMP"] = float(row["psf_fwhm"]), float(row["psf_samp"])
    h["PSFNAXIS"], h["PSFAXIS1"], h["PSFAXIS2"], h["PSFAXIS3"] = 3, nx, ny, nterm
    for key, value in override.items():
        h[key] = value
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
    return out


@pytest.mark.parametrize("k", [0, 8])
def test_standard_psfex_format_gives_the_same_psf(tmp_path, k):
    image = EXPOSURES[k]
    ref, (cx, cy), ccd = reference(image)
    std = write_standard_psf(psfex_file(image), tmp_path / "model.psf")
    assert is_psfex_file(std) and is_psfex_file(psfex_file(image)) and not is_psfex_file(image)
    model = PSFExModel.from_fits(std)
    assert model.ccdname is None
    assert rel(model.stamp(cx, cy, origin=1), ref) < EXACT_TOL
    np.testing.assert_allclose(model.stamp(cx, cy), PSFExModel.from_fits(psfex_file(image)).stamp(cx, cy),
                               rtol=0, atol=1e-12)
    # Image.from_fits detects it by content (".psf" name), CCD name not checked for .psf files
    im = bp.Image.from_fits(image, psf=str(std), sigma=1.0)
    assert rel(im.psf.image, ref) < CENTRE_TOL


def test_psf_samp_and_even_stamp_size(tmp_path):
    """PSF_SAMP = 0.5, even 64x64 stamp, constant model (POLNAXIS = 0): a Gaussian of sigma
    2 image pixels sampled every 0.5 px about PSFEx's centre (index 32).  The PixelPSF's
    Fourier transform must be the Gaussian's, exp(-sigma^2 k^2 / 2), with no phase."""
    n, samp, sigma = 64, 0.5, 2.0
    u = (np.arange(n) - n // 2) * samp
    g = np.exp(-0.5 * (u[:, None] ** 2 + u[None, :] ** 2) / sigma ** 2)
    col = fits.Column(name="PSF_MASK", format=f"{n * n}E", dim=f"({n},{n},1)", array=g[None, None].astype(np.float32))
    hdu = fits.BinTableHDU.from_columns([col], name="PSF_DATA")
    hdu.header["POLNAXIS"], hdu.header["PSF_SAMP"] = 0, samp
    hdu.header["PSFNAXIS"], hdu.header["PSFAXIS1"], hdu.header["PSFAXIS2"], hdu.header["PSFAXIS3"] = 3, n, n, 1
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "const.psf")
    psf = PSFExModel.from_fits(tmp_path / "const.psf").at(100.0, 200.0)
    assert psf.sampling == samp and psf.image.shape == (n + 1, n + 1)
    k = np.linspace(0.0, 1.5, 7)
    for scale in (0.262, 1.0):  # sampling is in image pixels: any arcsec scale gives the same
        f = psf.fourier(k, 0.6 * k, scale)
        np.testing.assert_allclose(f.real, np.exp(-0.5 * sigma ** 2 * 1.36 * k ** 2), atol=2e-4)
        np.testing.assert_allclose(f.imag, 0.0, atol=1e-12)
    assert "sampling=0.5 px" in repr(psf)
    with pytest.raises(ValueError, match="not both"):
        bp.PixelPSF(g, pixel_scale=0.1, sampling=0.5)


def test_clear_errors(tmp_path):
    image = EXPOSURES[0]
    merged = psfex_file(image)
    with pytest.raises(ValueError, match=r"no row for CCD 'S4' \(CCDs in the file: \['N12'\]\)"):
        PSFExModel.from_fits(merged, ccdname="S4")
    with pytest.raises(ValueError, match="is not a PSFEx model: no binary table with a PSF_MASK column"):
        PSFExModel.from_fits(image)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PSFExModel.from_fits(tmp_path / "missing.fits")
    text = tmp_path / "notfits.psf"
    text.write_text("not a FITS file")
    assert not is_psfex_file(text)
    with pytest.raises(ValueError, match="not a FITS file"):
        PSFExModel.from_fits(text)
    # a merged file with two CCDs: the row must be named, and the names are listed
    with fits.open(merged) as a, fits.open(psfex_file(EXPOSURES[1])) as b:
        both = fits.BinTableHDU.from_columns(a[1].columns, nrows=2)
        for name in a[1].columns.names:
            both.data[name][1] = b[1].data[name][0]
        fits.HDUList([fits.PrimaryHDU(), both]).writeto(tmp_path / "merged.fits")
    with pytest.raises(ValueError, match=r"holds 2 CCDs \['N12', 'N11'\]: choose one with ccdname="):
        PSFExModel.from_fits(tmp_path / "merged.fits")
    assert PSFExModel.from_fits(tmp_path / "merged.fits", "N11").zero == PSFExModel.from_fits(
        psfex_file(EXPOSURES[1])).zero
    # Image.from_fits picks the row of the image's CCD (EXTNAME) ...
    ref, _, _ = reference(image)
    im = bp.Image.from_fits(image, psf=str(tmp_path / "merged.fits"), sigma=1.0)
    assert rel(im.psf.image, ref) < CENTRE_TOL
    # ... and refuses a PSFEx file of another CCD
    with pytest.raises(ValueError, match=r"no row for CCD 'N12' \(CCDs in the file: \['N11'\]\)"):
        bp.Image.from_fits(image, psf=str(psfex_file(EXPOSURES[1])), sigma=1.0)
    # unsupported polynomial variables
    bad = write_standard_psf(merged, tmp_path / "mag.psf", POLNAME2="MAG_AUTO")
    with pytest.raises(ValueError, match="only PSFEx polynomials in"):
        PSFExModel.from_fits(bad)
    with pytest.raises(ValueError, match="origin must be 0"):
        PSFExModel.from_fits(merged).at(1.0, 1.0, origin=2)


def test_legacy_testcase3_psfex_option():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no extrapolation warnings: the centres are inside the fits
        images = datasets.legacy_testcase3(psf="psfex")
    stamps = datasets.legacy_testcase3()
    assert images.names == stamps.names and len(images) == 8
    for a, b in zip(images, stamps):
        assert rel(a.psf.image, b.psf.image) < CENTRE_TOL
    with pytest.raises(ValueError, match="psf must be 'stamp' or 'psfex'"):
        datasets.legacy_testcase3(psf="gaussian")


def test_pixel_psf_trim_keeps_the_analytic_flux_circle():
    """A 63x63 stamp of a circular Gaussian (sigma 2 px): trim=1e-4 keeps the circle holding
    1 - 1e-4 of the flux, analytically r = sigma sqrt(-2 ln 1e-4) = 8.58 px, and little more."""
    sigma, n = 2.0, 63
    yy, xx = np.indices((n, n)) - (n - 1) / 2.0
    stamp = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    psf = bp.PixelPSF(stamp, trim=1e-4)
    r = sigma * np.sqrt(-2 * np.log(1e-4))
    half = (psf.image.shape[0] - 1) / 2.0
    assert psf.untrimmed_shape == (n, n) and psf.image.shape[0] % 2 == 1
    assert r <= half + 0.5 <= r + 2.5, (half, r)  # pixel-centre radii: within 2 px of the analytic circle
    # the flux outside the kept square is below the trim fraction (it is outside the circle)
    inside = (np.abs(xx) <= half) & (np.abs(yy) <= half)
    assert stamp[~inside].sum() / stamp.sum() < 1e-4
    assert bp.PixelPSF(stamp).image.shape == (n, n)  # no trim by default
    with pytest.raises(ValueError, match="trim"):
        bp.PixelPSF(stamp, trim=0.7)
