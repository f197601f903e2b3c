"""Supernova light curves without bias (issue "Supernova light curves without bias").

Reference: noiseless GalSim images (the independent renderer) of a Sersic host and a point
source whose flux changes from epoch to epoch, each epoch with its own dither (through the WCS)
and Moffat PSF (:func:`bayesprof.simulate.simulate_transient`).  Fitted with the realistic noise
sigma, the MAP must return the true fluxes: any offset is the pull of the priors, since the data
carry no noise.  The same images test forced photometry on a fitted host.
"""

import copy

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

import bayesprof as bp
from bayesprof.profiles import flux_to_counts

galsim = pytest.importorskip("galsim")

from bayesprof.simulate import simulate_transient  # noqa: E402

SCALE, ZP, SIGMA = 0.262, 22.5, 0.03  # arcsec/px, AB, counts/px
HOST = bp.Sersic(xi=0.0, eta=0.0, flux=300.0, re=1.2, n=1.5, q=0.6, pa=40.0)
SN = (0.8, -0.75)  # arcsec east, north of the host: 1.1"
SN_FLUX = (0.0, 6.0, 25.0, 70.0, 40.0, 12.0)  # uJy per epoch
FWHM = (1.0, 1.3, 0.9, 1.6, 1.2, 1.4)  # arcsec
REFERENCE = SkyCoord(150.0, 2.0, unit="deg")


@pytest.fixture(scope="module")
def epochs():
    rng = np.random.default_rng(3)
    spec = [dict(band="r", fwhm=f, flux=s, dither=rng.uniform(-3, 3, 2), mjd=60000.0 + 3 * k)
            for k, (f, s) in enumerate(zip(FWHM, SN_FLUX))]
    return simulate_transient(HOST, {"r": HOST.flux}, SN, spec, reference=REFERENCE, pixel_scale=SCALE,
                              zeropoint=ZP, sigma=SIGMA)


@pytest.fixture(scope="module")
def joint_fit(epochs):
    scene = bp.Scene(epochs)
    scene.add("host", bp.Sersic, init={"xi": 0.0, "eta": 0.0})
    scene.add("sn", bp.PointSource, vary={"flux": "image"}, init={"xi": SN[0], "eta": SN[1]})
    return bp.fit_map(scene)


def test_noiseless_light_curve_is_unbiased(joint_fit):
    """Host shared over six epochs, supernova position shared, its flux per epoch (default priors):
    every epoch's MAP flux within 0.05 sigma of the truth, and within 1 mmag where S/N >= 20; the
    epoch without a supernova within 0.05 sigma of zero (before: +1 sigma, +24 mmag at S/N 9)."""
    fit = joint_fit
    assert fit.success
    for k, true in enumerate(SN_FLUX):
        name = f"sn.flux[e{k}]"
        value, sigma = float(fit.values[name]), float(fit.sigmas[name])
        assert abs(value - true) < 0.05 * sigma, (name, value, true, sigma)
        if true / sigma >= 20:
            assert abs(2.5 * np.log10(value / true)) < 1e-3, (name, value, true)
    assert abs(float(fit.values["host.flux[r]"]) / HOST.flux - 1) < 1e-3


def test_light_curve_table_from_the_map(joint_fit):
    """The table carries every epoch's MAP flux and sigma, its time and band; magnitudes for the
    detections (S/N >= 3), the 5-sigma limit for the others."""
    lc = bp.light_curve(joint_fit, "sn")
    assert list(lc["image"]) == [f"e{k}" for k in range(6)]
    np.testing.assert_allclose(lc["mjd"], 60000.0 + 3 * np.arange(6))
    np.testing.assert_allclose(lc["flux"], [joint_fit.values[f"sn.flux[e{k}]"] for k in range(6)])
    np.testing.assert_allclose(lc["flux_err"], [joint_fit.sigmas[f"sn.flux[e{k}]"] for k in range(6)])
    assert list(lc["upper_limit"]) == [True, False, False, False, False, False]
    np.testing.assert_allclose(lc["mag"][1:], 23.9 - 2.5 * np.log10(np.asarray(lc["flux"][1:])))
    np.testing.assert_allclose(lc["mag_limit"], 23.9 - 2.5 * np.log10(5 * np.asarray(lc["flux_err"])))
    assert abs(lc.meta["ra_deg"] - 150.0 - SN[0] / 3600 / np.cos(np.radians(2.0))) < 1e-6  # east: RA grows


def _psf_flux_error(image, counts_per_ujy):
    """1-sigma flux error (uJy) of a point source at SN with a free flat sky: the (0, 0) entry
    of (A^T W A)^-1, A = [GalSim PSF image at the SN, 1] (the independent renderer)."""
    wcs = image.wcs
    x, y = wcs.world_to_pixel(bp.sky_from_offsets(SN[0], SN[1], REFERENCE))
    ny, nx = image.shape
    psf = galsim.Moffat(beta=3.0, fwhm=image.psf.fwhm)
    p = psf.drawImage(nx=nx, ny=ny, scale=SCALE, offset=(float(x) - (nx - 1) / 2, float(y) - (ny - 1) / 2)).array
    A = np.stack([p.ravel() * counts_per_ujy, np.ones(p.size)])
    return float(np.sqrt(np.linalg.inv(A @ A.T / SIGMA**2)[0, 0]))


def test_forced_photometry_on_a_host_fitted_without_the_supernova(epochs):
    """The host fitted on the epoch without a supernova alone; then, with the host fixed, each
    epoch's flux at the true position by linear least squares (a flat sky per epoch): within
    0.02 sigma of the truth, the sigma that of a PSF fit with a free sky (GalSim PSF, 0.1 %);
    batched over epochs, the batch size changes nothing."""
    scene = bp.Scene(bp.ImageList([epochs[0]], reference=REFERENCE))
    scene.add("host", bp.Sersic, init={"xi": 0.0, "eta": 0.0})
    host = bp.fit_map(scene)
    assert host.success
    lc = bp.forced_photometry(host, epochs, position=bp.sky_from_offsets(*SN, REFERENCE))
    per_ujy = float(flux_to_counts(1.0, ZP))
    for k, true in enumerate(SN_FLUX):
        err = _psf_flux_error(epochs[k], per_ujy)
        assert abs(lc["flux"][k] - true) < 0.02 * err, (k, lc["flux"][k], true, err)
        assert abs(lc["flux_err_stat"][k] / err - 1) < 1e-3, (k, lc["flux_err_stat"][k], err)
        assert lc["chi2"][k] < 1e-3 * lc["n_pix"][k]  # noiseless: the fixed host fits
    lc4 = bp.forced_photometry(host, epochs, position=(SN[0], SN[1]), batch_size=4)
    np.testing.assert_allclose(lc4["flux"], lc["flux"], rtol=0, atol=1e-9)


def test_forced_photometry_errors_carry_the_host_uncertainty(epochs):
    """The host fitted on 24 noise realisations of the epoch without a supernova; forced
    photometry on the five *noiseless* epochs with the supernova: every flux's scatter about
    the truth then comes from the host's error alone.  The propagated ``flux_err_host`` matches
    that scatter (measured ratio 0.92-1.02 per epoch; expected spread of a 24-sample sd 15 %,
    tolerance 0.7-1.35), and the returned covariance its correlation between epochs (measured
    0.95-1.0; tolerance 0.1).  Without ``host_uncertainty`` the error is the epoch's own."""
    from bayesprof.simulate import add_noise

    rng = np.random.default_rng(1)
    truth = np.asarray(SN_FLUX[1:])
    devs, errs = [], []
    for _ in range(24):
        scene = bp.Scene(bp.ImageList(add_noise([epochs[0]], rng), reference=REFERENCE))
        scene.add("host", bp.Sersic, init={"xi": 0.0, "eta": 0.0})
        host = bp.fit_map(scene)
        lc, cov = bp.forced_photometry(host, epochs[1:], position=SN, covariance=True)
        devs.append(np.asarray(lc["flux"]) - truth)
        errs.append(np.asarray(lc["flux_err_host"]))
    devs, errs = np.array(devs), np.array(errs)
    ratio = devs.std(axis=0, ddof=1) / errs.mean(axis=0)
    assert np.all((ratio > 0.7) & (ratio < 1.35)), ratio
    np.testing.assert_allclose(np.asarray(lc["flux_err"]), np.hypot(lc["flux_err_stat"], lc["flux_err_host"]))
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), np.asarray(lc["flux_err"]), rtol=1e-10)
    host_cov = cov - np.diag(np.asarray(lc["flux_err_stat"]) ** 2)
    predicted = host_cov / np.sqrt(np.outer(np.diag(host_cov), np.diag(host_cov)))
    np.testing.assert_allclose(predicted, np.corrcoef(devs.T), atol=0.1)
    plain = bp.forced_photometry(host, epochs[1:], position=SN, host_uncertainty=False)
    np.testing.assert_allclose(plain["flux"], lc["flux"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(plain["flux_err"], lc["flux_err_stat"], rtol=1e-12)
    assert np.all(np.asarray(plain["flux_err_host"]) == 0)


def test_forced_photometry_with_a_calibration_scale(joint_fit, epochs):
    """An epoch whose zeropoint is off (its data 8 % brighter): with ``calibrate=True`` the
    fixed host's scale is fitted per epoch and the flux comes back in the fit's calibration."""
    bright = list(epochs)
    off = copy.copy(bright[3])
    off.data = bright[3].data * 1.08
    bright[3] = off
    lc = bp.forced_photometry(joint_fit, bp.ImageList(bright, reference=REFERENCE), "sn", calibrate=True)
    assert abs(lc["calibration"][3] - 1.08) < 1e-4
    for k, true in enumerate(SN_FLUX):
        assert abs(lc["flux"][k] - true) < 0.05 * lc["flux_err"][k], (k, lc["flux"][k], true)
    # the joint fit's uncertainty (host, the supernova's fitted position) adds to each epoch's own
    assert np.all(np.asarray(lc["flux_err_host"]) > 0)
    assert np.all(np.asarray(lc["flux_err"]) > np.asarray(lc["flux_err_stat"]))


def test_forced_photometry_needs_the_band_of_the_fit(joint_fit, epochs):
    g = copy.copy(epochs[0])
    g.band = "g"
    with pytest.raises(ValueError, match="band 'g'"):
        bp.forced_photometry(joint_fit, [g], "sn")


def test_the_command_line_writes_the_light_curve(epochs, joint_fit, tmp_path):
    """``bayesprof fit`` on the six epochs as FITS files (time from MJD-OBS): a light-curve table
    (ECSV) and plot for the source with a flux per image, equal to the Python API's."""
    from astropy.io import fits
    from astropy.table import Table

    from bayesprof import cli

    images = []
    for im in epochs:
        header = im.wcs.to_header()
        header["MJD-OBS"] = im.time
        fits.writeto(tmp_path / f"{im.name}.fits", im.data, header)
        images.append({"file": f"{im.name}.fits", "band": "r", "sigma": SIGMA, "zeropoint": ZP,
                       "psf": {"moffat": {"fwhm": im.psf.fwhm, "beta": 3.0}}})
    cfg = {"images": images, "nuts": False,
           "scene": {"reference": {"ra": REFERENCE.ra.deg, "dec": REFERENCE.dec.deg},
                     "sources": [{"name": "host", "kind": "Sersic"},
                                 {"name": "sn", "kind": "PointSource", "vary": {"flux": "image"}}],
                     "init": {"host.xi": 0.0, "host.eta": 0.0, "sn.xi": SN[0], "sn.eta": SN[1]}}}
    cli.run_config(cfg, tmp_path / "out", base_dir=tmp_path)
    lc = Table.read(tmp_path / "out" / "lightcurve_sn.ecsv")
    assert (tmp_path / "out" / "lightcurve_sn.png").stat().st_size > 0
    ref = bp.light_curve(joint_fit, "sn")
    assert list(lc["image"]) == list(ref["image"])
    np.testing.assert_allclose(lc["mjd"], ref["mjd"])
    np.testing.assert_allclose(lc["flux"], ref["flux"], atol=1e-3 * float(np.min(ref["flux_err"])))
    np.testing.assert_allclose(lc["flux_err"], ref["flux_err"], rtol=1e-4)
    assert lc["flux"].unit == "uJy"


def test_forced_photometry_outside_an_image_is_a_clear_error(joint_fit, epochs):
    with pytest.raises(ValueError, match="outside image"):
        bp.forced_photometry(joint_fit, epochs, position=(30.0, 0.0))
