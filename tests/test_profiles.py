"""Profiles against independent references: scipy's inverse incomplete gamma and quadrature."""

import jax
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import integrate, special

from bayesprof import profiles
from bayesprof.components import DeVaucouleurs, Exponential, Gaussian, Moffat, Sersic


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
