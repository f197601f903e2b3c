"""How the MAP's cost grows with the number of sources (issue "Scenes that scale").

The scene: N Sersic galaxies plus a flat sky per image, in two images of one field,
r-like 96x96 px at 0.262"/px (Gaussian PSF FWHM 1.1") and z-like 58x58 px at 0.445"/px
(FWHM 1.3"), drawn by GalSim (the independent renderer) with Gaussian noise.  The galaxies
lie on a jittered grid over the field (neighbours 1-3" apart for N = 16, so they blend),
with magnitudes 19-22, re 0.4-1.2", n 0.8-3, q 0.4-0.95 and any PA.  Structure is shared by
the two images, flux per band, sky per image; no windows.

For each N, in a fresh subprocess (so that peak memory is the scene's own):

* ``first``: the first ``fit_map`` of the freshly built scene (renderer set-up excluded,
  compilation included);
* ``warm``: a second ``fit_map`` of the same scene;
* ``2nd first / warm``: a scene of the same structure (same N, image shapes and PSF kinds) with
  other data and positions, built in the same process after the first: its first ``fit_map``
  and its warm one (they differ by what the first one compiled);
* LM steps, whether it converged, the largest error of a fitted centre in units of its
  sigma, and the process's peak RSS.

Usage:  .venv/bin/python benchmarks/scaling.py [--sources 1 4 16 64] [--max-steps 200] [--pixels 1]
(``--pixels 2``: images twice as wide, 4x the pixels, same galaxies)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time


def make_scene(n_sources, seed, pixels=1):
    import bayesprof as bp
    from bayesprof.simulate import simulate_blend_scene

    images, gals, detections = simulate_blend_scene(n_sources, seed, pixels)
    scene = bp.Scene(images)
    for k, (xi, eta) in enumerate(detections):
        scene.add(f"g{k}", bp.Sersic, init={"xi": xi, "eta": eta})
    scene.add("sky", bp.FlatSky)
    return scene, gals


def centre_pulls(fit, gals):
    worst = 0.0
    for k, g in enumerate(gals):
        for p in ("xi", "eta"):
            worst = max(worst, abs(float(fit.values[f"g{k}.{p}"]) - g[p]) / float(fit.sigmas[f"g{k}.{p}"]))
    return worst


def one(n_sources, max_steps, pixels):
    import bayesprof as bp

    scene, gals = make_scene(n_sources, seed=n_sources, pixels=pixels)
    model = scene.build()
    t0 = time.perf_counter()
    first = bp.fit_map(model, max_steps=max_steps)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = bp.fit_map(model, max_steps=max_steps)
    t_warm = time.perf_counter() - t0
    scene2, gals2 = make_scene(n_sources, seed=1000 + n_sources, pixels=pixels)
    model2 = scene2.build()
    t0 = time.perf_counter()
    second = bp.fit_map(model2, max_steps=max_steps)
    t_second = time.perf_counter() - t0
    t0 = time.perf_counter()
    bp.fit_map(model2, max_steps=max_steps)
    t_second_warm = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # GiB (Linux: kiB)
    return {"sources": n_sources, "first_s": t_first, "warm_s": t_warm, "second_scene_first_s": t_second,
            "second_scene_warm_s": t_second_warm,
            "steps": warm.iterations, "converged": bool(warm.success and first.success),
            "second_steps": second.iterations, "second_converged": bool(second.success),
            "reduced_chi2": warm.reduced_chi2, "worst_centre_pull": centre_pulls(warm, gals),
            "second_worst_centre_pull": centre_pulls(second, gals2), "peak_rss_gib": rss}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sources", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--pixels", type=int, default=1, help="image side multiplier (pixels grow as its square)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(one(args.child, args.max_steps, args.pixels)))
        return
    import jax

    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, jax {jax.__version__}")
    print(f"{'sources':>7} {'first s':>8} {'warm s':>8} {'steps':>5} {'2nd first s':>11} {'2nd warm s':>10} "
          f"{'steps':>5} {'conv':>5} "
          f"{'chi2/N':>7} {'max pull':>8} {'RSS GiB':>7}")
    for n in args.sources:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--max-steps", str(args.max_steps),
                              "--pixels", str(args.pixels)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{n:>7} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['sources']:>7} {r['first_s']:>8.1f} {r['warm_s']:>8.2f} {r['steps']:>5} "
              f"{r['second_scene_first_s']:>11.2f} {r['second_scene_warm_s']:>10.2f} {r['second_steps']:>5} "
              f"{str(r['converged'] and r['second_converged']):>5} {r['reduced_chi2']:>7.3f} "
              f"{r['worst_centre_pull']:>8.2f} "
              f"{r['peak_rss_gib']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
