"""Compile time of the MAP's and NUTS's programs, on three scenes (issue "Scenes that scale").

For each scene, in a fresh process with JAX's persistent cache off, each program is traced and
lowered, then compiled by XLA, each step timed on its own; then run warm (the median of
``--repeat`` runs, at most 3 of the whole solve):

- ``LM solve``: the whole Levenberg-Marquardt solve (``inference._lm``, what ``fit_map`` runs);
- ``residuals + J``: one residuals-and-Jacobian evaluation (the unit of an LM step);
- ``gradient``: the gradient of the potential (what NUTS evaluates per leapfrog step).

The scenes:

- ``seed``: one Sersic in r, W1 and NUV (``simulate.simulate_seed_scene``), flux per band;
- ``group4``: the first four galaxies of ``benchmarks/group.py``'s group in r, W1 and NUV;
- ``decam8``: notebook 03's scene on the eight DECam exposures (``benchmarks/images.py``).

``--baseline DIR`` runs the same in another checkout (e.g. a ``git worktree`` of an earlier
commit), alternating with this one, for a comparison in one run on one machine.  The compiled
module's instruction count (XLA's optimised HLO) is printed too: it is what compile time follows.

    python benchmarks/compile.py [--scenes seed group4 decam8] [--baseline /tmp/base] [--rounds 1]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = ("LM solve", "residuals + J", "gradient")


def build(name):
    import bayesprof as bp

    if name == "seed":
        import numpyro.distributions as dist

        from bayesprof.simulate import simulate_seed_scene

        images, _ = simulate_seed_scene(seed=1)
        scene = bp.Scene(images)
        scene.add("gal", bp.Sersic, vary={"flux": "band"})
        scene.set_prior("gal.n", dist.Uniform(0.5, 8.0))
        return scene
    if name == "group4":
        import numpyro.distributions as dist

        from bayesprof.simulate import simulate_group_scene

        sys.path.insert(0, HERE)
        from group import COLOURS10, GROUP10

        images, gals = simulate_group_scene(seed=0, size_r=160, galaxies=GROUP10[:4], colours=COLOURS10[:4])
        scene = bp.Scene(images)
        for k, g in enumerate(gals):
            scene.add(f"g{k}", bp.Sersic, vary={"flux": "band"}, init={"xi": g["xi"] + 0.2, "eta": g["eta"] + 0.2})
            scene.set_prior(f"g{k}.n", dist.Uniform(0.5, 8.0))
        return scene
    if name == "decam8":
        sys.path.insert(0, HERE)
        import images as images_benchmark

        return images_benchmark.scene(8)
    raise ValueError(f"unknown scene {name!r}")


def child(name, repeat):
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    from bayesprof import inference

    model = build(name).build()
    u = inference._checked_start(model, dict(model.init_values))
    programs = {
        "LM solve": lambda m, u: inference._lm.__wrapped__(m, u, 200, 1e-8, 1e-2, False),
        "residuals + J": lambda m, u: m.residuals_and_jacobian(u),
        "gradient": lambda m, u: jax.grad(m.potential)(u),
    }
    out = {"scene": name, "parameters": int(model.size), "images": len(model.images)}
    for label, fn in programs.items():
        t0 = time.perf_counter()
        lowered = jax.jit(fn).lower(model, u)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        jax.block_until_ready(compiled(model, u))
        runs = []
        for _ in range(min(repeat, 3) if label == "LM solve" else repeat):  # a solve runs for seconds
            t = time.perf_counter()
            jax.block_until_ready(compiled(model, u))
            runs.append(time.perf_counter() - t)
        instructions = len(re.findall(r"^\s+(?:ROOT )?%\S+ = ", compiled.as_text(), re.M))
        out[label] = {"lower_s": t1 - t0, "compile_s": t2 - t1, "warm_s": float(np.median(runs)),
                      "instructions": instructions}
    import resource
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print("RESULT " + json.dumps(out), flush=True)


def run(name, checkout, repeat):
    env = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE="false", PYTHONPATH=checkout)
    cmd = [sys.executable, __file__, "--child", name, "--repeat", str(repeat)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=HERE)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"child failed ({checkout}, {name}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", nargs="+", default=["seed", "group4", "decam8"])
    ap.add_argument("--baseline", help="another bayesprof checkout to measure in the same run")
    ap.add_argument("--rounds", type=int, default=1, help="processes per scene and checkout (alternating)")
    ap.add_argument("--repeat", type=int, default=10, help="warm runs per program (median reported)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.repeat)
    checkouts = {"this": os.path.dirname(HERE)}
    if args.baseline:
        checkouts["baseline"] = os.path.abspath(args.baseline)
    head = "  ".join(f"{p:^36}" for p in PROGRAMS)
    print(f"{'scene':<7} {'checkout':<9} {'params':>6}  {head}")
    for name in args.scenes:
        for _ in range(args.rounds):
            for label, path in checkouts.items():
                r = run(name, path, args.repeat)
                cells = "  ".join(f"{r[p]['lower_s']:5.1f} + {r[p]['compile_s']:5.1f} s {1e3 * r[p]['warm_s']:7.1f} ms "
                                  f"{r[p]['instructions']:>6}" for p in PROGRAMS)
                print(f"{name:<7} {label:<9} {r['parameters']:>6}  {cells}  peak {r['peak_rss_mb']:.0f} MB", flush=True)
    print("(each cell: trace + lower, then XLA compile; the median warm run; instructions of the compiled module;"
          " then the peak RSS of the process after all three)")


if __name__ == "__main__":
    main()
