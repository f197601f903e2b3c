"""Per-image astrometric offsets: images whose WCS is off by a fraction of an arcsec.

GalSim draws one Sersic galaxy into three images; in images 2 and 3 it is drawn where a WCS
shifted by a known (dxi, deta) would put it.  Fitting with :meth:`Scene.add_astrometric_offsets`
must recover the shifts and the galaxy's true position (frame of image 1) within 3 sigma, with
reduced chi2 consistent with noise; without offsets the fit is visibly wrong.
"""

import dataclasses

import numpy as np
import numpyro.distributions as dist
import pytest

import bayesprof as bp
from bayesprof.simulate import draw_galaxies

TRUE = bp.Sersic(xi=0.3, eta=-0.2, flux=200.0, re=0.8, n=1.5, q=0.6, pa=35.0)
OFFSETS = {"a": (0.0, 0.0), "b": (0.25, -0.15), "c": (-0.12, 0.2)}  # arcsec, image WCS errors


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    out = []
    for k, (name, (dx, dy)) in enumerate(OFFSETS.items()):
        im = bp.Image(np.zeros((48, 48)), variance=1.0, pixel_scale=0.262, psf=bp.MoffatPSF(1.0 + 0.1 * k, 3.0),
                      zeropoint=22.5, band="r", name=name)
        model = draw_galaxies(dataclasses.replace(TRUE, xi=TRUE.xi + dx, eta=TRUE.eta + dy), im)
        sigma = model.max() / 60.0
        out.append(bp.Image(model + rng.normal(0, sigma, model.shape), sigma=sigma, pixel_scale=0.262,
                            psf=im.psf, zeropoint=22.5, band="r", name=name))
    return out


def _scene(images, offsets):
    scene = bp.Scene(images)
    scene.add("gal", bp.Sersic)
    if offsets:
        scene.add_astrometric_offsets(sigma=0.3)
    return scene


def test_offsets_recovered(images):
    scene = _scene(images, True)
    names = [s.name for s in scene.build().latent]
    assert "astrometry.dxi[b]" in names and "astrometry.deta[c]" in names
    assert not any(n.endswith("[a]") for n in names if n.startswith("astrometry"))  # reference image
    fit = bp.fit_map(scene)
    assert fit.success, fit.message
    n = scene.build().n_data
    assert abs(fit.reduced_chi2 - 1) < 5 * np.sqrt(2 / n)
    for im, (dx, dy) in OFFSETS.items():
        if im == "a":
            continue
        for p, truth in (("dxi", dx), ("deta", dy)):
            site = f"astrometry.{p}[{im}]"
            assert abs(fit.values[site] - truth) < 3 * fit.sigmas[site], (site, fit.values[site], fit.sigmas[site])
            assert fit.sigmas[site] < 0.02  # a bright galaxy pins the shifts to < 0.02"
    for p in ("xi", "eta", "re", "n", "q"):
        site = f"gal.{p}"
        truth = getattr(TRUE, p)
        assert abs(fit.values[site] - truth) < 3 * fit.sigmas[site], (site, fit.values[site], truth)


def test_without_offsets_the_fit_is_wrong(images):
    fit = bp.fit_map(_scene(images, False))
    n = _scene(images, False).build().n_data
    assert fit.reduced_chi2 > 1 + 20 * np.sqrt(2 / n)


def test_offset_api_errors(images):
    scene = bp.Scene(images)
    scene.add("gal", bp.Sersic)
    with pytest.raises(ValueError, match="no image named"):
        scene.add_astrometric_offsets(reference_image="zz")
    with pytest.raises(ValueError, match="reference image"):
        scene.add_astrometric_offsets(reference_image="a", images=["a", "b"])
    with pytest.raises(ValueError, match="sigma"):
        scene.add_astrometric_offsets(sigma=-1)
    scene.add_astrometric_offsets(reference_image=False, images=["b"])
    with pytest.raises(ValueError, match="astrometric offset already"):
        scene.add("more", bp.AstrometricOffset, images=["b", "c"])
    with pytest.raises(ValueError, match="no windows"):
        scene.add("w", bp.AstrometricOffset, images=["c"], windows={"c": (0, 10, 0, 10)})
    # the prior is the tight Normal asked for, and a custom prior replaces it
    scene.set_prior("astrometry.dxi", dist.Normal(0.0, 0.05))
    site = scene.build().site["astrometry.dxi[b]"]
    assert float(site.prior.prior.scale) == 0.05


def test_offsets_survive_a_scene_file(images, tmp_path):
    scene = _scene(images, True)
    bp.save_scene(scene, tmp_path / "s.yaml")
    again = bp.load_scene(tmp_path / "s.yaml", images)
    a, b = scene.build(), again.build()
    assert [s.name for s in a.latent] == [s.name for s in b.latent]
    assert float(b.site["astrometry.deta[c]"].prior.prior.scale) == 0.3
