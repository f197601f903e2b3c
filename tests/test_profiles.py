"""Profiles against independent references: scipy's inverse incomplete gamma and quadrature."""

import jax
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import integrate, special

from bayesprof import profiles
from bayesprof.components import DeVaucouleurs, Exponential, Gaussian, Moffat, Sersic


@pytest.mark.parametrize("a", [0.1, 0.4, 1.0, 1.7, 4.0, 9.3, 16.0, 27.0, 40.0])
def test_incomplete_gamma_and_its_derivatives_match_scipy(a):
    """profiles.gamma_p (the Sersic's enclosed light and b_n) against scipy's regularised gamma:
    the value to 3e-13 (absolute, and relative where P > 1e-290), dP/dx against the closed form
    x^(a-1) e^-x / Gamma(a), dP/da against central differences of scipy (h = 1e-6: 1e-8 of the
    largest |dP/da|), over x from 1e-12 to well beyond where P is 1 in double precision (both of its branches)."""
    x = np.concatenate([[0.0], np.geomspace(1e-12, 1.0, 100), np.linspace(1.0, 1.2 * (a + 10 * a**0.5 + 40), 600)])
    ref = special.gammainc(a, x)
    p = np.asarray(profiles.gamma_p(a, x))
    represented = ref > 1e-290
    np.testing.assert_allclose(p[represented], ref[represented], rtol=3e-13, atol=0)
    np.testing.assert_allclose(p, ref, rtol=0, atol=3e-13)
    assert p[0] == 0.0
    dx = np.asarray(jax.vmap(jax.grad(profiles.gamma_p, argnums=1), (None, 0))(a, x[1:]))
    dx_ref = np.exp((a - 1) * np.log(x[1:]) - x[1:] - special.gammaln(a))
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-13 * dx_ref.max())
    h = 1e-6
    da = np.asarray(jax.vmap(jax.grad(profiles.gamma_p, argnums=0), (None, 0))(a, x))
    da_ref = (special.gammainc(a + h, x) - special.gammainc(a - h, x)) / (2 * h)
    np.testing.assert_allclose(da, da_ref, rtol=0, atol=1e-8 * np.abs(da_ref).max())


def test_sersic_b_matches_scipy_to_1e_8():
    n = np.linspace(0.3, 10.0, 400)
    b = np.asarray(jax.vmap(profiles.sersic_b)(n))
    np.testing.assert_allclose(b, special.gammaincinv(2 * n, 0.5), rtol=1e-8, atol=0)


@pytest.mark.parametrize("n", [0.3, 0.5, 1.0, 2.5, 4.0, 6.0, 10.0])
def test_sersic_b_gradient(n):
    h = 1e-6
    fd = (special.gammaincinv(2 * (n + h), 0.5) - special.gammaincinv(2 * (n - h), 0.5)) / (2 * h)
    assert float(jax.grad(profiles.sersic_b)(n)) == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("n", [0.2, 0.3, 0.5, 0.8])
def test_enclosed_flux_gradient_is_finite_at_the_centre(n):
    """d/dn of the enclosed fraction against scipy's regularised gamma by central differences,
    the centre (rho = 0) included: P(2n, 0) has a NaN derivative in JAX for 2n <= 1, which once
    made every Jacobian column of a scene with a Sersic of n <= 0.5 NaN."""
    rho = np.array([0.0, 1e-4, 0.3, 1.0, 3.0])
    grad = np.asarray(jax.jacfwd(lambda m: profiles.sersic_enclosed(rho, 1.0, m))(n))
    h = 1e-6

    def exact(m):
        return special.gammainc(2 * m, special.gammaincinv(2 * m, 0.5) * rho ** (1 / m))

    np.testing.assert_allclose(grad, (exact(n + h) - exact(n - h)) / (2 * h), rtol=1e-5, atol=1e-9)


@settings(max_examples=25, deadline=None)
@example(n=0.4375, re=0.0625, q=1.0, ie=1.192092896e-07)  # cases where the old reference quadrature missed
@example(n=2.0, re=1.0, q=1.0, ie=1.3203562643952497e-07)
@given(n=st.floats(0.4, 8.0), re=st.floats(0.05, 50.0), q=st.floats(0.1, 1.0), ie=st.floats(1e-12, 1e6))
def test_flux_ie_conversion_matches_quadrature(n, re, q, ie):
    """F = q * 2 pi int I(r) r dr with I = ie exp(-b((r/re)^(1/n) - 1)), integrated numerically."""
    b = special.gammaincinv(2 * n, 0.5)
    # substitute r = re t^n to remove the cusp: integrand ~ t^(2n-1) e^(-b t)
    # (for n < 1/2 the t^(2n-1) factor is singular at 0: quad's algebraic weight takes it exactly)
    # (ie and re^2 n factored out: quad's default absolute tolerance would swamp a tiny ie)
    g = lambda t: np.exp(-b * (t - 1.0))  # noqa: E731
    inner = integrate.quad(g, 0, 1, weight="alg", wvar=(2 * n - 1, 0.0), epsabs=0, epsrel=1e-12)[0]
    outer = integrate.quad(lambda t: g(t) * t ** (2 * n - 1), 1, np.inf, limit=200, epsabs=0, epsrel=1e-12)[0]
    flux = 2 * np.pi * q * ie * re**2 * n * (inner + outer)
    assert float(profiles.sersic_flux_from_ie(ie, re, n, q)) == pytest.approx(flux, rel=1e-8)
    assert float(profiles.sersic_ie_from_flux(flux, re, n, q)) == pytest.approx(ie, rel=1e-8)


@pytest.mark.parametrize("comp", [
    Sersic(re=1.3, n=3.3), Exponential(re=2.0), DeVaucouleurs(re=0.7), Gaussian(fwhm=1.1), Moffat(fwhm=0.9, beta=2.2),
])
def test_density_and_enclosed_flux_are_consistent_with_quadrature(comp):
    """2 pi int_0^R p(r) r dr (numerical) equals the analytic enclosed fraction; total is 1."""
    p = lambda r: float(np.exp(comp.log_density(r)))  # noqa: E731
    for radius in (0.1, 1.0, 3.0, 50.0):
        num = 2 * np.pi * integrate.quad(lambda r: p(r) * r, 0, radius, limit=400, points=[0.01, 0.1, 1.0])[0]
        assert float(comp.enclosed(radius)) == pytest.approx(num, rel=1e-6, abs=1e-9)
    total = 2 * np.pi * integrate.quad(lambda r: p(r) * r, 0, np.inf, limit=400)[0]
    assert total == pytest.approx(1.0, rel=1e-6)


def test_half_light_radius_encloses_half():
    for n in (0.5, 1.0, 4.0, 8.0):
        assert float(profiles.sersic_enclosed(2.0, 2.0, n)) == pytest.approx(0.5, rel=1e-12)


def test_magnitudes_and_counts():
    assert float(profiles.mag_to_flux(23.9)) == pytest.approx(1.0)
    assert float(profiles.flux_to_mag(3630.780547701)) == pytest.approx(15.0)
    # a 15th magnitude source in an image of zeropoint 22.5 gives 10^(0.4*7.5) counts
    assert float(profiles.flux_to_counts(profiles.mag_to_flux(15.0), 22.5)) == pytest.approx(10 ** 3.0)


# ------------------------------------------------------------- what each component declares
def _declared_classes():
    from bayesprof import components

    return [c for c in vars(components).values() if isinstance(c, type) and issubclass(c, components.Component)
            and c.PARAMETERS and not c.__name__.startswith("_")]


MOMENTS = {"xi": 0.3, "eta": -0.2, "re": 1.1, "q": 0.6, "pa": 40.0, "finest": 0.2}


@pytest.mark.parametrize("kind", _declared_classes(), ids=lambda c: c.__name__)
def test_every_component_declares_its_parameters(kind):
    """A component's parameters are its traced fields (the others are static, e.g. a spline's
    knots); each declares one unit and domain per name across classes, a sharing rule, an
    initial value from image moments inside its domain, and a default prior whose support lies
    in the domain and contains that value."""
    import dataclasses

    import numpyro.distributions as dist

    from bayesprof.components import PARAMETER_DOMAINS, PARAMETER_UNITS, SHARING

    moments = {**MOMENTS, "knots": kind.default_knots(1.1, 0.2)} if hasattr(kind, "default_knots") else MOMENTS
    fields = [f.name for f in dataclasses.fields(kind)]
    assert set(kind.PARAMETERS) <= set(fields)
    assert set(kind.__dataclass_fields__) == set(fields)  # the declarations are no (pseudo-)field
    values = {p: (np.asarray(kind.PARAMETERS[p].initial(moments, p)) if p not in ("flux", "level") else np.asarray(5.0))
              for p in kind.PARAMETERS}
    instance = kind(**values)
    leaves = jax.tree_util.tree_leaves(instance)
    assert sum(np.size(v) for v in leaves) == sum(np.size(v) for v in values.values())  # others static
    for name, p in kind.PARAMETERS.items():
        assert p.unit == PARAMETER_UNITS[name] and p.domain == PARAMETER_DOMAINS[name], name
        assert p.sharing in SHARING
        assert p.domain.contains(values[name]), (name, values[name])
        for per_image in (False, True):
            prior = p.default_prior(values[name], 0.5, per_image=per_image)
            assert isinstance(prior, dist.Distribution)
            support = prior.support
            lo = getattr(support, "lower_bound", -np.inf)
            hi = getattr(support, "upper_bound", np.inf)
            assert p.domain.covers(lo, hi), (name, lo, hi)
            assert bool(np.all(support.check(values[name]))), name
            draws = np.asarray(prior.sample(jax.random.PRNGKey(0), (200,)))
            assert p.domain.contains(draws), name


def test_a_new_profile_is_declared_in_its_class_alone():
    """A top-hat disc (a profile bayesprof does not ship), declared here with a parameter of a
    new name (``radius``): a scene takes it with its declared unit, prior, sharing and initial
    value, and the MAP fit of a GalSim top-hat (GalSim's own ``TopHat``, convolved with a
    Gaussian PSF, noise added) recovers its radius and flux within 3 sigma."""
    import dataclasses

    import galsim
    import jax.numpy as jnp
    import numpyro.distributions as dist

    import bayesprof as bp
    from bayesprof.components import FLUX, POSITION, Component, Domain, Parameter
    from bayesprof.priors import lognormal_peaked_at

    radius_param = Parameter("arcsec", Domain(0.0), lambda e, s: lognormal_peaked_at(e, 1.0),
                             estimate=lambda m: 1.5 * m["re"])

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass(frozen=True)
    class TopHat(Component):
        """Uniform disc of radius ``radius`` (arcsec)."""

        xi: float = 0.0
        eta: float = 0.0
        flux: float = 1.0
        radius: float = 1.0
        q = 1.0
        pa = 0.0
        PARAMETERS = {"xi": POSITION, "eta": POSITION, "flux": FLUX, "radius": radius_param}

        def log_density(self, rho):
            return jnp.where(rho <= self.radius, -jnp.log(jnp.pi * self.radius**2), -jnp.inf)

        def enclosed(self, rho):
            return jnp.clip((rho / self.radius) ** 2, 0.0, 1.0)

    # a disc inside the renderer's Fourier-rendered core (radius < 2 core radii): its sharp edge
    # is exact there; farther out the halo samples it at pixel centres (2 % of the peak at 1.3")
    scale, size, zp, flux, radius = 0.2, 48, 25.0, 50.0, 0.6
    counts = flux * 10 ** (0.4 * (zp - 23.9))
    truth = galsim.Convolve(galsim.TopHat(radius, flux=counts), galsim.Gaussian(fwhm=0.6))
    clean = truth.drawImage(nx=size, ny=size, scale=scale, method="auto").array
    sigma = clean.max() / 40
    data = clean + np.random.default_rng(2).normal(0, sigma, clean.shape)
    scene = bp.Scene([bp.Image(data, sigma=sigma, pixel_scale=scale, psf=bp.GaussianPSF(0.6), zeropoint=zp,
                               name="img")])
    scene.add("disc", TopHat)
    model = scene.build()
    rendered = np.asarray(model.render_all({**model.init_values, "disc.xi": 0.0, "disc.eta": 0.0,
                                            "disc.radius": radius, "disc.flux[img]": flux})[0])
    assert np.abs(rendered - clean).max() < 1e-4 * clean.max()  # measured: 1.2e-5
    site = next(s for s in model.latent if s.name == "disc.radius")
    assert isinstance(site.prior.prior, dist.LogNormal)
    assert scene.source("disc").mode("radius") == "shared" and scene.source("disc").mode("flux") == "band"
    fit = bp.fit_map(scene)
    assert fit.success, fit.message
    for name, true in (("disc.radius", radius), ("disc.flux[img]", flux)):
        assert abs(float(fit.values[name]) - true) < 3 * float(fit.sigmas[name]), (name, fit.values[name])
