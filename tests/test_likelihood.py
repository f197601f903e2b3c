"""Pixel likelihoods, one per image (bayesprof.likelihood).

References: scipy.stats' densities (Student-t, Poisson) for the log-likelihoods, NumPyro's
potential energy of the public NumPyro model, and the expected information computed by
numerical integration (Student-t) and summation (Poisson) for the Fisher weights.
"""

import jax
import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from numpyro.infer.util import potential_energy

import bayesprof as bp
from bayesprof.likelihood import Normal, Poisson, StudentT, as_likelihood
from bayesprof.simulate import draw_galaxies

GAL = bp.Sersic(xi=0.1, eta=-0.1, flux=30.0, re=1.2, n=1.5, q=0.7, pa=30.0)


def _images():
    """A sky-limited image (Gaussian noise, sigma 0.05) and a photon-counting image of the same
    galaxy (Poisson counts on a sky of 2 counts/pixel)."""
    rng = np.random.default_rng(11)
    blank = bp.Image(np.zeros((24, 24)), sigma=1.0, pixel_scale=0.4, psf=bp.GaussianPSF(1.3), zeropoint=25.0)
    ccd = draw_galaxies(GAL, blank) + rng.normal(0, 0.05, (24, 24))
    blank = bp.Image(np.zeros((20, 20)), sigma=1.0, pixel_scale=0.5, psf=bp.GaussianPSF(1.5), zeropoint=24.0)
    counts = rng.poisson(draw_galaxies(GAL, blank) + 2.0).astype(float)
    return [bp.Image(ccd, sigma=0.05, pixel_scale=0.4, psf=bp.GaussianPSF(1.3), zeropoint=25.0, band="r", name="ccd"),
            bp.Image(counts, sigma=np.sqrt(counts + 2.0), pixel_scale=0.5, psf=bp.GaussianPSF(1.5), zeropoint=24.0,
                     band="nuv", name="uv")]


def _scene(likelihood):
    scene = bp.Scene(_images(), likelihood=likelihood)
    scene.add("gal", bp.Sersic)
    scene.add("sky", bp.FlatSky)
    return scene


def test_each_image_has_its_own_likelihood():
    """A Student-t CCD image beside a Poisson photon-counting one: each image's log-likelihood is
    scipy's density summed over its pixels, NumPyro's potential of the public model equals the
    model's, and the MAP (L-BFGS: not a least-squares problem) recovers the galaxy."""
    scene = _scene({"ccd": StudentT(4.0), "uv": "poisson"})
    assert scene.likelihoods == {"ccd": StudentT(4.0), "uv": Poisson()}
    assert scene.likelihood == {"ccd": "student_t", "uv": "poisson"}
    model = scene.build()
    values = model.init_values
    m_ccd, m_uv = (np.asarray(m) for m in model.render_all(values))
    ccd, uv = scene.images
    ll = [float(x) for x in model.image_log_likelihoods(values)]
    ref_ccd = scipy.stats.t.logpdf(ccd.data, df=4.0, loc=m_ccd, scale=0.05).sum()
    ref_uv = scipy.stats.poisson.logpmf(uv.data, m_uv).sum()
    assert ll[0] == pytest.approx(ref_ccd, rel=1e-10)
    assert ll[1] == pytest.approx(ref_uv, rel=1e-10)

    u = model.init_vector()
    numpyro_model = scene.numpyro_model()
    pe, potential = jax.jit(lambda u: (potential_energy(numpyro_model, (), {}, model.unpack(u)), model.potential(u)))(u)
    assert float(potential) == pytest.approx(float(pe), rel=1e-10)

    assert not model.least_squares
    with pytest.raises(ValueError, match="normal likelihood in every image"):
        bp.fit_map(scene, method="lm")
    fit = bp.fit_map(scene)
    assert fit.success, fit.message
    for name, true in (("gal.re", 1.2), ("gal.q", 0.7), ("gal.n", 1.5)):
        assert abs(float(fit.values[name]) - true) < 3 * float(fit.sigmas[name]), name


@pytest.mark.parametrize("likelihood, model, sigma", [(StudentT(3.0), 5.0, 0.7), (StudentT(10.0), -1.0, 2.0),
                                                       (Poisson(), 3.5, 1.0), (Poisson(), 40.0, 1.0),
                                                       (Normal(), 2.0, 0.3)])
def test_fisher_weight_is_the_expected_information(likelihood, model, sigma):
    """w^2 = E[(d log p / d m)^2] over the data's distribution: integrated numerically for the
    Student-t and the normal, summed over counts for the Poisson."""
    if isinstance(likelihood, Poisson):
        k = np.arange(0, int(model + 40 * np.sqrt(model) + 40))
        info = np.sum(scipy.stats.poisson.pmf(k, model) * (k / model - 1.0) ** 2)
    else:
        dist = scipy.stats.t(likelihood.dof, model, sigma) if isinstance(likelihood, StudentT) else \
            scipy.stats.norm(model, sigma)
        h = 1e-5 * sigma
        score = lambda d: (dist.logpdf(d - h) - dist.logpdf(d + h)) / (2 * h)  # d/dm of log p(d | m)  # noqa: E731
        info = scipy.integrate.quad(lambda d: score(d) ** 2 * dist.pdf(d), -np.inf, np.inf)[0]
    w = float(likelihood.fisher_weight(np.asarray(model), np.asarray(sigma)))
    assert w**2 == pytest.approx(info, rel=1e-5)


def test_scene_files_keep_each_images_likelihood(tmp_path):
    scene = _scene({"ccd": StudentT(6.0), "uv": "poisson"})
    bp.save_scene(scene, tmp_path / "scene.yaml")
    back = bp.load_scene(tmp_path / "scene.yaml", scene.images)
    assert back.likelihoods == scene.likelihoods
    common = _scene("student_t")
    bp.save_scene(common, tmp_path / "common.yaml")
    assert bp.load_scene(tmp_path / "common.yaml", common.images).likelihoods == {"ccd": StudentT(5.0),
                                                                                  "uv": StudentT(5.0)}


def test_bad_likelihoods_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"no image\(s\) named \['W1'\]"):
        bp.Scene(_images(), likelihood={"W1": "poisson"})
    with pytest.raises(ValueError, match="dof > 0"):
        StudentT(0.0)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        as_likelihood("cauchy")
    # an image the dict does not name is normal
    assert bp.Scene(_images(), likelihood={"uv": "poisson"}).likelihoods["ccd"] == Normal()
