"""Per-image zeropoint corrections: exposures whose nominal zeropoints are wrong.

GalSim draws two Sersic galaxies (one compact) into four images, two bands x two exposures; the
second exposure of each band is drawn with a true zeropoint that differs from the nominal one
the image carries by a known ``dzp`` (clouds: -0.35 mag; a calibration error: +0.12 mag).
Fitting with :meth:`Scene.add_photometric_offsets` must recover each ``dzp`` and the fluxes
(in the calibration of each band's first image) within 3 sigma, with reduced chi2 consistent
with the noise; without the corrections the fit is visibly wrong.
"""

import dataclasses

import numpy as np
import pytest

import bayesprof as bp
from bayesprof.simulate import draw_galaxies

GAL = bp.Sersic(xi=0.2, eta=-0.1, flux=300.0, re=0.9, n=1.8, q=0.7, pa=120.0)
STAR = bp.Sersic(xi=-2.5, eta=1.8, flux=60.0, re=0.3, n=1.0, q=0.8, pa=30.0)  # compact neighbour
#: (name, band, true zeropoint - nominal zeropoint)
EXPOSURES = [("g1", "g", 0.0), ("g2", "g", -0.35), ("r1", "r", 0.0), ("r2", "r", 0.12)]
BAND_FLUX = {"g": 1.0, "r": 1.8}  # flux of both sources relative to the above, per band
NOMINAL_ZP = 25.0


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(5)
    out = []
    for k, (name, band, dzp) in enumerate(EXPOSURES):
        psf = bp.MoffatPSF(0.9 + 0.08 * k, 3.0)
        truth_zp = bp.Image(np.zeros((56, 56)), variance=1.0, pixel_scale=0.262, psf=psf,
                            zeropoint=NOMINAL_ZP + dzp, band=band, name=name)
        f = BAND_FLUX[band]
        model = draw_galaxies([dataclasses.replace(GAL, flux=GAL.flux * f),
                               dataclasses.replace(STAR, flux=STAR.flux * f)], truth_zp)
        sigma = model.max() / 80.0
        out.append(bp.Image(model + rng.normal(0, sigma, model.shape), sigma=sigma, pixel_scale=0.262, psf=psf,
                            zeropoint=NOMINAL_ZP, band=band, name=name))
    return out


def _scene(images, corrections):
    scene = bp.Scene(images)
    scene.add("gal", bp.Sersic)
    scene.add("star", bp.Sersic, init={"xi": STAR.xi + 0.1, "eta": STAR.eta - 0.1})
    if corrections:
        scene.add_photometric_offsets(sigma=0.5)
    return scene


def test_zeropoint_corrections_recovered(images):
    scene = _scene(images, True)
    names = [s.name for s in scene.build().latent]
    # the first exposure of each band is the reference
    assert sorted(n for n in names if n.startswith("photometry")) == ["photometry.dzp[g2]", "photometry.dzp[r2]"]
    fit = bp.fit_map(scene)
    assert fit.success, fit.message
    n = scene.build().n_data
    assert abs(fit.reduced_chi2 - 1) < 5 * np.sqrt(2 / n)
    for name, band, dzp in EXPOSURES[1::2]:
        site = f"photometry.dzp[{name}]"
        assert abs(fit.values[site] - dzp) < 3 * fit.sigmas[site], (site, fit.values[site], fit.sigmas[site])
        assert fit.sigmas[site] < 0.01
    for band, f in BAND_FLUX.items():
        for src, true in (("gal", GAL.flux * f), ("star", STAR.flux * f)):
            site = f"{src}.flux[{band}]"
            assert abs(fit.values[site] - true) < 3 * fit.sigmas[site], (site, fit.values[site], true)
    for p in ("re", "n", "q"):
        assert abs(fit.values[f"gal.{p}"] - getattr(GAL, p)) < 3 * fit.sigmas[f"gal.{p}"], p


def test_without_corrections_the_fit_is_wrong(images):
    scene = _scene(images, False)
    fit = bp.fit_map(scene)
    assert fit.reduced_chi2 > 1 + 20 * np.sqrt(2 / scene.build().n_data)


def test_photometric_offset_api(images):
    scene = bp.Scene(images)
    scene.add("gal", bp.Sersic)
    with pytest.raises(ValueError, match="no image named"):
        scene.add_photometric_offsets(reference_images=["zz"])
    with pytest.raises(ValueError, match="reference images"):
        scene.add_photometric_offsets(reference_images=["g1"], images=["g1", "g2"])
    with pytest.raises(ValueError, match="sigma"):
        scene.add_photometric_offsets(sigma=0)
    one_per_band = bp.Scene([images[0], images[2]])
    with pytest.raises(ValueError, match="no image left"):
        one_per_band.add_photometric_offsets()
    src = scene.add_photometric_offsets(sigma=0.2, reference_images=[], name="zp")
    assert src.images == ["g1", "g2", "r1", "r2"]
    with pytest.raises(ValueError, match="zeropoint correction already"):
        scene.add("zp2", bp.PhotometricOffset, images=["g2"])
    with pytest.raises(ValueError, match="takes no windows"):
        scene.add("zp3", bp.PhotometricOffset, images=["g2"], windows={"g2": (0, 10, 0, 10)})
    # the correction scales the sources' counts, not the sky
    assert bp.PhotometricOffset(dzp=-2.5 * np.log10(2.0)).scale == pytest.approx(0.5, rel=1e-12)


def test_scene_file_round_trip(images, tmp_path):
    from bayesprof import scenefile
    scene = _scene(images, True)
    path = tmp_path / "scene.yaml"
    scenefile.save_scene(scene, path)
    back = scenefile.load_scene(path, images)
    assert [s.name for s in back.build().latent] == [s.name for s in scene.build().latent]
