"""Workflow 3 on real data: a galaxy in DECam z (0.262"/px) and unWISE W1, W2 (2.75"/px).

legacypipe test case 4: a 70x70 cut-out of the DECam z exposure (its TPV WCS sliced, PSF
stamp) around the galaxy at z pixel (117, 191) (re ~ 1", q ~ 0.3), and 13x18 cut-outs of the
unWISE W1, W2 coadds (TAN WCS, Gaussian PSF of the band's FWHM).  The images are aligned only
by their WCSs, 10x apart in pixel scale and rotated 90 deg to each other.

The unWISE inverse-variance maps underestimate the pixel scatter of the coadds (confusion and
resampling): the background of W1 scatters by 2.34 counts where the map says 1.46.  The test
scales each unWISE variance map to :func:`bayesprof.catalog.estimate_noise` of its image (the
clipped MAD of the background pixels), which is measured without any model.

Checks, each against something the fit does not contain:

* the galaxy's sky position fitted in z alone (Sersic, 0.26" pixels) and in W1 alone (point
  source plus the two neighbours, 2.75" pixels) agree, per axis, within 3 sigma (combined) plus
  0.25" (0.09 W1 pixel) for unWISE astrometry and the blending of the W1 neighbours: the two
  WCSs and the pixel maps built from them agree.  Measured: W1 - z = (+0.12, +0.31)" with
  sigma 0.08" (W1) and 0.005-0.008" (z);
* the joint fit (structure shared, flux per band, sky per image, two W1/W2 neighbours as point
  sources) leaves residuals consistent with noise: reduced chi2 of z within 5 sqrt(2/N) + 0.05
  of 1 (measured 1.021, N = 4900); of W1 and W2 between 0.3 and 1 + 5 sqrt(2/N) + 0.05
  (measured 0.50 and 0.70, N = 234): the rescaled unWISE noise includes confusion by faint
  sources of the whole tile, part of which the neighbours absorb in the cut-out;
* the W1 flux of the joint fit equals a model-free aperture sum of the W1 image (radius 3 px =
  8.25", local sky from the image's clipped background, Gaussian-PSF aperture correction)
  within 3 sigma (fit and aperture errors combined).  Measured: 132.1 +- 2.8 uJy (fit) and
  123.2 +- 3.8 uJy (aperture; the real unWISE PSF has wider wings than the Gaussian, so the
  aperture correction is a lower limit).

Also: W1 - W2 = 0.11 (Vega), a normal galaxy (AGN have W1 - W2 > 0.8, Stern et al. 2012).
"""

import copy

import numpy as np
import pytest

import bayesprof as bp
from bayesprof import datasets
from bayesprof.catalog import estimate_noise, segment
from bayesprof.profiles import flux_to_counts

Z_BOX = (82, 152, 156, 226)  # x0, x1, y0, y1 of the z cut-out (galaxy at z pixel ~ (117, 191))
W_BOX = (0, 13, 3, 21)  # the unWISE cut-outs (galaxy at W pixel ~ (6, 12))
NEIGHBOURS_W1_PX = ((6.3, 16.3), (6.6, 5.6))  # two fainter W1 sources 4-7 px north and south


def _rescaled(image):
    """The image with its variance map scaled to the measured background scatter."""
    new = copy.copy(image)
    sigma = estimate_noise(image)
    new.variance = image.variance * (sigma**2 / np.median(image.variance))
    return new


@pytest.fixture(scope="module")
def data():
    full = datasets.legacy_testcase4(("z", "W1", "W2"))
    z = full["z"].cutout(*Z_BOX)
    w1 = _rescaled(full["W1"]).cutout(*W_BOX)
    w2 = _rescaled(full["W2"]).cutout(*W_BOX)
    ref = z.center_sky()
    neighbours = [full["W1"].pixel_to_sky(x, y) for x, y in NEIGHBOURS_W1_PX]
    return {"z": z, "W1": w1, "W2": w2, "reference": ref, "neighbours": neighbours, "W1_full": full["W1"]}


def _scene(images, data, galaxy=bp.Sersic):
    scene = bp.Scene(bp.ImageList(images), reference=data["reference"])
    scene.add("gal", galaxy)
    names = [im.name for im in images]
    wise = [n for n in names if n != "z"]
    for k, pos in enumerate(data["neighbours"]):
        if wise:
            xi, eta = (float(v) for v in bp.tangent_plane_offsets(pos, data["reference"]))
            scene.add(f"nb{k}", bp.PointSource, images=wise, init={"xi": xi, "eta": eta})
    scene.add("sky", bp.FlatSky)
    return scene


@pytest.fixture(scope="module")
def joint(data):
    scene = _scene([data["z"], data["W1"], data["W2"]], data)
    return scene, bp.fit_map(scene)


def _sky(fit, data):
    return bp.sky_from_offsets(fit.values["gal.xi"], fit.values["gal.eta"], data["reference"])


def test_position_agrees_across_pixel_scales(data):
    fit_z = bp.fit_map(_scene([data["z"]], data))
    fit_w = bp.fit_map(_scene([data["W1"]], data, galaxy=bp.PointSource))
    assert fit_z.success and fit_w.success
    # both positions through astropy: each lands on its own image where world_to_pixel puts it
    pz, pw = _sky(fit_z, data), _sky(fit_w, data)
    xz, yz = data["z"].wcs.world_to_pixel(pz)
    assert 20 < xz < 50 and 20 < yz < 50
    xw, yw = data["W1"].wcs.world_to_pixel(pw)
    assert abs(xw - 6) < 1.5 and abs(yw - 9) < 1.5  # the W1 peak (W1 pixel (6, 12) of the full coadd)
    for p in ("xi", "eta"):
        d = fit_w.values[f"gal.{p}"] - fit_z.values[f"gal.{p}"]
        s = np.hypot(fit_w.sigmas[f"gal.{p}"], fit_z.sigmas[f"gal.{p}"])
        assert abs(d) < 3 * s + 0.25, (p, d, s)
    # z pins the centre to ~0.01" (0.04 px), W1 to ~0.1" (0.04 px of 2.75")
    assert fit_z.sigmas["gal.xi"] < 0.02 and fit_w.sigmas["gal.xi"] < 0.2


def test_joint_residuals_consistent_with_noise(joint):
    scene, fit = joint
    assert fit.success, fit.message
    for name, (chi2, n) in fit.image_chi2().items():
        chi2_n = chi2 / n
        bound = 5 * np.sqrt(2 / n) + 0.05
        if name == "z":
            assert abs(chi2_n - 1) < bound, (name, chi2_n, n)
        else:  # the rescaled unWISE noise includes confusion by faint sources, part of which the fit absorbs
            assert 0.3 < chi2_n < 1 + bound, (name, chi2_n, n)
    # a physical galaxy: z structure within the priors' interior; W1 - W2 of a normal galaxy
    assert 0.5 < fit.values["gal.re"] < 3 and 0.5 < fit.values["gal.n"] < 6
    w1_w2_vega = -2.5 * np.log10(fit.values["gal.flux[W1]"] / fit.values["gal.flux[W2]"]) \
        - datasets.WISE_AB_OFFSET["W1"] + datasets.WISE_AB_OFFSET["W2"]
    assert -0.5 < w1_w2_vega < 0.8  # below the AGN cut W1 - W2 > 0.8 (Stern et al. 2012)


def test_w1_flux_matches_aperture(joint, data):
    scene, fit = joint
    w1 = data["W1_full"]
    x, y = (float(v) for v in w1.wcs.world_to_pixel(_sky(fit, data)))
    yy, xx = np.indices(w1.shape)
    r2 = (xx - x) ** 2 + (yy - y) ** 2
    radius = 3.0  # pixels
    inside = r2 <= radius**2
    sky_pixels = (segment(w1) == 0) & (r2 > 5.0**2)
    sky = float(np.median(w1.data[sky_pixels]))
    sigma = estimate_noise(w1)
    n_in = int(inside.sum())
    counts = float(np.sum(w1.data[inside] - sky))
    err = sigma * np.sqrt(n_in + n_in**2 * np.pi / 2 / sky_pixels.sum())  # pixels + sky median
    # aperture correction for the Gaussian PSF (FWHM 6.1") and a source much smaller than it
    s_px = datasets.WISE_FWHM["W1"] / 2.3548 / w1.pixel_scale
    enclosed = 1 - np.exp(-(radius**2) / (2 * s_px**2))
    per_ujy = float(flux_to_counts(1.0, w1.zeropoint))
    ap_flux, ap_err = counts / enclosed / per_ujy, err / enclosed / per_ujy
    f, s = fit.values["gal.flux[W1]"], fit.sigmas["gal.flux[W1]"]
    assert abs(f - ap_flux) < 3 * np.hypot(s, ap_err), (f, s, ap_flux, ap_err)
    assert f / s > 30  # a well-measured W1 flux
