"""Joint fit benchmark: bayesprof vs AstroPhot on the seed scene, side by side in one run.

The seed tutorial's first example simulated with GalSim (``bayesprof.simulate``): one Sersic
in r (0.262"/px, 240x240), W1 (2.75"/px, 26x26) and NUV (1.5"/px, 44x44), peak S/N 50/20/8;
9 free parameters (centre, re, n, q, PA shared; flux per band).  Both codes fit the same
pixels (``benchmarks/seed_data.py`` writes them for AstroPhot).

bayesprof: Levenberg–Marquardt MAP (warm: the second call, after JIT compilation), then NUTS
(2 chains, vectorised) from the MAP; ESS_min/s = minimum bulk ESS over the 9 parameters /
wall time of the sampling phase (after warm-up).  AstroPhot: ``benchmarks/astrophot_seed.py``
in its own venv (``benchmarks/setup_astrophot_venv.sh``): LM (warm, second call) and
AstroPhot's HMC from the LM optimum (its docstring states every setting).  The two are run one
after the other, so they share the machine's load.

Usage:  .venv/bin/python benchmarks/joint.py [--skip-astrophot] [--samples 400] [--float32]
        [--chain-method parallel]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_bayesprof(args):
    if args.chain_method == "parallel":  # one XLA host device per chain (before jax starts)
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.chains}".strip()
    import jax
    import numpyro
    import numpyro.distributions as dist

    import bayesprof as bp
    from bayesprof.simulate import simulate_seed_scene

    if args.float32:
        bp.set_precision("float32")
    images, truth = simulate_seed_scene(seed=args.seed)
    scene = bp.Scene(images)
    scene.add("gal", bp.Sersic, vary={"flux": "band"})
    scene.set_prior("gal.n", dist.Uniform(0.5, 8.0))
    # the same start as AstroPhot's (a perturbed truth), or bayesprof's own image estimates
    init = None
    if args.init == "perturbed":
        init = {"gal.n": 2.0, "gal.re": 5.0, "gal.q": 0.7, "gal.pa": 30.0, "gal.xi": truth["gal.xi"] + 0.3,
                "gal.eta": truth["gal.eta"] + 0.3}
        init.update({f"gal.flux[{im.band}]": 0.8 * truth[f"gal.flux[{im.band}]"] for im in images})
    t0 = time.perf_counter()
    fit = bp.fit_map(scene, init=init)
    cold = time.perf_counter() - t0
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        fit = bp.fit_map(scene, init=init)
        times.append(time.perf_counter() - t0)
    post = bp.sample(scene, fit, num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains,
                     chain_method=args.chain_method, progress_bar=False, seed=args.seed)
    ess = {k: v for k, v in post.ess().items() if ".mag" not in k}
    ess_min = min(ess.values())
    pulls = {k: (float(fit.values[k]) - v) / float(fit.sigmas[k]) for k, v in truth.items()}
    post_pulls = {k: (post.flat(k).mean() - v) / post.flat(k).std() for k, v in truth.items()}
    return {
        "versions": {"python": platform.python_version(), "jax": jax.__version__, "numpyro": numpyro.__version__,
                     "bayesprof": getattr(bp, "__version__", "dev")},
        "precision": "float32" if args.float32 else "float64", "init": args.init, "chain_method": args.chain_method,
        "lm_time_cold_s": cold, "lm_time_s": min(times), "lm_time_median_s": sorted(times)[len(times) // 2],
        "lm_iterations": fit.iterations, "reduced_chi2": fit.reduced_chi2,
        "map_pulls": pulls, "posterior_pulls": post_pulls,
        "nuts_warmup_time_s": post.warmup_time_s, "nuts_sampling_time_s": post.sampling_time_s,
        "nuts_draws": args.samples * args.chains, "ess_min": ess_min, "ess_min_per_s": ess_min / post.sampling_time_s,
        "divergences": post.num_divergences,
    }


def run_astrophot(args):
    python = HERE / ".venv-astrophot" / "bin" / "python"
    if not python.exists():
        return {"error": f"{python} missing: run benchmarks/setup_astrophot_venv.sh"}
    subprocess.run([sys.executable, str(HERE / "seed_data.py"), "--seed", str(args.seed)], check=True)
    cmd = [str(python), str(HERE / "astrophot_seed.py"), "--seed", str(args.seed)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if res.returncode != 0:
        return {"error": res.stderr[-2000:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=5, help="warm LM repetitions (the minimum is reported)")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--float32", action="store_true")
    p.add_argument("--init", choices=("perturbed", "estimate"), default="perturbed",
                   help="LM start: AstroPhot's perturbed truth (default) or bayesprof's image estimates")
    p.add_argument("--chain-method", choices=("vectorized", "parallel", "sequential"), default="vectorized",
                   help="numpyro's chain method; 'parallel' runs each chain on its own XLA CPU device")
    p.add_argument("--skip-astrophot", action="store_true")
    args = p.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load {os.getloadavg()}")
    bpr = run_bayesprof(args)
    print("bayesprof:", json.dumps(bpr, indent=1, default=float))
    apr = None if args.skip_astrophot else run_astrophot(args)
    if apr is not None:
        print("astrophot:", json.dumps({k: v for k, v in apr.items() if k not in ("hmc_means", "hmc_stds")},
                                       indent=1, default=float))
    print("\n| | bayesprof | AstroPhot | ratio |")
    print("|---|---|---|---|")
    ap_lm = apr.get("lm_time_s") if apr else None
    ap_ess = apr.get("ess_min_per_s") if apr else None
    print(f"| MAP (LM), warm | {bpr['lm_time_s'] * 1e3:.0f} ms ({bpr['lm_iterations']} it.) | "
          f"{'' if ap_lm is None else f'{ap_lm * 1e3:.0f} ms ({apr.get('lm_iterations')} it.)'} | "
          f"{'' if ap_lm is None else f'{ap_lm / bpr['lm_time_s']:.1f}x faster'} |")
    print(f"| ESS_min / s (NUTS vs HMC) | {bpr['ess_min_per_s']:.1f} | {'' if ap_ess is None else f'{ap_ess:.2f}'} | "
          f"{'' if ap_ess is None else f'{bpr['ess_min_per_s'] / ap_ess:.1f}x'} |")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
