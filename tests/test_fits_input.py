"""FITS input: a real DECam CP exposure (multi-extension, TPV WCS, inverse variance, DQ mask).

The reference is astropy itself: the same files read with astropy.io.fits / astropy.wcs.
"""

import pathlib
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import bayesprof as bp

DATA = pathlib.Path(__file__).resolve().parents[1] / "bayesprof" / "data" / "legacy-testcase3" / "images"
STEM = "c4d_140818_232043_{}_z_ls9.N12"


def path(kind, suffix=".fits"):
    return DATA / (STEM.format(kind) + suffix)


def test_cp_exposure_reads_with_wcs_noise_mask_and_psf():
    im = bp.Image.from_fits(path("ooi"), weight=str(path("oow")), mask=str(path("ood")),
                            psf=str(DATA / (STEM.format("ooi") + ".psf_at_center.fits")), band="z")
    with fits.open(path("ooi")) as h:
        raw = h[1].data.astype(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(h[1].header)
        mjd = h[0].header["MJD-OBS"]
    invvar = fits.getdata(path("oow"), 1)
    dq = fits.getdata(path("ood"), 1)
    assert im.shape == raw.shape == (51, 41)
    assert im.time == pytest.approx(mjd)
    bad = (dq != 0) | (invvar == 0)
    assert np.array_equal(im.mask, bad)
    np.testing.assert_allclose(im.data[~bad], raw[~bad])
    np.testing.assert_allclose(im.variance[~bad], 1 / invvar[~bad], rtol=1e-6)
    # the WCS is astropy's TPV solution: same sky position for every corner and the centre
    for x, y in ((0, 0), (40, 0), (0, 50), (40, 50), (20.3, 25.7)):
        a, b = im.pixel_to_sky(x, y), wcs.pixel_to_world(x, y)
        assert a.separation(b).arcsec < 1e-6
    assert 0.25 < im.pixel_scale < 0.28
    assert isinstance(im.psf, bp.PixelPSF)


def test_fits_input_errors(tmp_path):
    with pytest.raises(ValueError, match=r"has no HDU 5 \(HDUs: \['0:PRIMARY', '1:N12'\]\)"):
        bp.Image.from_fits(path("ooi"), hdu=5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bp.Image.from_fits(tmp_path / "missing.fits")
    plain = tmp_path / "plain.fits"
    fits.writeto(plain, np.zeros((10, 12)))
    with pytest.raises(ValueError, match="no celestial WCS; pass pixel_scale"):
        bp.Image.from_fits(plain, sigma=1.0)
    assert bp.Image.from_fits(plain, sigma=1.0, pixel_scale=0.5).shape == (10, 12)
    with pytest.raises(ValueError, match="keyword 'MAGZERO' for the zeropoint not found"):
        bp.Image.from_fits(plain, sigma=1.0, pixel_scale=0.5, zeropoint="MAGZERO")
    small = tmp_path / "small.fits"
    fits.writeto(small, np.ones((5, 5)))
    with pytest.raises(ValueError, match=r"shape \(5, 5\) does not match data shape \(51, 41\)"):
        bp.Image.from_fits(path("ooi"), mask=str(small))


def test_zeropoint_per_second_with_the_exposure_time(tmp_path):
    """A CP exposure is in counts and its MAGZERO is for counts per second: with exptime the
    zeropoint is MAGZERO + 2.5 log10(EXPTIME), keywords read from the headers (the bundled
    cut-out keeps EXPTIME = 118 s; a MAGZERO of 25.1 is added to its primary header)."""
    copy = tmp_path / "ooi.fits"
    with fits.open(path("ooi")) as h:
        h[0].header["MAGZERO"] = 25.1
        exptime = h[0].header["EXPTIME"]
        h.writeto(copy)
    im = bp.Image.from_fits(copy, weight=str(path("oow")), zeropoint="MAGZERO", exptime="EXPTIME")
    assert exptime == 118.0 and im.zeropoint == pytest.approx(25.1 + 2.5 * np.log10(118.0), abs=1e-12)
    assert bp.Image.from_fits(copy, weight=str(path("oow")), zeropoint=25.0, exptime=100.0).zeropoint == 30.0
    with pytest.raises(ValueError, match="exposure time must be a positive number"):
        bp.Image.from_fits(copy, weight=str(path("oow")), zeropoint=25.0, exptime=0.0)


def test_planes_of_cubes(tmp_path):
    """A PSF cube (5 x 15 x 15, like HSC's PSF_HSC.fits) and a data cube: plane k is what
    astropy reads at [k]; without a plane, one line saying which cubes there are."""
    from bayesprof import cli

    rng = np.random.default_rng(0)
    cube = rng.uniform(0.1, 1.0, (5, 15, 15))
    fits.writeto(tmp_path / "psf.fits", cube)
    psf = cli._psf({"file": "psf.fits", "plane": 2, "pixel_scale": 0.2}, tmp_path, "images[0].psf")
    np.testing.assert_allclose(psf.image * cube[2].sum(), cube[2], rtol=1e-12)
    with pytest.raises(cli.ConfigError, match=r"no 2-D image HDU .* cubes: \['0:PRIMARY \(5, 15, 15\)'\], choose a plane"):
        cli._psf({"file": "psf.fits"}, tmp_path, "images[0].psf")
    with pytest.raises(cli.ConfigError, match="plane: must be an integer >= 0"):
        cli._psf({"file": "psf.fits", "plane": -1}, tmp_path, "images[0].psf")
    forced = cli._psf({"file": "psf.fits", "plane": 2, "interpolant": "quintic"}, tmp_path, "images[0].psf")
    assert forced.interpolant == "quintic"
    with pytest.raises(cli.ConfigError, match="interpolant: must be one of auto, sinc, quintic, not 'cubic'"):
        cli._psf({"file": "psf.fits", "plane": 2, "interpolant": "cubic"}, tmp_path, "images[0].psf")
    data = rng.normal(size=(3, 20, 24))
    fits.writeto(tmp_path / "cube.fits", data)
    im = bp.Image.from_fits(tmp_path / "cube.fits", plane=1, sigma=1.0, pixel_scale=0.3)
    np.testing.assert_array_equal(im.data, data[1])
    with pytest.raises(ValueError, match=r"plane must be an integer from 0 to 2"):
        bp.Image.from_fits(tmp_path / "cube.fits", plane=3, sigma=1.0, pixel_scale=0.3)
