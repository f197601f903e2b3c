"""Scenes: site naming and sharing, ties, windows, priors, bad input, scene files.

References: GalSim images (windows), NumPyro's own potential energy of the public NumPyro
model (the fitter's least-squares objective), analytic exponential profiles (spline).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import potential_energy

import bayesprof as bp
from bayesprof.profiles import sersic_enclosed
from bayesprof.render import Renderer
from bayesprof.simulate import draw_galaxies


def small_image(name, band, scale=0.4, size=32, fwhm=1.2, seed=0, gal=None, sigma=0.05, **kw):
    gal = gal or bp.Sersic(xi=0.2, eta=-0.1, flux=20.0, re=1.5, n=1.5, q=0.7, pa=40.0)
    blank = bp.Image(np.zeros((size, size)), sigma=1.0, pixel_scale=scale, psf=bp.GaussianPSF(fwhm), zeropoint=25.0)
    data = draw_galaxies(gal, blank) + np.random.default_rng(seed).normal(0, sigma, (size, size))
    return bp.Image(data, sigma=sigma, pixel_scale=scale, psf=bp.GaussianPSF(fwhm), zeropoint=25.0, band=band,
                    name=name, **kw)


@pytest.fixture(scope="module")
def three_images():
    return [small_image("a1", "g", seed=1), small_image("a2", "g", seed=2), small_image("b1", "r", seed=3)]


def test_sites_follow_sharing_rules(three_images):
    scene = bp.Scene(three_images)
    scene.add("gal", bp.Sersic, vary={"flux": "band", "re": "band"})
    scene.add("sky", bp.FlatSky)
    names = [s.name for s in scene.sites]
    assert names == ["gal.xi", "gal.eta", "gal.flux[g]", "gal.re[g]", "gal.n", "gal.q", "gal.pa", "gal.flux[r]",
                     "gal.re[r]", "sky.level[a1]", "sky.level[a2]", "sky.level[b1]"]
    scene2 = bp.Scene(three_images)
    scene2.add("sn", bp.PointSource, vary={"flux": "image"})
    assert [s.name for s in scene2.sites] == ["sn.xi", "sn.eta", "sn.flux[a1]", "sn.flux[a2]", "sn.flux[b1]"]


def test_ties_fix_and_images(three_images):
    scene = bp.Scene(three_images)
    scene.add("gal_g", bp.Exponential, images=["a1", "a2"])
    scene.add("gal", bp.Sersic, images=["b1"])
    scene.tie("gal_g", "gal", params=["xi", "eta", "q", "pa"])
    scene.fix("gal.n", 1.0)
    names = [s.name for s in scene.sites]
    assert "gal_g.xi" not in names and "gal_g.q" not in names
    assert {"gal.xi", "gal.eta", "gal.q", "gal.pa", "gal_g.re", "gal_g.flux[g]", "gal.flux[r]", "gal.re"} <= set(names)
    model = scene.build()
    assert model.site["gal.n"].fixed is not None and "gal.n" not in [s.name for s in model.latent]
    # the tied parameters are the very same values in both components
    comps_a1 = model.components(model.init_values, 0)
    comps_b1 = model.components(model.init_values, 2)
    assert float(comps_a1[0].q) == float(comps_b1[0].q) and float(comps_a1[0].xi) == float(comps_b1[0].xi)
    with pytest.raises(ValueError, match="cycle"):
        scene.tie("gal.xi", "gal_g.xi")


def test_numpyro_works_when_arviz_was_imported_before_it():
    """arviz-base imports numpyro lazily; importing arviz, then numpyro.distributions, then
    bayesprof must leave NumPyro whole (``numpyro.factor`` needs
    ``numpyro.distributions.distribution``; it raised an AttributeError in that order)."""
    import subprocess
    import sys

    code = ("import arviz\nimport numpyro.distributions\nimport bayesprof\nimport numpyro\n"
            "numpyro.factor('f', 0.0)\nprint('ok')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_least_squares_objective_is_numpyros_potential(three_images):
    """0.5 |r(u)|^2 (pixels + prior residuals) differs from NumPyro's potential energy of the
    public NumPyro model by a constant, for any priors (here four kinds)."""
    scene = bp.Scene(three_images)
    scene.add("gal", bp.Sersic)
    scene.add("sky", bp.FlatSky)
    scene.set_prior("gal.n", dist.Uniform(0.5, 6.0))
    scene.set_prior("gal.re", dist.Gamma(4.0, 2.0))
    scene.set_prior("gal.q", dist.Beta(3.0, 2.0))
    model = scene.build()
    npm = scene.numpyro_model()
    u0 = model.init_vector()
    rng = np.random.default_rng(0)
    diffs = []
    for k in range(4):
        u = u0 + 0.05 * rng.normal(size=u0.shape) * (k > 0)
        lsq = 0.5 * float(jnp.sum(model.residuals(u) ** 2))
        pe = float(potential_energy(npm, (), {}, model.unpack(u)))
        diffs.append(lsq - pe)
        assert abs(float(model.potential(u)) - pe) < 1e-6 * abs(pe)
    assert np.ptp(diffs) < 1e-6 * abs(pe)


def test_block_jacobian_equals_autodiff_of_the_residuals(three_images):
    """The Levenberg–Marquardt Jacobian, assembled window by window from each window's own sites
    (``residuals_and_jacobian``), equals ``jax.jacfwd`` of the plain residuals, on a scene with
    two windowed sources in one image (their flux columns come from unit-flux renders), two
    sources sharing one image (the generic path), ties, a fixed site, a spline, a plane sky,
    astrometric and photometric offsets, away from the initial point."""
    scene = bp.Scene(three_images)
    scene.add("a", bp.Sersic, windows={"a1": (4, 24, 6, 26)}, init={"xi": 0.2, "eta": -0.1})
    scene.add("b", bp.Exponential, windows={"a1": (10, 30, 2, 22)}, init={"xi": 1.0, "eta": 0.5})
    scene.add("s", bp.Spline, images=["b1"], knots=[0.0, 0.4, 1.0, 2.5], windows={"b1": (2, 30, 2, 30)})
    scene.tie("s", "a", params=["xi", "eta", "q", "pa"])
    scene.add("sky", bp.PlaneSky)
    scene.fix("sky.gy[a2]", 0.0)
    scene.add_astrometric_offsets(0.1)
    scene.add_photometric_offsets(0.1, reference_images=["a1", "b1"])
    model = scene.build()
    u = model.init_vector() + 0.03 * np.random.default_rng(1).normal(size=model.size)
    r, J = jax.jit(model.residuals_and_jacobian)(u, model.data)
    r_ref, J_ref = jax.jit(lambda u: (model.residuals(u), jax.jacfwd(model.residuals)(u)))(u)
    assert r.shape == (model.n_fitted + model.size,) and J.shape == (r.size, model.size)
    assert float(jnp.max(jnp.abs(r - r_ref))) < 1e-12 * float(jnp.max(jnp.abs(r)))
    assert float(jnp.max(jnp.abs(J - J_ref))) < 1e-10 * float(jnp.max(jnp.abs(J_ref)))
    # every site moves some residual (the blocks cover all columns)
    assert bool(jnp.all(jnp.max(jnp.abs(J), axis=0) > 0))


def test_window_render_matches_galsim():
    gal = bp.Sersic(xi=1.0, eta=0.5, flux=30.0, re=0.8, n=1.0, q=0.6, pa=20.0)
    im = small_image("a", "g", size=48, gal=gal)
    scene = bp.Scene([im])
    box = (14, 40, 16, 44)
    scene.add("gal", bp.Sersic, windows={"a": box}, init={"xi": 1.0, "eta": 0.5})
    model = scene.build()
    assert model._plans[0]["good"].sum() == (box[1] - box[0]) * (box[3] - box[2])
    values = {"gal.xi": 1.0, "gal.eta": 0.5, "gal.flux[g]": 30.0, "gal.re": 0.8, "gal.n": 1.0, "gal.q": 0.6,
              "gal.pa": 20.0}
    rendered = np.asarray(model.render_all(values)[0])
    ref = draw_galaxies(gal, bp.Image(np.zeros((48, 48)), sigma=1.0, pixel_scale=0.4, psf=bp.GaussianPSF(1.2),
                                      zeropoint=25.0))
    x0, x1, y0, y1 = box
    assert np.max(np.abs(rendered[y0:y1, x0:x1] - ref[y0:y1, x0:x1])) < 1e-3 * ref.max()
    assert np.all(rendered[:y0] == 0) and np.all(rendered[:, x1:] == 0)


def test_spline_profile_matches_exponential():
    """A spline through log I = -b1 r / re is an exponential profile (truncated at the last knot)."""
    re, rmax = 1.3, 12.0
    knots = tuple(np.linspace(0, rmax, 9))
    b1 = 1.6783469900166612
    spl = bp.Spline(flux=1.0, log_i=jnp.asarray(-b1 * np.asarray(knots[1:]) / re), knots=knots, q=1.0)
    rho = jnp.linspace(0.05, rmax - 0.1, 50)
    total = float(sersic_enclosed(rmax, re, 1.0))
    np.testing.assert_allclose(spl.enclosed(rho), sersic_enclosed(rho, re, 1.0) / total, atol=2e-5)
    exp_density = jnp.exp(bp.Exponential(re=re).log_density(rho)) / total
    np.testing.assert_allclose(jnp.exp(spl.log_density(rho)), exp_density, rtol=2e-4)


def test_bad_input_errors(three_images):
    # a prior that excludes the initial point
    scene = bp.Scene(three_images)
    scene.add("gal", bp.Sersic, init={"n": 4.0})
    scene.set_prior("gal.n", dist.Uniform(0.5, 3.0))
    with pytest.raises(ValueError, match=r"initial value .* gal\.n .* outside the support"):
        scene.build()
    # a source outside every image
    scene = bp.Scene(three_images)
    scene.add("gal", bp.Sersic, init={"xi": 500.0, "eta": 0.0})
    with pytest.raises(ValueError, match="outside every one of its images"):
        scene.build()
    # a PSF larger than the image
    big = bp.Image(np.zeros((12, 12)), sigma=1.0, pixel_scale=0.4, psf=bp.GaussianPSF(8.0), name="tiny")
    scene = bp.Scene([big])
    scene.add("gal", bp.Sersic)
    with pytest.raises(ValueError, match="'tiny': the PSF .* larger than the image"):
        scene.build()
    # unknown names
    scene = bp.Scene(three_images)
    with pytest.raises(ValueError, match="no parameter 'nn'"):
        scene.add("gal", bp.Sersic, vary={"nn": "band"})
    with pytest.raises(ValueError, match="vary must be one of"):
        scene.add("gal", bp.Sersic, vary={"n": "epoch"})
    with pytest.raises(ValueError, match="no image named 'zz'"):
        scene.add("gal", bp.Sersic, images=["zz"])
    with pytest.raises(ValueError, match="window .* does not overlap"):
        scene.add("g2", bp.Sersic, windows={"a1": (100, 120, 0, 10)})
        scene.build()


def test_scene_file_round_trip(tmp_path, three_images):
    scene = bp.Scene(three_images)
    scene.add("gal_g", bp.Spline, images=["a1", "a2"], knots=[0, 0.5, 1, 2, 4, 8],
              windows={"a1": bp.SkyWindow(-5, 5, -5, 5)})
    scene.add("gal", bp.Sersic, images=["b1"], vary={"flux": "image"}, windows={"b1": (2, 30, 2, 30)})
    scene.add("sky", bp.PlaneSky)
    scene.tie("gal_g", "gal", params=["xi", "eta", "q", "pa"])
    scene.set_prior("gal.n", dist.Uniform(0.5, 6.0))
    scene.set_prior("gal_g.log_i", dist.Normal(0.0, 5.0))
    scene.set_init("gal.re", 1.2)
    scene.fix("sky.gx", 0.0)
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"scene{suffix}"
        bp.save_scene(scene, path)
        back = bp.load_scene(path, three_images)
        assert [s.name for s in back.sites] == [s.name for s in scene.sites]
        a, b = scene.build(), back.build()
        for s in a.sites:
            np.testing.assert_allclose(np.asarray(a.init_values[s.name]), np.asarray(b.init_values[s.name]))
            if s.prior is not None:
                assert type(s.prior.prior) is type(b.site[s.name].prior.prior)
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - {name: g, kind: Sersic, colour: red}\n")
    with pytest.raises(ValueError, match=r"sources\[0\]: unknown key\(s\) \['colour'\]"):
        bp.load_scene(bad, three_images)


def test_data_scale_does_not_matter():
    """The same galaxy with data (and noise) scaled by 1e-10: the same MAP structure, fluxes x 1e-10."""
    fits = []
    for scale in (1.0, 1e-10):
        im = small_image("a", "g", seed=5)
        im = bp.Image(im.data * scale, sigma=0.05 * scale, pixel_scale=0.4, psf=bp.GaussianPSF(1.2), zeropoint=25.0,
                      band="g", name="a")
        scene = bp.Scene([im])
        scene.add("gal", bp.Sersic)
        scene.add("sky", bp.FlatSky)
        fits.append(bp.fit_map(scene))
    a, b = fits
    assert a.success and b.success
    for k in ("gal.re", "gal.n", "gal.q", "gal.pa", "gal.xi"):
        assert abs(float(a.values[k]) - float(b.values[k])) < 1e-3 * float(a.sigmas[k]) + 1e-9
    assert abs(float(b.values["gal.flux[g]"]) / float(a.values["gal.flux[g]"]) / 1e-10 - 1) < 1e-5
    assert abs(a.reduced_chi2 - b.reduced_chi2) < 1e-6
    # the uncertainties too: structure unchanged, flux and sky scaled (a sky of 1e-12 counts must not
    # swamp the covariance of the other parameters)
    for k in ("gal.re", "gal.n", "gal.q", "gal.pa", "gal.xi"):
        assert abs(float(b.sigmas[k]) / float(a.sigmas[k]) - 1) < 1e-3, k
    for k in ("gal.flux[g]", "sky.level[a]"):
        assert abs(float(b.sigmas[k]) / float(a.sigmas[k]) / 1e-10 - 1) < 1e-3, k


def test_initial_value_on_a_prior_bound_is_rejected_or_moved_inside(three_images):
    scene = bp.Scene(three_images)
    scene.add("gal", bp.Sersic, init={"q": 1.0})
    with pytest.raises(ValueError, match=r"gal\.q .* outside the support"):
        scene.build()
    scene = bp.Scene(three_images)
    scene.add("gal", bp.Sersic)
    model = scene.build()
    with pytest.raises(ValueError, match="outside the support"):
        bp.fit_map(scene, init={"gal.q": 1.0})
    assert np.all(np.isfinite(np.asarray(model.init_vector())))


def test_scene_of_the_same_structure_reuses_the_compiled_fit(three_images):
    """A second scene with other data, positions and priors but the same structure (site names,
    image shapes, component kinds) runs the first scene's compiled Levenberg–Marquardt program,
    and that program fits the *second* scene: its MAP equals the MAP of a fresh compilation."""
    from bayesprof import inference

    def scene_of(images, xi):
        scene = bp.Scene(images)
        scene.add("gal", bp.Sersic, init={"xi": xi, "eta": -0.1})
        scene.add("sky", bp.FlatSky)
        return scene

    bp.fit_map(scene_of(three_images, 0.2))
    compiled = inference._lm._cache_size()
    other = bp.Sersic(xi=-0.6, eta=0.4, flux=35.0, re=1.1, n=2.5, q=0.5, pa=120.0)
    images_b = [small_image(im.name, im.band, seed=10 + k, gal=other) for k, im in enumerate(three_images)]
    fit_b = bp.fit_map(scene_of(images_b, -0.6))
    assert inference._lm._cache_size() == compiled
    jax.clear_caches()
    fresh = bp.fit_map(scene_of(images_b, -0.6))
    assert inference._lm._cache_size() == 1
    for name, value in fresh.values.items():
        assert abs(float(fit_b.values[name]) - float(value)) <= 1e-8 * max(1.0, abs(float(value))), name
    assert abs(float(fit_b.values["gal.xi"]) + 0.6) < 5 * float(fit_b.sigmas["gal.xi"])


def test_scene_of_the_same_structure_reuses_the_compiled_sampler(three_images):
    """NUTS compiles one program for its warm-up and sampling phases, a second scene of the same
    structure runs it (no new compilation), and it samples the second scene's posterior."""
    from bayesprof import inference

    def scene_of(images, xi):
        scene = bp.Scene(images)
        scene.add("gal", bp.Sersic, init={"xi": xi, "eta": -0.1})
        scene.add("sky", bp.FlatSky)
        return scene

    nuts = dict(num_warmup=40, num_samples=40, num_chains=2, chain_method="vectorized", progress_bar=False)
    scene_a = scene_of(three_images, 0.2)
    fit_a = bp.fit_map(scene_a)
    before = inference._nuts_batch._cache_size()
    bp.sample(scene_a, fit_a, **nuts)
    compiled = inference._nuts_batch._cache_size()
    assert compiled == before + 1  # one program for the warm-up and the sampling
    other = bp.Sersic(xi=-0.6, eta=0.4, flux=35.0, re=1.1, n=2.5, q=0.5, pa=120.0)
    images_b = [small_image(im.name, im.band, seed=10 + k, gal=other) for k, im in enumerate(three_images)]
    scene_b = scene_of(images_b, -0.6)
    post = bp.sample(scene_b, bp.fit_map(scene_b), **nuts)
    assert inference._nuts_batch._cache_size() == compiled
    xi = post.flat("gal.xi")
    assert abs(xi.mean() + 0.6) < 5 * xi.std()


def test_territories_are_the_nearest_position():
    """Each pixel belongs to the nearest given position."""
    from bayesprof.estimate import territories

    lab = territories((5, 8), [(1.0, 2.0), (6.0, 2.0)])
    assert lab.shape == (5, 8)
    assert np.all(lab[:, :3] == 0) and np.all(lab[:, 4:] == 1) and np.all(lab[:, 3] == 0)


def test_blend_estimates_stay_on_their_own_territory():
    """A crowded field: 36 GalSim Sersics (r 19-22 mag) 2.5-4" apart with catalogue positions.
    Each source's initial flux and size are measured on the pixels nearer to it than to any
    other given position, so the estimates stay within a factor 2.5 (flux) and 3 (re) of the
    truth; measured on all pixels, the first sources take in their neighbours and the last ones
    see a residual with them subtracted (flux ratios 0.06-30 on the 64-source field of
    benchmarks/scaling.py)."""
    from bayesprof.profiles import mag_to_flux

    rng = np.random.default_rng(7)
    scale, size = 0.262, 96
    blank = bp.Image(np.zeros((size, size)), sigma=1.0, pixel_scale=scale, psf=bp.GaussianPSF(1.1), zeropoint=22.5)
    step = 0.8 * size * scale / 6
    gals = []
    for i in range(6):
        for j in range(6):
            gals.append(bp.Sersic(xi=(i - 2.5) * step + rng.uniform(-0.15, 0.15) * step,
                                  eta=(j - 2.5) * step + rng.uniform(-0.15, 0.15) * step,
                                  flux=float(mag_to_flux(rng.uniform(19.0, 22.0))), re=rng.uniform(0.4, 1.2),
                                  n=rng.uniform(0.8, 3.0), q=rng.uniform(0.4, 0.95), pa=rng.uniform(0, 180)))
    model = draw_galaxies(gals, blank)
    sigma = 0.02 * float(bp.profiles.flux_to_counts(mag_to_flux(22.0), 22.5))
    image = bp.Image(model + rng.normal(0, sigma, model.shape), sigma=sigma, pixel_scale=scale,
                     psf=bp.GaussianPSF(1.1), zeropoint=22.5)
    scene = bp.Scene([image])
    for k, g in enumerate(gals):
        scene.add(f"g{k}", bp.Sersic, init={"xi": g.xi + rng.normal(0, 0.1), "eta": g.eta + rng.normal(0, 0.1)})
    est = scene.initial_values()
    flux = np.array([float(est[f"g{k}.flux[{image.name}]"]) / g.flux for k, g in enumerate(gals)])
    re = np.array([float(est[f"g{k}.re"]) / g.re for k, g in enumerate(gals)])
    assert np.all((flux > 1 / 2.5) & (flux < 2.5)), flux
    assert np.all((re > 1 / 3) & (re < 3)), re


def test_prior_blocks_do_not_depend_on_numpyros_field_order(monkeypatch):
    """NumPyro flattens a distribution's fields in the order of a Python set, which changes with
    the process's hash seed; the priors' pytree must not, or the compiled programs' arguments
    come in another order in every process and JAX's persistent compilation cache (shared by
    the test workers, notebooks and Dask workers) never hits.  Here the field order is reversed
    by hand: the leaves must come out in the same order, and the potential must not change."""
    from bayesprof.priors import PriorBlocks, SitePrior

    def blocks():
        return PriorBlocks([SitePrior("a", dist.Uniform(0.5, 8.0)), SitePrior("b", dist.Normal(1.0, 2.0)),
                            SitePrior("c", dist.LogNormal(0.3, 1.5)), SitePrior("d", dist.Uniform(0.1, 1.0)),
                            SitePrior("e", dist.Normal(jnp.zeros(3), jnp.arange(1.0, 4.0)), shape=(3,))])

    u = jnp.linspace(-1.0, 1.0, 7)
    before = blocks()
    potential, constrained = float(before.potential(u)), before.constrain(u)
    original = dist.Distribution.gather_pytree_data_fields.__func__
    monkeypatch.setattr(dist.Distribution, "gather_pytree_data_fields",
                        classmethod(lambda cls: tuple(reversed(original(cls)))))
    assert dist.Uniform.gather_pytree_data_fields() != tuple(reversed(dist.Uniform.gather_pytree_data_fields()))
    # a process has one field order: programs compiled under the other one (SitePrior's jitted
    # set-up checks take distributions as arguments) would read the leaves in that order
    jax.clear_caches()
    after = blocks()
    for x, y in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after), strict=True):
        np.testing.assert_array_equal(x, y)
    assert float(after.potential(u)) == potential
    np.testing.assert_array_equal(after.constrain(u), constrained)
    monkeypatch.undo()
    jax.clear_caches()  # nor may the tests after this one use programs compiled under the reversed order


def _tan_image(name, band, size, fwhm, rotation_deg, shift_px, seed):
    """A noisy image of a galaxy, with a TAN WCS rotated by ``rotation_deg`` and its centre moved
    by ``shift_px`` (0.3"/px)."""
    from astropy.wcs import WCS
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [(size + 1) / 2 + shift_px[0], (size + 1) / 2 + shift_px[1]]
    c, s = np.cos(np.deg2rad(rotation_deg)), np.sin(np.deg2rad(rotation_deg))
    w.wcs.cd = 0.3 / 3600 * np.array([[-c, s], [s, c]])
    gal = bp.Sersic(xi=0.2, eta=-0.1, flux=20.0, re=1.5, n=1.5, q=0.7, pa=40.0)
    blank = bp.Image(np.zeros((size, size)), sigma=1.0, wcs=w, psf=bp.GaussianPSF(fwhm), zeropoint=25.0)
    data = draw_galaxies(gal, blank) + np.random.default_rng(seed).normal(0, 0.05, (size, size))
    return bp.Image(data, sigma=0.05, wcs=w, psf=bp.GaussianPSF(fwhm), zeropoint=25.0, band=band, name=name)


def test_images_alike_render_as_one_batch():
    """Images of one shape and PSF kind (other PSF widths, WCS rotations and centres, bands, one
    without the others' astrometric and zeropoint corrections) are rendered by one ``vmap``.
    Each image's model equals a standalone :class:`~bayesprof.render.Renderer` of that image
    with the batch's common PSF sampling to 1e-10, and the default renderer (``bp.render``) to
    1e-6 of the image's light (the sampling's own accuracy); the Jacobian equals ``jax.jacfwd``
    of the residuals and the reverse-mode gradient of the potential J^T r; an image of another
    size is its own batch."""
    images = [_tan_image("e1", "g", 30, 1.0, 0.0, (0.0, 0.0), 1), _tan_image("e2", "g", 30, 1.4, 20.0, (1.5, -2.0), 2),
              _tan_image("e3", "r", 30, 1.2, -35.0, (-3.0, 1.0), 3), _tan_image("e4", "r", 26, 1.2, 5.0, (0.0, 0.5), 4)]
    scene = bp.Scene(images)
    scene.add("gal", bp.Sersic, vary={"flux": "band"})
    scene.add("star", bp.PointSource, vary={"flux": "band"}, init={"xi": -1.5, "eta": 1.2})
    scene.add("sky", bp.PlaneSky)
    scene.add_astrometric_offsets(0.1, reference_image="e1")
    scene.add_photometric_offsets(0.1, reference_images=["e1", "e3"])
    model = scene.build()
    assert model._batches == [(0, 1, 2), (3,)]

    u = model.init_vector() + 0.05 * np.random.default_rng(2).normal(size=model.size)
    values = model.complete(model.constrain(u))
    assert "astrometry.dxi[e1]" not in values and "photometry.dzp[e3]" not in values
    models = jax.jit(lambda m, u: m._models(m.site_vector(u)))(model, u)
    for k, im in enumerate(images):
        comps, offset, scale = model.image_components(values, im)
        assert (offset == (0.0, 0.0)) == (im.name == "e1") and (scale == 1.0) == (im.name in ("e1", "e3"))
        sky = bp.PlaneSky(**{p: float(values[f"sky.{p}[{im.name}]"]) for p in ("level", "gx", "gy")}).evaluate(im.shape)
        r = model._plans[k]["groups"][0]["renderer"]
        same = Renderer(im, model.reference, psf_radius=r.psf_radius, fold=r.fold, oversample=r.oversample,
                                  wings=r._wing_type is not None)
        light = scale * same(list(comps.values()))
        assert float(jnp.max(jnp.abs(models[k] - sky - light))) < 1e-10 * float(jnp.max(light)), im.name
        default = scale * bp.render(list(comps.values()), im, model.reference)
        assert float(jnp.max(jnp.abs(models[k] - sky - default))) < 1e-6 * float(jnp.sum(default)), im.name

    r, J = jax.jit(model.residuals_and_jacobian)(u, model.data)
    J_ref = jax.jit(jax.jacfwd(model.residuals))(u)
    assert float(jnp.max(jnp.abs(J - J_ref))) < 1e-10 * float(jnp.max(jnp.abs(J_ref)))
    # the potential is 0.5 |r|^2 + const (normal likelihood): its gradient is J^T r
    g = jax.jit(jax.grad(model.potential))(u)
    g_fwd = J_ref.T @ r
    assert float(jnp.max(jnp.abs(g - g_fwd))) < 1e-9 * float(jnp.max(jnp.abs(g_fwd)))


def test_windows_of_one_size_anywhere_share_the_structure():
    """A window's position is data: two scenes whose windows have one size but sit elsewhere
    have one structure (one compiled program), and each renders its window where it is."""
    images = [small_image("a1", "g", seed=1), small_image("a2", "g", seed=2)]

    def scene_with(box):
        scene = bp.Scene(images)
        scene.add("gal", bp.Sersic, windows={"a1": box, "a2": box}, init={"xi": 0.2, "eta": -0.1})
        return scene.build()

    m1, m2 = scene_with((4, 24, 6, 26)), scene_with((8, 28, 2, 22))
    assert m1._structure == m2._structure and m1._batches == [(0, 1)]
    for m, (x0, x1, y0, y1) in ((m1, (4, 24, 6, 26)), (m2, (8, 28, 2, 22))):
        out = np.asarray(jax.jit(lambda m: m._models(m.flat(m.init_values)))(m)[0])
        inside = np.zeros(out.shape, bool)
        inside[y0:y1, x0:x1] = True
        assert np.all(out[~inside] == 0.0) and np.all(out[inside] != 0.0)
