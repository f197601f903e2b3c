"""Colour gradients: what polynomial sharing costs, and what it recovers.

``--parts speed``: the seed scene (``bayesprof.simulate.simulate_seed_scene``: one Sersic in
r, W1 and NUV, wavelengths from the DECam r, WISE W1 and GALEX NUV curves) fitted four ways in
one run: structure shared (the default), re and n per band, re and n as ``Chebyshev(1)``, and
as ``Chebyshev(2)``.  For each: the first ``fit_map`` (compilation + fit), the warm MAP and one
gradient of the potential (jitted, median of 20 calls), each the median of ``--repeat`` rounds
interleaved over the four (the machine's load drifts), LM steps, and NUTS (2 vectorised chains,
``--warmup`` + ``--samples`` each): ESS_min/s over every posterior variable but the
magnitudes.  Ratios are to the shared fit of the same run.

``--parts accuracy``: the five-band GalSim scenes of ``bayesprof.simulate`` over
``--realisations`` noise realisations: a Sersic whose log re and log n are quadratics in
wavelength (fitted with ``Chebyshev(2)``; pulls of the six coefficients), the faint band (y,
peak S/N 3) fitted alone (its re error against the polynomial's), and a bulge + disk of
different colours (pulls of B/T per band).

``--parts cosmos``: the COSMOS workflow of notebook 04 (HST F814W + HSC grizy) with the four
galaxies of the notebook's selection, with the two fainter HST detections added, then with re,
n, q (and the centre) as polynomials in wavelength, and with one galaxy as bulge + disk: chi^2/N
per image against the band of correlated noise alone.

Usage:  .venv/bin/python benchmarks/colour.py [--parts speed accuracy cosmos] [--realisations 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def _median_time(f, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def speed(args):
    import jax

    import bayesprof as bp
    from bayesprof.simulate import simulate_seed_scene

    images, _ = simulate_seed_scene(seed=args.seed)
    for im, filt in zip(images, ("decam2014-r", "wise2010-W1", "galex-nuv")):
        im.wavelength = filt
    variants = {"shared": {}, "re, n per band": {"re": "band", "n": "band"},
                "re, n Chebyshev(1)": {"re": bp.Chebyshev(1), "n": bp.Chebyshev(1)},
                "re, n Chebyshev(2)": {"re": bp.Chebyshev(2), "n": bp.Chebyshev(2)}}
    grad = jax.jit(jax.grad(lambda m, u: m.potential(u), argnums=1))
    rows, runs = {}, {}
    for label, vary in variants.items():
        scene = bp.Scene(images)
        scene.add("gal", bp.Sersic, vary={"flux": "band", **vary})
        model = scene.build()
        t0 = time.perf_counter()
        fit = bp.fit_map(model)
        rows[label] = {"first": time.perf_counter() - t0, "steps": fit.iterations, "ok": fit.success,
                       "warm": [], "grad": []}
        u = jax.numpy.asarray(fit.u)
        jax.block_until_ready(grad(model, u))
        runs[label] = (model, fit, u)
    # warm timings interleaved over the variants, so that the machine's drifting load hits all alike
    for _ in range(args.repeat):
        for label, (model, fit, u) in runs.items():
            rows[label]["warm"].append(_median_time(lambda: bp.fit_map(model), 1))
            rows[label]["grad"].append(_median_time(lambda: jax.block_until_ready(grad(model, u)), 20))
    for label, (model, fit, u) in runs.items():
        r = rows[label]
        r["warm"], r["grad"] = float(np.median(r["warm"])), float(np.median(r["grad"]))
        post = bp.sample(model, fit, num_warmup=args.warmup, num_samples=args.samples, num_chains=2,
                         chain_method="vectorized", progress_bar=args.progress, seed=args.seed)
        r["ess_s"] = min(v for k, v in post.ess().items() if ".mag" not in k) / post.sampling_time_s
        r["div"] = post.num_divergences
        print(f"  {label}: first {r['first']:.1f} s, warm {r['warm'] * 1e3:.0f} ms ({r['steps']} steps), gradient "
              f"{r['grad'] * 1e3:.2f} ms, NUTS ESS_min/s {r['ess_s']:.1f}, {r['div']} divergences", flush=True)
    base = rows["shared"]
    print("\n| sharing | first fit_map (s) | warm MAP (ms) | LM steps | gradient (ms) | NUTS ESS_min/s | "
          "warm MAP / shared | gradient / shared |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in rows.items():
        print(f"| {label} | {r['first']:.1f} | {r['warm'] * 1e3:.0f} | {r['steps']} | {r['grad'] * 1e3:.2f} | "
              f"{r['ess_s']:.1f} | {r['warm'] / base['warm']:.2f} | {r['grad'] / base['grad']:.2f} |")


def accuracy(args):
    import bayesprof as bp
    from bayesprof.simulate import COLOUR_BANDS, simulate_bulge_disk, simulate_colour_gradient

    bands = [b[0] for b in COLOUR_BANDS]
    coef_pulls, ratios, bt_pulls, failed = [], [], [], 0
    t0 = time.perf_counter()
    for k in range(args.realisations):
        seed = args.seed + 1000 * k
        images, truth = simulate_colour_gradient(seed=seed)
        scene = bp.Scene(images)
        scene.add("gal", bp.Sersic, vary={"re": bp.Chebyshev(2), "n": bp.Chebyshev(2)})
        fit = bp.fit_map(scene)
        alone = bp.Scene([images["y"]])
        alone.add("gal", bp.Sersic)
        single = bp.fit_map(alone)
        images, bd_truth = simulate_bulge_disk(seed=seed)
        bd = bp.Scene(images)
        bd.add_bulge_disk("gal")
        bd_fit = bp.fit_map(bd)
        failed += (not fit.success) + (not bd_fit.success)
        coef_pulls.append(np.concatenate([(fit.values[s] - truth[s]) / fit.sigmas[s]
                                          for s in ("gal.re_cheb", "gal.n_cheb")]))
        ratios.append(fit.sigmas["gal.re[y]"] / single.sigmas["gal.re"])
        bt_pulls.append([(bd_fit.values[f"gal.bt[{b}]"] - bd_truth[f"gal.bt[{b}]"]) / bd_fit.sigmas[f"gal.bt[{b}]"]
                         for b in bands])
        print(f"  realisation {k}: coefficient pulls {np.round(coef_pulls[-1], 2)}, B/T pulls "
              f"{np.round(bt_pulls[-1], 2)}, re[y] error ratio {ratios[-1]:.3f}", flush=True)
    coef, bt = np.array(coef_pulls), np.array(bt_pulls)
    n = args.realisations
    print(f"\n{n} realisations, {time.perf_counter() - t0:.0f} s; fits not converged: {failed}")
    print("\n| quantity | mean pull | sd | max abs pull | inside 3 sigma |")
    print("|---|---|---|---|---|")
    names = [f"re c{j}" for j in range(3)] + [f"n c{j}" for j in range(3)]
    for j, name in enumerate(names):
        p = coef[:, j]
        print(f"| {name} | {p.mean():+.2f} | {p.std(ddof=1):.2f} | {np.abs(p).max():.2f} | {np.mean(np.abs(p) < 3):.0%} |")
    for j, b in enumerate(bands):
        p = bt[:, j]
        print(f"| B/T {b} | {p.mean():+.2f} | {p.std(ddof=1):.2f} | {np.abs(p).max():.2f} | {np.mean(np.abs(p) < 3):.0%} |")
    r = np.array(ratios)
    print(f"\nre[y] error through the polynomial / alone: median {np.median(r):.3f}, max {r.max():.3f}")


def cosmos(args):
    """The COSMOS workflow (notebook 04) fitted five ways: chi^2/N per image against the band
    that correlated noise alone gives, to separate what the missed neighbours and what the
    colour gradients leave in the residuals."""
    import bayesprof as bp
    from bayesprof import catalog as C
    from bayesprof.datasets import cosmos_hst_hsc

    images = cosmos_hst_hsc()
    hst = images["F814W"]
    seg = C.segment(hst, smooth_fwhm=6.0)
    found = C.sources_from_segmentation(hst, seg, reference=images.reference)
    four = found.select(lambda s: s.area >= 200 and s.snr > 30)
    six = found.select(lambda s: s.area >= 100 and s.snr > 10)
    shape = {"re": bp.Chebyshev(2), "n": bp.Chebyshev(1), "q": bp.Chebyshev(1)}
    centre = {"xi": bp.Chebyshev(1), "eta": bp.Chebyshev(1)}
    variants = {"4 galaxies, shape shared": (four, {}, ()),
                "6 galaxies, shape shared": (six, {}, ()),
                "6, re n q in wavelength": (six, shape, ()),
                "6, re n q centre in wavelength": (six, {**shape, **centre}, ()),
                "6, as above, g2 bulge + disk": (six, {**shape, **centre}, {2})}
    band = {}
    for im in images:
        rho = C.noise_autocorrelation(im, C.segment(im, deblend=False), max_lag=3)
        band[im.name] = rho
    rows = []
    for label, (sources, vary, bd) in variants.items():
        scene = bp.Scene(images)
        C.add_sources(scene, list(sources), bp.Sersic, name="g{id}", window_pad=0.4, common_window=list("grizy"),
                      vary=vary or None, bulge_disk=bd, bulge_disk_vary={})
        scene.add("sky", bp.PlaneSky)
        scene.add_astrometric_offsets(0.1, reference_image="F814W")
        t0 = time.perf_counter()
        fit = bp.fit_map(scene, max_steps=400)
        chi = fit.image_chi2()
        rows.append((label, fit.n_params, time.perf_counter() - t0, fit.iterations, fit.success,
                     {k: c / n for k, (c, n) in chi.items()},
                     {k: float(np.sqrt(2 * (band[k] ** 2).sum() / n)) for k, (c, n) in chi.items()}))
        print(f"  {label}: {fit.n_params} parameters, {rows[-1][2]:.0f} s, {fit.iterations} steps, {fit.message}",
              flush=True)
    names = images.names
    print("\n| model | parameters | MAP (s) | " + " | ".join(f"{n} chi2/N" for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for label, npar, dt, steps, ok, chi, _ in rows:
        print(f"| {label} | {npar} | {dt:.0f} | " + " | ".join(f"{chi[n]:.2f}" for n in names) + " |")
    print("| noise alone (1 +- band) | | | " + " | ".join(f"1 +- {rows[-1][6][n]:.2f}" for n in names) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["speed", "accuracy"], choices=["speed", "accuracy", "cosmos"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--realisations", type=int, default=20)
    ap.add_argument("--progress", action="store_true", help="NUTS progress bars")
    args = ap.parse_args()
    import jax

    import bayesprof as bp

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load {os.getloadavg()}; "
          f"jax {jax.__version__}, bayesprof {bp.__version__ if hasattr(bp, '__version__') else ''}")
    if "speed" in args.parts:
        print("\n## speed: the seed scene")
        speed(args)
    if "accuracy" in args.parts:
        print("\n## accuracy: five bands")
        accuracy(args)
    if "cosmos" in args.parts:
        print("\n## the COSMOS workflow: chi^2/N per image")
        cosmos(args)


if __name__ == "__main__":
    main()
