"""The Levenberg–Marquardt solver's secant term (NL2SOL's structured update)."""

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesprof.inference import _secant_update


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 7), st.integers(0, 2**31 - 1))
def test_secant_update_meets_the_secant_condition_and_stays_symmetric(n, seed):
    """After the update ``S s = y#`` (Dennis, Gay & Welsch 1981, eq. 3.2) and ``S`` is symmetric,
    whatever the sizing factor did to the old ``S``; with ``y.s <= 0`` ``S`` is left alone."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n))
    S = jnp.asarray(a + a.T)
    s = jnp.asarray(rng.normal(size=n))
    y = jnp.asarray(rng.normal(size=n))
    if float(y @ s) <= 0:
        y = y - 2 * (y @ s) / (s @ s) * s + 0.1 * s  # reflect so that y.s > 0
    y_sharp = jnp.asarray(rng.normal(size=n))
    new = np.asarray(_secant_update(S, s, y, y_sharp))
    np.testing.assert_allclose(new, new.T, rtol=0, atol=1e-12 * np.abs(new).max())
    np.testing.assert_allclose(new @ np.asarray(s), np.asarray(y_sharp), rtol=1e-9,
                               atol=1e-9 * (np.abs(new).max() * np.abs(s).max() + np.abs(y_sharp).max()))
    # a step along which the gradient fell (y.s < 0: no positive curvature to learn) changes nothing
    same = np.asarray(_secant_update(S, s, -y, y_sharp))
    np.testing.assert_array_equal(same, np.asarray(S))


def test_blend_converges_in_few_steps_to_minpacks_optimum():
    """Four blended Sersics in r and z (``benchmarks/scaling.py``'s scene, seed 1004): with
    Gauss–Newton steps alone the LM zig-zagged for 49 steps (``benchmarks/RESULTS.md``); with the
    secant term it takes 15 (16 without the predicted stop, 17 at atol 0.01).  The optimum is
    checked against scipy's MINPACK Levenberg–Marquardt (``least_squares(method="lm")``,
    tolerances 1e-12) continued from ours: every parameter within 1.5 x the default ``atol``
    (0.045 sigma; the stop's documented accuracy is 0.036 sigma), the loss within 1e-3."""
    from scipy.optimize import least_squares

    import bayesprof as bp
    from bayesprof.inference import ATOL, _linearise
    from bayesprof.simulate import simulate_blend_scene

    images, _, detections = simulate_blend_scene(4, seed=1004)
    scene = bp.Scene(images)
    for k, (xi, eta) in enumerate(detections):
        scene.add(f"g{k}", bp.Sersic, init={"xi": xi, "eta": eta})
    scene.add("sky", bp.FlatSky)
    model = scene.build()
    fit = bp.fit_map(model)
    assert fit.success, fit.message
    assert fit.iterations <= 25, fit.iterations

    data = model.data
    lin = lambda u: tuple(np.asarray(a) for a in _linearise(model, jnp.asarray(u), data))  # noqa: E731
    ref = least_squares(lambda u: lin(u)[0], np.asarray(fit.u), jac=lambda u: lin(u)[1], method="lm",
                        xtol=1e-12, ftol=1e-12, gtol=1e-12)
    assert ref.success, ref.message
    sigma_u = np.sqrt(np.diag(np.asarray(fit.cov_u)))
    assert np.max(np.abs(np.asarray(fit.u) - ref.x) / sigma_u) < 1.5 * ATOL
    ours = 0.5 * np.sum(lin(fit.u)[0] ** 2)
    assert ours - ref.cost < 1e-3, (ours, ref.cost)
