"""Colour gradients: parameters smooth in wavelength (Chebyshev polynomials) and bulge + disk.

The GalSim simulation is the issue's: five bands of different pixel scales and PSFs, a galaxy
whose log re and log n are known quadratics in wavelength, and a bulge + disk of different
colours; the fitted coefficients and B/T must lie within 3 sigma of the truth, and the faintest
band's re must be measured at least twice as precisely through the polynomial as alone.
"""

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import bayesprof as bp
from bayesprof.scenefile import scene_from_dict, scene_to_dict
from bayesprof.simulate import COLOUR_BANDS, draw_galaxies, simulate_bulge_disk, simulate_colour_gradient
from bayesprof.wavelength import effective_wavelength

BANDS = [b[0] for b in COLOUR_BANDS]


@pytest.fixture(scope="module")
def gradient_fits():
    """The polynomial fit of the five bands (log re and log n quadratic in wavelength), and the
    faint band (y, peak S/N 3 per pixel) fitted alone."""
    images, truth = simulate_colour_gradient(seed=1)
    scene = bp.Scene(images)
    scene.add("gal", bp.Sersic, vary={"re": bp.Chebyshev(2), "n": bp.Chebyshev(2)})
    alone = bp.Scene([images["y"]])
    alone.add("gal", bp.Sersic)
    return scene, bp.fit_map(scene), bp.fit_map(alone), truth


def test_effective_wavelengths():
    # speclite's photon-weighted mean of the SDSS r curve (its documentation: 6205.8 A), recomputed here
    import speclite.filters

    curve = speclite.filters.load_filter("sdss2010-r")
    lam, resp = curve.wavelength, curve.response
    mean = np.trapezoid(lam**2 * resp, lam) / np.trapezoid(lam * resp, lam)
    assert effective_wavelength("sdss2010-r").to_value(u.AA) == pytest.approx(mean, rel=1e-4)
    assert effective_wavelength("sdss2010-r").to_value(u.AA) == pytest.approx(6205.8, abs=0.1)
    assert effective_wavelength("0.5 um").to_value(u.AA) == pytest.approx(5000.0)
    assert effective_wavelength(654.3 * u.nm).to_value(u.AA) == pytest.approx(6543.0)
    # HST's ACS F814W from our table: between its pivot (8045 A) and the red edge of the filter
    assert 8045.0 < effective_wavelength("HST_ACS_WFC-F814W").to_value(u.AA) < 8300.0
    for bad, msg in (("kids-r", "unknown filter"), ("5 s", "unit of length"), (-3 * u.AA, "positive"),
                     (5000.0, "Quantity of length")):
        with pytest.raises(ValueError, match=msg):
            effective_wavelength(bad)
    with pytest.raises(ValueError, match="Image 'x': unknown filter"):
        bp.Image(np.zeros((4, 4)), sigma=1.0, pixel_scale=0.2, name="x", wavelength="kids-r")


def test_polynomial_recovers_the_quadratics(gradient_fits):
    scene, fit, _, truth = gradient_fits
    assert fit.success
    for site in ("gal.re_cheb", "gal.n_cheb"):
        pulls = (fit.values[site] - truth[site]) / fit.sigmas[site]
        assert np.all(np.abs(pulls) < 3.0), (site, pulls)
    # the per-band values are the polynomial's, with errors from the coefficients' covariance
    poly = bp.Chebyshev(2)
    B = poly.basis(poly.coordinates([im.wavelength.to_value(u.AA) for im in scene.images]))
    values = np.array([fit.values[f"gal.re[{b}]"] for b in BANDS])
    np.testing.assert_allclose(values, np.exp(B @ fit.values["gal.re_cheb"]), rtol=1e-10)
    J = B * values[:, None]  # d re / d c
    i = fit.names.index("gal.re_cheb[0]")
    cov = fit.covariance[i:i + 3, i:i + 3]
    sigmas = np.array([fit.sigmas[f"gal.re[{b}]"] for b in BANDS])
    np.testing.assert_allclose(sigmas, np.sqrt(np.einsum("ij,jk,ik->i", J, cov, J)), rtol=1e-8)
    assert np.all(np.abs(values - [truth[f"gal.re[{b}]"] for b in BANDS]) < 3 * sigmas)


def test_polynomial_steadies_the_faint_band(gradient_fits):
    _, fit, alone, truth = gradient_fits
    # y alone (peak S/N 3 per pixel) against y through the polynomial over five bands
    assert fit.sigmas["gal.re[y]"] <= 0.5 * alone.sigmas["gal.re"]
    assert abs(fit.values["gal.re[y]"] - truth["gal.re[y]"]) < 3 * fit.sigmas["gal.re[y]"]


def test_bulge_disk_colours():
    images, truth = simulate_bulge_disk(seed=2)
    scene = bp.Scene(images)
    bulge, disk = scene.add_bulge_disk("gal")
    assert (bulge.name, disk.name) == ("gal_bulge", "gal_disk")
    fit = bp.fit_map(scene)
    assert fit.success
    for b in BANDS:
        bt, sigma = fit.values[f"gal.bt[{b}]"], fit.sigmas[f"gal.bt[{b}]"]
        fb, fd = fit.values[f"gal_bulge.flux[{b}]"], fit.values[f"gal_disk.flux[{b}]"]
        assert bt == pytest.approx(fb / (fb + fd), rel=1e-12)
        assert abs(bt - truth[f"gal.bt[{b}]"]) < 3 * sigma, (b, bt, sigma, truth[f"gal.bt[{b}]"])
    # colours with their covariance errors: the bulge's own g - z, and the bulge's relative to
    # the disk's, within 3 sigma of the truth; each sigma as 20 000 draws of the four fluxes
    # from the fit's covariance give it (linear propagation: within 5 %)
    mag = lambda f: -2.5 * np.log10(f)  # noqa: E731
    true_bulge = mag(truth["gal_bulge.flux[g]"]) - mag(truth["gal_bulge.flux[z]"])
    true_disk = mag(truth["gal_disk.flux[g]"]) - mag(truth["gal_disk.flux[z]"])
    names = [f"{c}.flux[{b}]" for c in ("gal_bulge", "gal_disk") for b in ("g", "z")]
    idx = [fit.names.index(n) for n in names]
    draws = np.random.default_rng(0).multivariate_normal([fit.values[n] for n in names],
                                                         fit.covariance[np.ix_(idx, idx)], 20_000)
    bulge_draws = mag(draws[:, 0]) - mag(draws[:, 1])
    for (value, sigma), true, spread in (
            (fit.colour("gal_bulge", "g", "z"), true_bulge, np.std(bulge_draws)),
            (fit.colour("gal_bulge", "g", "z", relative_to="gal_disk"), true_bulge - true_disk,
             np.std(bulge_draws - mag(draws[:, 2]) + mag(draws[:, 3])))):
        assert abs(value - true) < 3 * sigma, (value, sigma, true)
        assert sigma == pytest.approx(spread, rel=0.05)
    with pytest.raises(ValueError, match="not a fitted flux"):
        fit.colour("gal_bulge", "g", "K")
    # the bulge is the compact, concentrated one: the two did not trade places
    assert fit.values["gal_bulge.n"] > 2.5 and fit.values["gal_bulge.re"] < 0.5 * fit.values["gal_disk.re"]
    # a Sersic disk's n is kept below the bulge's: Uniform(0.3, 1.5) against Uniform(1.5, 8)
    other = bp.Scene(images)
    other.add_bulge_disk("gal", disk=bp.Sersic)
    model = other.build()
    (lo_d, hi_d), (lo_b, hi_b) = ((float(model.site[f"gal_{c}.n"].prior.prior.low),
                                   float(model.site[f"gal_{c}.n"].prior.prior.high)) for c in ("disk", "bulge"))
    assert (lo_d, hi_d, lo_b, hi_b) == (0.3, 1.5, 1.5, 8.0)


@pytest.fixture(scope="module")
def small_scene():
    """Two small bands (DECam g and z), a bulge + disk whose disk size and flux are linear in
    wavelength, and a flat sky."""
    rng = np.random.default_rng(0)
    images = []
    for name, filt, scale, fb, fd in (("g", "decam2014-g", 0.262, 3.0, 20.0), ("z", "decam2014-z", 0.3, 12.0, 15.0)):
        blank = bp.Image(np.zeros((20, 20)), sigma=1.0, pixel_scale=scale, psf=bp.GaussianPSF(1.0), zeropoint=22.5)
        data = draw_galaxies([bp.Sersic(0.0, 0.0, fb, 0.4, 4.0, 0.9, 10.0), bp.Sersic(0.0, 0.0, fd, 1.0, 1.0, 0.5, 40.0)],
                             blank)
        images.append(bp.Image(data + rng.normal(0.0, 0.02, data.shape), sigma=0.02, pixel_scale=scale,
                               psf=bp.GaussianPSF(1.0), zeropoint=22.5, band=name, name=name, wavelength=filt))
    scene = bp.Scene(images)
    scene.add_bulge_disk("gal", vary_disk={"re": bp.Chebyshev(1), "flux": bp.Chebyshev(1)})
    scene.add("sky", bp.FlatSky)
    return scene


def test_jacobian_of_derived_values_is_exact(small_scene):
    model = small_scene.build()
    u0 = model.init_vector() + 0.05 * jnp.sin(jnp.arange(model.size))
    r, J = jax.jit(lambda m, u: m.residuals_and_jacobian(u))(model, u0)
    np.testing.assert_allclose(r, model.residuals(u0), rtol=1e-12, atol=1e-12)
    reference = jax.jit(lambda m, u: jax.jacfwd(m.residuals)(u))(model, u0)
    np.testing.assert_allclose(J, reference, rtol=1e-8, atol=1e-10 * float(jnp.max(jnp.abs(reference))))


def test_posterior_and_files_carry_the_derived_values(small_scene):
    scene = small_scene
    model = scene.build()
    # the NumPyro model: coefficients sampled, per-band values and B/T deterministic
    from numpyro import handlers

    trace = handlers.trace(handlers.seed(model.numpyro_model, 0)).get_trace()
    assert trace["gal_disk.re_cheb"]["type"] == "sample" and trace["gal_disk.re_cheb"]["value"].shape == (2,)
    for name in ("gal_disk.re[z]", "gal_disk.flux[g]", "gal.bt[z]"):
        assert trace[name]["type"] == "deterministic"
    assert "gal_disk.re[z]" not in model.site and "gal_disk.flux[g]" not in model.site
    fit = bp.fit_map(scene)
    assert fit.success
    post = bp.sample(scene, fit, num_warmup=30, num_samples=30, num_chains=1, progress_bar=False)
    assert post.posterior["gal_disk.re"].dims[-1] == "band"
    assert list(post.posterior["gal.bt"].coords["band"].values) == ["g", "z"]
    assert post.posterior["gal_disk.re_cheb"].shape[-1] == 2
    draws = post.flat("gal_disk.re_cheb")
    np.testing.assert_allclose(post.flat("gal_disk.re[z]"), np.exp(draws[:, 0] + draws[:, 1]), rtol=1e-10)
    np.testing.assert_allclose(post.flat("gal_disk.mag[g]"), 23.9 - 2.5 * np.log10(post.flat("gal_disk.flux[g]")),
                               rtol=1e-10)
    bt = post.flat("gal_bulge.flux[z]") / (post.flat("gal_bulge.flux[z]") + post.flat("gal_disk.flux[z]"))
    np.testing.assert_allclose(post.flat("gal.bt[z]"), bt, rtol=1e-10)
    # a scene file keeps the polynomials, the wavelengths and the bulge + disk
    d = scene_to_dict(scene)
    assert d["sources"][1]["vary"]["re"] == {"chebyshev": 1} and d["bulge_disk"] == {"gal": ["gal_bulge", "gal_disk"]}
    again = scene_from_dict(d, scene.images)
    assert again.build()._structure == model._structure
    d["images"][0]["wavelength"] += 100.0
    with pytest.raises(ValueError, match=r"images\[0\]\.wavelength"):
        scene_from_dict(d, scene.images)


def test_bad_declarations_are_one_line_errors():
    images = [bp.Image(np.zeros((20, 20)), sigma=1.0, pixel_scale=0.2, psf=bp.GaussianPSF(0.8), band=b, name=b,
                       wavelength=f) for b, f in (("g", "hsc2017-g"), ("r", "hsc2017-r"))]
    scene = bp.Scene(images)
    with pytest.raises(ValueError, match="'pa' cannot vary as a polynomial"):
        scene.add("a", bp.Sersic, vary={"pa": bp.Chebyshev(1)})
    with pytest.raises(ValueError, match="degree must be an integer"):
        bp.Chebyshev(1.5)
    scene.add("gal", bp.Sersic, vary={"re": bp.Chebyshev(2)})
    with pytest.raises(ValueError, match="3 coefficients but the source's images have 2 distinct"):
        scene.build()
    with pytest.raises(ValueError, match=r"gal\.re_cheb"):
        scene.set_prior("gal.re", dist.Normal(0.0, 1.0))
    scene.set_prior("gal.re_cheb", dist.Normal(0.0, 1.0))  # the coefficients' prior is fine
    no_lambda = [bp.Image(np.zeros((20, 20)), sigma=1.0, pixel_scale=0.2, psf=bp.GaussianPSF(0.8), band=b, name=b)
                 for b in "gr"]
    other = bp.Scene(no_lambda)
    other.add("gal", bp.Sersic, vary={"n": bp.Chebyshev(1)})
    with pytest.raises(ValueError, match="image 'g' has no wavelength"):
        other.build()
    with pytest.raises(ValueError, match="init takes the centre"):
        bp.Scene(images).add_bulge_disk("gal", init={"re": 1.0})


def test_catalog_rows_hold_the_coefficients_and_band_values():
    """fit_cutouts with re as a polynomial: the row has the coefficients (``re_cheb<k>``) and
    each band's value (``re_<band>``, arcsec) near the truth; a position that moves with
    wavelength is refused (a row has one RA/Dec)."""
    images, truth = simulate_colour_gradient(seed=3)
    with pytest.raises(ValueError, match="a catalog row has one position per source"):
        bp.fit_cutouts([images], vary={"xi": bp.Chebyshev(1)})
    table = bp.fit_cutouts([images], vary={"re": bp.Chebyshev(2), "n": bp.Chebyshev(2)})
    row = table[0]
    assert row["converged"] and "re" not in table.colnames and "n" not in table.colnames
    assert table["re_g"].unit == "arcsec" and table["re_cheb0"].unit is None
    coef = np.array([row[f"re_cheb{k}"] for k in range(3)])
    coef_err = np.array([row[f"re_cheb{k}_err"] for k in range(3)])
    assert np.all(np.abs(coef - truth["gal.re_cheb"]) < 3 * coef_err), (coef, truth["gal.re_cheb"], coef_err)
    poly = bp.Chebyshev(2)
    B = poly.basis(poly.coordinates([im.wavelength.to_value(u.AA) for im in images]))
    for b, basis in zip(BANDS, B):
        assert row[f"re_{b}"] == pytest.approx(np.exp(basis @ coef), rel=1e-10)
        assert abs(row[f"re_{b}"] - truth[f"gal.re[{b}]"]) < 3 * row[f"re_{b}_err"]
        assert abs(row[f"n_{b}"] - truth[f"gal.n[{b}]"]) < 3 * row[f"n_{b}_err"]
