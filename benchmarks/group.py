"""Group benchmark: ten overlapping galaxies in r + W1 + NUV, bayesprof vs AstroPhot, one run.

The seed tutorial's second example grown to ten galaxies (``GROUP10`` below), simulated by
GalSim (``bayesprof.simulate.simulate_group_scene``): r 0.262"/px (``--size-r`` px square),
W1 2.75"/px 26x26, NUV 1.5"/px 44x44, Gaussian PSFs, peak S/N 50 / 20 / 8, no sky.  Each
galaxy is one Sersic whose structure (centre, re, n, q, PA) is shared by the three images and
whose flux is free per band: 10 x 9 = 90 parameters, every galaxy rendered over every image
(no windows) in both codes.

Both codes start from the same point, the truth perturbed (centres +0.2" in xi and eta, re
x 1.3, n = 2, q = 0.7, PA + 20 deg, fluxes x 0.8), and fit the same pixels:

* bayesprof: ``fit_map`` (Levenberg–Marquardt), cold (compile + fit) and warm (the best of
  ``--repeat`` later calls); default priors (n Uniform(0.5, 8), the others weakly
  informative about the image estimates);
* AstroPhot: ``benchmarks/astrophot_group.py`` in its own venv
  (``benchmarks/setup_astrophot_venv.sh``): one ``sersic galaxy model`` per galaxy and image,
  the W1 and NUV models' structure pointing at the r model's (its JointModels way), all in one
  ``group model``; ``ap.fit.LM`` twice from the start above, the second (warm) call timed, and
  once more to a strict tolerance (its own optimum: how converged its default stop is).

Accuracy: per code, the pulls (fit - truth) / sigma of the 90 parameters, their rms, and chi2
per pixel.  The two run one after the other, so they share the machine's load.

Usage:  .venv/bin/python benchmarks/group.py [--skip-astrophot] [--repeat 3] [--size-r 160]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / ".cache" / "group10.npz"
AP_PYTHON = HERE / ".venv-astrophot" / "bin" / "python"

# (xi, eta arcsec, r AB mag, re arcsec, n, q, PA deg E of N): the four of the seed's group + six more
GROUP10 = (
    (-4.0, 2.5, 16.5, 2.0, 1.0, 0.55, 30.0),
    (3.5, 3.5, 17.0, 1.5, 2.5, 0.8, 110.0),
    (-1.5, -4.0, 17.3, 2.5, 1.5, 0.45, 160.0),
    (5.0, -2.5, 17.8, 1.2, 4.0, 0.7, 75.0),
    (-9.0, -8.0, 18.0, 1.0, 1.0, 0.6, 50.0),
    (9.5, 9.0, 18.2, 0.9, 2.0, 0.75, 140.0),
    (-10.0, 8.5, 18.5, 1.1, 1.2, 0.5, 10.0),
    (10.0, -9.5, 18.8, 0.8, 3.0, 0.85, 95.0),
    (0.5, 11.0, 19.0, 0.9, 1.0, 0.4, 125.0),
    (-0.5, -12.0, 19.3, 0.7, 1.5, 0.65, 65.0),
)
COLOURS10 = ((-0.5, 1.5), (-0.8, 2.0), (-0.3, 1.0), (-1.0, 2.5), (-0.6, 1.2),
             (-0.9, 2.2), (-0.4, 1.4), (-1.0, 2.4), (-0.5, 1.1), (-0.7, 1.8))
PARAMS = ("xi", "eta", "re", "n", "q", "pa")


def perturbed_start(gals, bands):
    """The common start of both codes, in bayesprof's site names (arcsec, deg, uJy)."""
    start = {}
    for k, g in enumerate(gals):
        p = f"g{k}"
        start.update({f"{p}.xi": g["xi"] + 0.2, f"{p}.eta": g["eta"] + 0.2, f"{p}.re": 1.3 * g["re"], f"{p}.n": 2.0,
                      f"{p}.q": 0.7, f"{p}.pa": (g["pa"] + 20.0) % 180.0})
        start.update({f"{p}.flux[{b}]": 0.8 * g["flux"][b] for b in bands})
    return start


def truth_of(gals, bands):
    out = {}
    for k, g in enumerate(gals):
        out.update({f"g{k}.{q}": float(g[q]) for q in PARAMS})
        out.update({f"g{k}.flux[{b}]": float(g["flux"][b]) for b in bands})
    return out


def pull_stats(values, sigmas, truth):
    pulls = {}
    for k, t in truth.items():
        d = values[k] - t
        if k.endswith(".pa"):
            d = (d + 90.0) % 180.0 - 90.0
        pulls[k] = d / sigmas[k]
    a = np.array(list(pulls.values()))
    return pulls, {"rms": float(np.sqrt(np.mean(a**2))), "max_abs": float(np.max(np.abs(a))),
                   "n_over_3": int(np.sum(np.abs(a) > 3))}


def write_data(images, gals, start, path):
    sys.path.insert(0, str(HERE))
    from seed_data import image_arrays

    out = image_arrays(images)
    truth = truth_of(gals, [im.name for im in images])
    out["truth_keys"], out["truth_values"] = np.array(list(truth)), np.array(list(truth.values()))
    out["start_keys"], out["start_values"] = np.array(list(start)), np.array([float(v) for v in start.values()])
    out["n_galaxies"] = np.array(len(gals))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)


def run_bayesprof(args):
    import jax
    import numpyro
    import numpyro.distributions as dist

    import bayesprof as bp
    from bayesprof.simulate import simulate_group_scene

    images, gals = simulate_group_scene(seed=args.seed, size_r=args.size_r, galaxies=GROUP10, colours=COLOURS10)
    bands = [im.name for im in images]
    start = perturbed_start(gals, bands)
    write_data(images, gals, start, args.data)
    scene = bp.Scene(images)
    for k, g in enumerate(gals):
        scene.add(f"g{k}", bp.Sersic, vary={"flux": "band"}, init={"xi": g["xi"] + 0.2, "eta": g["eta"] + 0.2})
        scene.set_prior(f"g{k}.n", dist.Uniform(0.5, 8.0))
    t0 = time.perf_counter()
    fit = bp.fit_map(scene, init=start)
    cold = time.perf_counter() - t0
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        fit = bp.fit_map(scene, init=start)
        times.append(time.perf_counter() - t0)
    truth = truth_of(gals, bands)
    values = {k: float(fit.values[k]) for k in truth}
    sigmas = {k: float(fit.sigmas[k]) for k in truth}
    pulls, stats = pull_stats(values, sigmas, truth)
    return {"versions": {"python": platform.python_version(), "jax": jax.__version__,
                         "numpyro": numpyro.__version__},
            "lm_time_cold_s": cold, "lm_time_s": min(times), "lm_iterations": fit.iterations,
            "success": fit.success, "reduced_chi2": fit.reduced_chi2, "n_params": fit.n_params,
            "values": values, "sigmas": sigmas, "pulls": pulls, "pull_stats": stats}


def run_astrophot(args):
    if not AP_PYTHON.exists():
        return {"error": f"{AP_PYTHON} not found: run `bash benchmarks/setup_astrophot_venv.sh`"}
    proc = subprocess.run([str(AP_PYTHON), str(HERE / "astrophot_group.py"), "--data", str(args.data)],
                          capture_output=True, text=True, timeout=args.astrophot_timeout)
    sys.stderr.write(proc.stderr[-3000:])
    if proc.returncode != 0:
        return {"error": f"astrophot_group.py exited {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size-r", type=int, default=160)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--skip-astrophot", action="store_true")
    ap.add_argument("--astrophot-timeout", type=float, default=3600.0)
    args = ap.parse_args(argv)
    out = {"machine": {"platform": platform.platform(), "cpus": __import__("os").cpu_count()},
           "bayesprof": run_bayesprof(args)}
    b = out["bayesprof"]
    print(f"bayesprof: MAP cold {b['lm_time_cold_s']:.2f} s, warm {b['lm_time_s']:.2f} s, {b['lm_iterations']} steps, "
          f"converged {b['success']}, chi2/N {b['reduced_chi2']:.4f}, pulls rms {b['pull_stats']['rms']:.2f} "
          f"max {b['pull_stats']['max_abs']:.2f} ({b['pull_stats']['n_over_3']} > 3)", file=sys.stderr)
    if not args.skip_astrophot:
        out["astrophot"] = a = run_astrophot(args)
        if "error" not in a:
            print(f"AstroPhot: LM cold {a['lm_time_cold_s']:.2f} s, warm {a['lm_time_s']:.2f} s, "
                  f"{a['lm_iterations']} iterations, chi2/ndf {a['lm_chi2_ndf']:.4f}, pulls rms "
                  f"{a['pull_stats']['rms']:.2f} max {a['pull_stats']['max_abs']:.2f} "
                  f"({a['pull_stats']['n_over_3']} > 3); warm MAP ratio {a['lm_time_s'] / b['lm_time_s']:.1f}x",
                  file=sys.stderr)
            st = a["strict"]
            print(f"AstroPhot to relative tolerance {st['relative_tolerance']:g}: {st['lm_time_s']:.2f} s, "
                  f"{st['lm_iterations']} iterations ({st['lm_message']}); its default stop lies "
                  f"{st['default_stop_max_dev_sigma']:.2f} sigma (max; rms {st['default_stop_rms_dev_sigma']:.2f}) "
                  f"from there; ratio {st['lm_time_s'] / b['lm_time_s']:.1f}x", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
