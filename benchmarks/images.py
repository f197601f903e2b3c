"""Compile time of one scene by number of images: notebook 03's scene on 2, 4 and 8 DECam exposures.

The scene (host Sersic + Exponential core at its centre + neighbour + supernova point source
with a flux per exposure + sky per exposure + WCS corrections per exposure + zeropoint corrections of each band's exposures
after its first, where there are) on the
first 2, 4 or all 8 exposures of ``datasets.legacy_testcase3()`` (51 x 41 px, one 50 x 41, 63 x
63 pixel PSF stamps).  Each program (the residuals, the residuals with their Jacobian for the
Levenberg-Marquardt MAP, the gradient of the potential for NUTS) is lowered and compiled alone,
in a fresh process per number of exposures, with JAX's persistent cache off; then run warm (the median of 30 runs); the process's peak RSS.

``--unbatched`` also times the same model with one batch per image, interleaved in the same
process (the warm comparison least disturbed by a noisy machine).  ``--baseline DIR`` also runs the same in another checkout of bayesprof (e.g. a ``git worktree``
of an earlier commit), in the same run, for a comparison on one machine.

    python benchmarks/images.py [--exposures 2 4 8] [--baseline /tmp/base]
"""
import argparse
import json
import os
import subprocess
import sys
import time

REPEAT = 30  # warm runs of each program (their median is reported)
HERE = os.path.dirname(os.path.abspath(__file__))


def scene(n):
    """Notebook 03's scene on the first ``n`` exposures of ``datasets.legacy_testcase3()``."""
    import bayesprof as bp
    from bayesprof import datasets

    exposures = datasets.legacy_testcase3()
    images = bp.ImageList(list(exposures)[:n])
    probe = bp.Scene(images)
    probe.add("gal", bp.Sersic)
    est = probe.initial_values()
    xi, eta = float(est["gal.xi"]), float(est["gal.eta"])
    scene = bp.Scene(images)
    scene.add("host", bp.Sersic, init={"xi": xi, "eta": eta})
    scene.add("core", bp.Exponential)
    scene.tie("core", "host", params=["xi", "eta"])
    scene.add("nb", bp.PointSource, init={"xi": xi - 3.0, "eta": eta + 2.5})
    scene.add("sky", bp.FlatSky)
    if len({im.band for im in images}) < n:  # a band with a second exposure to correct
        scene.add_photometric_offsets(0.3)
    scene.add_astrometric_offsets(0.1)
    scene.add("sn", bp.PointSource, vary={"flux": "image"}, init={"xi": xi + 1.2, "eta": eta + 0.9})
    return scene


def child(n, unbatched):
    import jax
    import numpy as np
    jax.config.update("jax_enable_x64", True)

    scene_ = scene(n)
    model = scene_.build()
    u = model.init_vector()
    out = {"exposures": n, "parameters": int(model.size), "batches": [list(b) for b in getattr(model, "_batches", [])]}
    programs = {"residuals": lambda m, u: m.residuals(u),
                "residuals + Jacobian": lambda m, u: m.residuals_and_jacobian(u),
                "gradient": lambda m, u: jax.grad(m.potential)(u)}
    alone = one_batch_per_image(model) if unbatched else None
    for name, fn in programs.items():
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(model, u).compile()
        t1 = time.perf_counter()
        jax.block_until_ready(compiled(model, u))
        runs, runs_alone = [], []
        if alone is not None:
            compiled_alone = jax.jit(fn).lower(alone, u).compile()
            jax.block_until_ready(compiled_alone(alone, u))
        for _ in range(REPEAT):  # interleaved with the unbatched program, where it is measured
            t2 = time.perf_counter()
            jax.block_until_ready(compiled(model, u))
            runs.append(time.perf_counter() - t2)
            if alone is not None:
                t2 = time.perf_counter()
                jax.block_until_ready(compiled_alone(alone, u))
                runs_alone.append(time.perf_counter() - t2)
        out[name] = {"compile_s": t1 - t0, "warm_s": float(np.median(runs))}
        if alone is not None:
            out[name]["warm_unbatched_s"] = float(np.median(runs_alone))
    import resource
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print("RESULT " + json.dumps(out), flush=True)


def one_batch_per_image(model):
    """The same model with every image its own batch (as before images were batched): for the
    warm comparison in one process.  Uses the model's private layout; benchmark only."""
    from bayesprof.scene import _Structure
    alone = object.__new__(type(model))
    alone.__dict__.update(model.__dict__)
    alone._batches = [(k,) for k in range(len(model.images))]
    alone._stacked = alone._stack_plans()
    alone._structure = _Structure(alone._structure_key(), alone)
    return alone


def run(n, checkout, unbatched):
    env = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE="false", PYTHONPATH=checkout)
    cmd = [sys.executable, __file__, "--child", str(n)] + (["--unbatched"] if unbatched else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"child failed ({checkout}, {n} exposures):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exposures", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--baseline", help="another bayesprof checkout to measure in the same run")
    ap.add_argument("--unbatched", action="store_true",
                    help="also time, interleaved in the same process, the model with one batch per image")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.unbatched)
    checkouts = {"this": os.path.dirname(HERE)}
    if args.baseline:
        checkouts["baseline"] = os.path.abspath(args.baseline)
    print(f"{'checkout':<9} {'exp':>3} {'params':>6}  {'residuals':>17}  {'residuals + J':>17}  {'gradient':>17}  batches")
    for n in args.exposures:
        for label, path in checkouts.items():
            r = run(n, path, args.unbatched and label == "this")
            cells = "  ".join(f"{r[k]['compile_s']:6.1f} s {1e3 * r[k]['warm_s']:6.1f} ms"
                              for k in ("residuals", "residuals + Jacobian", "gradient"))
            print(f"{label:<9} {n:>3} {r['parameters']:>6}  {cells}  peak {r['peak_rss_mb']:.0f} MB  {r['batches']}",
                  flush=True)
            if "warm_unbatched_s" in r["residuals"]:
                cells = "  ".join(f"{'':>8} {1e3 * r[k]['warm_unbatched_s']:6.1f} ms"
                                  for k in ("residuals", "residuals + Jacobian", "gradient"))
                print(f"{'unbatched':<9} {n:>3} {r['parameters']:>6}  {cells}  (same process, interleaved)", flush=True)
    print("(each cell: compile time, then the median warm run time)")


if __name__ == "__main__":
    main()
