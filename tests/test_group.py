"""The seed tutorial's second example on a GalSim scene: four overlapping galaxies in three
images, each a spline profile in r and a Sersic profile in W1 and NUV with centre, q and PA
tied, with a window per galaxy in r and one window in W1 and NUV."""

import numpy as np

import bayesprof as bp
from bayesprof.simulate import simulate_group_scene


def test_group_of_four_spline_and_sersic_with_ties_and_windows():
    images, gals = simulate_group_scene(seed=0)
    scene = bp.Scene(images)
    wide = bp.SkyWindow(-20, 20, -20, 20)
    for i, g in enumerate(gals):
        half = 3 * g["re"] + 1.5
        box = bp.SkyWindow(g["xi"] - half, g["xi"] + half, g["eta"] - half, g["eta"] + half)
        # a source list gives rough positions (0.2" off) and sizes (20 % off), which set the
        # spline knots; everything else is estimated from the images
        knots = 1.2 * g["re"] * np.array([0.0, 0.3, 0.8, 1.6, 2.6, 4.0])
        scene.add(f"g{i}_r", bp.Spline, images=["r"], windows={"r": box}, knots=knots,
                  init={"xi": g["xi"] + 0.2, "eta": g["eta"] - 0.2})
        scene.add(f"g{i}", bp.Sersic, images=["W1", "NUV"], windows={"W1": wide, "NUV": wide})
        scene.tie(f"g{i}", f"g{i}_r", params=["xi", "eta", "q", "pa"])
    fit = bp.fit_map(scene)
    assert fit.success, fit.message
    for name, (chi2, n) in fit.image_chi2().items():
        # residuals consistent with noise: chi2/N = 1 +- 5 sqrt(2/N)
        assert abs(chi2 / n - 1) < 5 * np.sqrt(2 / n), f"{name}: chi2/N = {chi2 / n:.3f} over {n} px"
    for i, g in enumerate(gals):
        for p in ("xi", "eta", "q", "pa"):
            v, s = float(fit.values[f"g{i}_r.{p}"]), float(fit.sigmas[f"g{i}_r.{p}"])
            d = (v - g[p] + 90) % 180 - 90 if p == "pa" else v - g[p]
            assert abs(d) < 5 * s, f"galaxy {i} {p}: {v:.4g} +- {s:.2g} vs {g[p]}"
        # the Sersic fluxes in the coarse images, with structure tied to the r-band spline
        for band in ("W1", "NUV"):
            v, s = float(fit.values[f"g{i}.flux[{band}]"]), float(fit.sigmas[f"g{i}.flux[{band}]"])
            assert abs(v - g["flux"][band]) < 4 * s, f"galaxy {i} flux[{band}] {v:.4g} +- {s:.2g} vs {g['flux'][band]:.4g}"
