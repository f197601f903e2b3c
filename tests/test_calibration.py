"""Calibration of the posterior (simulation-based): the machinery of ``benchmarks/calibration.py``.

The slow test is the issue's criterion: >= 100 simulated single-band fits with truths drawn
from the priors; the central 68 % intervals cover the truth 0.68 +- 0.07 and the 95 % intervals
0.95 +- 0.04 of the time for n, re, q and flux.  Run it with ``pytest -m slow
tests/test_calibration.py`` (about 30 minutes on a 2-core CPU).  The fast test only checks that
the machinery runs on three datasets.
"""

import importlib.util
import pathlib

import numpy as np
import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "calibration.py"
_spec = importlib.util.spec_from_file_location("bayesprof_benchmark_calibration", _PATH)
calibration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(calibration)

TOLERANCE = {0.68: 0.07, 0.95: 0.04}


def test_calibration_machinery_smoke():
    """Three datasets, short chains: every MAP converges, every draw is finite, and every truth
    lies within the posterior median +- 3.3 posterior sd (a normal 99.9 % interval; with 150 draws
    the empirical 99.9 % quantiles would only be the sample extremes)."""
    res = calibration.run_calibration(3, seed=11, num_warmup=100, num_samples=150, verbose=False)
    fits = res["fits"]
    assert len(fits) == 3
    fl = res["failures"]
    assert not fl["map_not_found"] and not fl["map_not_converged"] and not fl["non_finite_draws"], fl
    for f in fits:
        assert f["finite"]
        assert f["reduced_chi2"] < fl["reduced_chi2_limit"], f["reduced_chi2"]
        for name in calibration.REPORTED:
            s = f["summary"][name]
            assert np.isfinite(s["median"]) and np.isfinite(s["sd"]) and s["sd"] > 0, (name, s)
            assert abs(s["truth"] - s["median"]) <= 3.3 * s["sd"], (f["index"], name, s)
            lo68, hi68 = s["intervals"]["0.68"]
            lo95, hi95 = s["intervals"]["0.95"]
            assert lo95 <= lo68 <= s["median"] <= hi68 <= hi95
    cov = res["coverage"]
    for name in calibration.CHECKED:
        for lev in ("0.68", "0.95"):
            assert cov[name][lev]["n"] == 3 and 0.0 <= cov[name][lev]["fraction"] <= 1.0
    assert "gal.n" in calibration.table(res)


@pytest.mark.slow
def test_posterior_intervals_are_calibrated():
    """240 fits (seeds 0 and 1, 120 each): 68 % coverage in 0.68 +- 0.07 and 95 % in 0.95 +- 0.04
    for n, re, q, flux.

    Why 240 and not 120: with N fits the binomial scatter of a coverage fraction is
    sqrt(p (1 - p) / N); at N = 120 that is 0.043 at 68 %, so the +-0.07 band is only 1.6 sigma and a
    perfectly calibrated posterior fails one of the four parameters ~30-40 % of the time (seed 0
    alone gives 0.767 for re and flux at 68 %, seed 1 alone 0.617-0.708: both scatter about 0.68).
    At N = 240 the bands are 2.4 sigma (68 %) and 2.9 sigma (95 %).
    """
    res = calibration.pool(calibration.run_calibration(120, seed=seed, verbose=False) for seed in (0, 1))
    print(calibration.table(res))
    fl = res["failures"]
    # failures are counted in the coverage (not dropped); a MAP must exist for every dataset
    assert not fl["map_not_found"] and not fl["non_finite_draws"], fl
    cov = res["coverage"]
    for name in calibration.CHECKED:
        assert cov[name]["0.68"]["n"] >= 100
        for lev, tol in TOLERANCE.items():
            frac = cov[name][str(lev)]["fraction"]
            assert abs(frac - lev) <= tol, f"{name}: {100 * lev:.0f}% intervals cover {frac:.3f}, not {lev} +- {tol}"
