"""Simulation-based calibration: do the posterior intervals cover the truth as often as they say?

For each of ``--n-fits`` datasets, the truth of every parameter of one Sersic galaxy is drawn
from the very priors set on the scene, the noiseless image is rendered by bayesprof's own model
(``SceneModel.render_image``: the generative model itself) and Gaussian noise of known sigma is
added.  Each dataset is then fitted as a user would: a Levenberg–Marquardt MAP from starts that
do not use the truth (the image estimate of :func:`bayesprof.estimate.estimate_source` and the
prior medians; the start with the lowest posterior potential wins), then NUTS in the MAP-whitened
space ``u = u_map + L z`` exactly as :func:`bayesprof.sample` does.  If the posterior is right,
the central 68 % (95 %) interval contains the truth in 68 % (95 %) of the datasets, up to the
binomial scatter ``sqrt(p (1 - p) / N)``.

Efficiency: NUTS is numpyro's functional API (``numpyro.infer.hmc.hmc``) with the MAP, the
whitening factor and the pixels as *arguments* of the potential, warm-up and sampling run by
``lax.scan`` inside one jitted function, vmapped over a batch of datasets (``--batch``; a batch
costs as many leapfrog steps as its slowest member, so 1 was fastest here): the sampler is
compiled once for the whole study.  ``fit_map`` on ``model.with_data(...)`` reuses one compiled
Levenberg–Marquardt solver.

The scene: one 32 x 32 image, 0.4"/px, Gaussian PSF FWHM 1.2", noise sigma 1 count, zeropoint 25;
priors (also the truth distribution)::

    xi, eta   Normal(0, 0.3) arcsec
    flux      LogNormal(log 400, 0.5) uJy       (peak S/N ~ 5 - 150, median ~ 30)
    re        LogNormal(log 1.5, 0.3) arcsec
    n         Uniform(0.5, 5)
    q         Uniform(0.3, 1)
    pa        PeriodicUniform(180) deg          (coverage of the folded angle)

Usage::

    .venv/bin/python benchmarks/calibration.py [--n-fits 120] [--seed 0] [--warmup 200] [--samples 300] [--batch 1]
    .venv/bin/python benchmarks/calibration.py --pool run1.json run2.json   # pooled table of runs

Writes ``benchmarks/.cache/calibration.json`` (every fit: truth, MAP, intervals, diagnostics;
and the summary table).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.infer.hmc import hmc

import bayesprof as bp
from bayesprof.estimate import estimate_source
from bayesprof.image import tangent_plane_offsets

CACHE = pathlib.Path(__file__).resolve().parent / ".cache"

SHAPE = (32, 32)
PIXEL_SCALE = 0.4  # arcsec
PSF_FWHM = 1.2  # arcsec
ZEROPOINT = 25.0
NOISE_SIGMA = 1.0  # counts per pixel
FLUX_MEDIAN = 400.0  # uJy

#: parameters whose coverage is asserted, then the others reported
CHECKED = ("gal.n", "gal.re", "gal.q", "gal.flux[r]")
REPORTED = CHECKED + ("gal.xi", "gal.eta", "gal.pa")
LEVELS = (0.68, 0.95)


def priors() -> dict:
    """The scene's priors, which are also the distribution the truths are drawn from."""
    return {
        "gal.xi": dist.Normal(0.0, 0.3),
        "gal.eta": dist.Normal(0.0, 0.3),
        "gal.flux": dist.LogNormal(float(np.log(FLUX_MEDIAN)), 0.5),
        "gal.re": dist.LogNormal(float(np.log(1.5)), 0.3),
        "gal.n": dist.Uniform(0.5, 5.0),
        "gal.q": dist.Uniform(0.3, 1.0),
        "gal.pa": bp.PeriodicUniform(180.0),
    }


#: prior medians: a start of the MAP fit that does not look at the data
PRIOR_MEDIANS = {"gal.xi": 0.0, "gal.eta": 0.0, "gal.flux[r]": FLUX_MEDIAN, "gal.re": 1.5, "gal.n": 2.75,
                 "gal.q": 0.65, "gal.pa": 90.0}


def make_image(data) -> bp.Image:
    return bp.Image(np.asarray(data, dtype=float), sigma=NOISE_SIGMA, pixel_scale=PIXEL_SCALE,
                    psf=bp.GaussianPSF(PSF_FWHM), zeropoint=ZEROPOINT, band="r", name="r")


def build_model():
    """The calibration scene's model (explicit priors and initial values on every site)."""
    img = make_image(np.zeros(SHAPE))
    scene = bp.Scene([img])
    scene.add("gal", bp.Sersic)
    for site, prior in priors().items():
        scene.set_prior(site, prior)
    for site, value in PRIOR_MEDIANS.items():
        scene.set_init(site, value)
    model = scene.build()
    assert [s.name for s in model.latent] == ["gal.xi", "gal.eta", "gal.flux[r]", "gal.re", "gal.n", "gal.q",
                                              "gal.pa"], [s.name for s in model.latent]
    return model


# ------------------------------------------------------------------------------ simulation
def draw_truth(model, key) -> dict:
    """One draw of every latent site from its prior (PA unwrapped: the model is periodic in it)."""
    keys = jax.random.split(key, len(model.latent))
    return {s.name: float(s.prior.prior.sample(k)) for s, k in zip(model.latent, keys)}


def peak_snr(noiseless) -> float:
    return float(np.max(noiseless) / NOISE_SIGMA)


# ------------------------------------------------------------------------------ MAP starts
def estimate_start(model, data) -> dict:
    """Start values from the image alone (:func:`bayesprof.estimate.estimate_source`), kept inside
    the priors' supports (an interval bound itself has an infinite unconstrained value)."""
    im = model.images[0]
    mask = np.zeros(SHAPE, bool)
    var = np.full(SHAPE, NOISE_SIGMA**2)
    g = estimate_source(np.asarray(data), mask, var)
    xi, eta = (float(v) for v in tangent_plane_offsets(im.pixel_to_sky(g.x, g.y), model.reference))
    pm = im.pixel_map(model.reference)
    J = np.asarray(pm.jacobian(jnp.asarray(xi), jnp.asarray(eta)))  # d(x, y) / d(xi, eta)
    th = np.radians(g.theta)
    major = np.linalg.solve(J, [np.cos(th), np.sin(th)])
    pa = float(np.degrees(np.arctan2(major[0], major[1])) % 180.0)
    counts_per_ujy = float(bp.flux_to_counts(1.0, ZEROPOINT))
    flux = max(g.counts / counts_per_ujy, 10.0)  # a positive start even if the aperture sum is not
    return {"gal.xi": xi, "gal.eta": eta, "gal.flux[r]": float(flux),
            "gal.re": float(np.clip(g.re_px * PIXEL_SCALE, 0.3, 6.0)), "gal.n": 2.0,
            "gal.q": float(np.clip(g.q, 0.33, 0.97)), "gal.pa": pa}


def fit_dataset(model, data, potential):
    """MAP of one dataset from the image estimate and from the prior medians; returns the best
    (lowest potential, converged ones first), its potential, and a list of (start, ok, potential)."""
    m = model.with_data([data])
    starts = {"estimate": estimate_start(model, data), "prior_median": dict(PRIOR_MEDIANS)}
    fits = []
    for name, init in starts.items():
        try:
            f = bp.fit_map(m, init=init)
        except Exception as err:  # noqa: BLE001 - a start that cannot be used is recorded, not fatal
            fits.append((name, None, np.inf, repr(err)))
            continue
        pot = float(potential(jnp.asarray(f.u), m.data))
        ok = bool(f.success and np.isfinite(pot) and np.all(np.isfinite(f.cov_u)))
        fits.append((name, f, pot if np.isfinite(pot) else np.inf, "converged" if ok else f.message))
    usable = [x for x in fits if x[1] is not None and np.isfinite(x[2])]
    if not usable:
        return None, np.inf, fits
    best = min(usable, key=lambda x: (not x[1].success, x[2]))
    return best, best[2], fits


def whitening(cov_u):
    """Cholesky factor of the MAP covariance, as in :func:`bayesprof.sample`."""
    cov = np.asarray(cov_u)
    d = cov.shape[0]
    jitter = 1e-10 * max(np.trace(cov) / d, 1e-300)
    try:
        return np.linalg.cholesky(cov + jitter * np.eye(d))
    except np.linalg.LinAlgError:
        return np.diag(np.sqrt(np.maximum(np.diag(cov), jitter)))


# ------------------------------------------------------------------------------ NUTS, compiled once
def make_sampler(model, num_warmup, num_samples, *, target_accept_prob=0.8, max_tree_depth=8):
    """A jitted function (keys, u_map, L, data) -> draws, vmapped over datasets.

    Runs NUTS (numpyro's functional API) in whitened coordinates u = u_map + L z with warm-up
    (step size and diagonal mass matrix adaptation) and sampling in ``lax.scan``; the dataset's
    MAP, whitening factor and pixels are arguments, so one compilation serves every dataset.
    Returns z draws (B, S, d), potential energies (B, S), divergences (B, S), leapfrog steps
    (B, S) and the adapted step sizes (B,).
    """

    def potential_fn_gen(u_map, L, data):
        return lambda z: model.potential(u_map + L @ z, data)

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")

    def one(key, u_map, L, data):
        k_init, k_run = jax.random.split(key)
        args = (u_map, L, data)
        z0 = 0.3 * jax.random.normal(k_init, u_map.shape)
        state = init_kernel(z0, num_warmup, target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                            model_args=args, rng_key=k_run)

        def warm(s, _):
            return sample_kernel(s, model_args=args), None

        state, _ = jax.lax.scan(warm, state, None, length=num_warmup)

        def draw(s, _):
            s = sample_kernel(s, model_args=args)
            return s, (s.z, s.potential_energy, s.diverging, s.num_steps)

        state, (z, pe, div, steps) = jax.lax.scan(draw, state, None, length=num_samples)
        return z, pe, div, steps, state.adapt_state.step_size

    return jax.jit(jax.vmap(one))


# ------------------------------------------------------------------------------ intervals
def _fold_about_mean(a, truth, period=180.0):
    """Fold angle draws about their circular mean c, and the truth into [c - P/2, c + P/2)."""
    ang = 2 * np.pi * np.asarray(a) / period
    c = np.arctan2(np.mean(np.sin(ang)), np.mean(np.cos(ang))) * period / (2 * np.pi)
    fold = lambda x: c + np.mod(np.asarray(x) - c + period / 2, period) - period / 2  # noqa: E731
    return fold(a), float(fold(truth))


def intervals(draws, truth, levels=LEVELS):
    """Equal-tailed intervals {level: (lo, hi)} of 1-D draws and whether each covers ``truth``."""
    out = {}
    for lev in levels:
        lo, hi = np.quantile(draws, [0.5 - lev / 2, 0.5 + lev / 2])
        out[lev] = (float(lo), float(hi), bool(lo <= truth <= hi))
    return out


def summarize(draws_phys, truth, levels=LEVELS):
    """Per parameter: posterior median, intervals and coverage flags (PA folded)."""
    res = {}
    for name in REPORTED:
        a = np.asarray(draws_phys[name], dtype=float)
        t = float(truth[name])
        if name.endswith(".pa"):
            a, t = _fold_about_mean(a, t)
        iv = intervals(a, t, levels)
        res[name] = {"truth": t, "median": float(np.median(a)), "sd": float(np.std(a)),
                     "intervals": {str(k): [v[0], v[1]] for k, v in iv.items()},
                     "covered": {str(k): v[2] for k, v in iv.items()}}
    return res


# ------------------------------------------------------------------------------ the study
def run_calibration(n_fits=120, seed=0, *, num_warmup=200, num_samples=300, batch=1, levels=LEVELS,
                    verbose=True):
    """Simulate and fit ``n_fits`` datasets; return a dict with every fit and the coverage summary."""
    levels = tuple(levels)
    t_start = time.perf_counter()
    model = build_model()
    d = model.size
    potential = jax.jit(model.potential)
    render = jax.jit(lambda values: model.render_image(model.complete(values), 0))
    constrain = jax.jit(jax.vmap(model.constrain))
    sampler = make_sampler(model, num_warmup, num_samples)

    key = jax.random.PRNGKey(seed)
    k_truth, k_noise, k_nuts = jax.random.split(key, 3)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(k_noise)).ravel())

    # ---- simulate every dataset and fit its MAP
    records = []
    t_map = time.perf_counter()
    for i, kt in enumerate(jax.random.split(k_truth, n_fits)):
        truth = draw_truth(model, kt)
        noiseless = np.asarray(render({k: jnp.asarray(v) for k, v in truth.items()}))
        data = noiseless + rng.normal(0.0, NOISE_SIGMA, SHAPE)
        best, pot, tries = fit_dataset(model, data, potential)
        rec = {"index": i, "truth": truth, "peak_snr": peak_snr(noiseless), "data": data,
               "starts": [{"start": s, "potential": p if np.isfinite(p) else None, "status": msg}
                          for s, _, p, msg in tries]}
        if best is None:
            rec.update(map_failed=True, map_start=None)
        else:
            name, f, _, _ = best
            rec.update(map_failed=not f.success, map_start=name, map_success=bool(f.success),
                       map_message=f.message, reduced_chi2=float(f.reduced_chi2), map_potential=pot,
                       map_values={k: float(np.asarray(v)) for k, v in f.values.items()},
                       u_map=np.asarray(f.u), L=whitening(f.cov_u))
        records.append(rec)
        if verbose and (i + 1) % 20 == 0:
            print(f"  MAP {i + 1}/{n_fits} ({time.perf_counter() - t_map:.0f} s)", flush=True)
    map_time = time.perf_counter() - t_map

    # ---- NUTS on the datasets with a MAP, `batch` at a time (the last batch padded)
    todo = [r for r in records if "u_map" in r]
    keys = jax.random.split(k_nuts, max(len(todo), 1))
    t_nuts = time.perf_counter()
    for b0 in range(0, len(todo), batch):
        chunk = todo[b0:b0 + batch]
        pad = chunk + [chunk[-1]] * (batch - len(chunk))
        idx = [b0 + j if j < len(chunk) else b0 + len(chunk) - 1 for j in range(batch)]
        u_map = jnp.asarray(np.stack([r["u_map"] for r in pad]))
        L = jnp.asarray(np.stack([r["L"] for r in pad]))
        data = (jnp.asarray(np.stack([r["data"] for r in pad])),)
        z, pe, div, steps, step_size = jax.block_until_ready(sampler(keys[np.asarray(idx)], u_map, L, data))
        z, pe, div, steps = (np.asarray(a) for a in (z, pe, div, steps))
        for j, r in enumerate(chunk):
            u = np.asarray(r["u_map"])[None, :] + z[j] @ np.asarray(r["L"]).T
            phys = {k: np.asarray(v) for k, v in constrain(jnp.asarray(u)).items()}
            r["summary"] = summarize(phys, r["truth"], levels)
            r["divergences"] = int(div[j].sum())
            r["mean_leapfrog_steps"] = float(steps[j].mean())
            r["step_size"] = float(step_size[j])
            r["min_sample_potential"] = float(pe[j].min())
            r["finite"] = bool(np.all(np.isfinite(u)) and np.all(np.isfinite(pe[j])))
            # the MAP minimises the potential, so no draw should lie clearly below it
            r["map_not_optimal"] = bool(pe[j].min() < r["map_potential"] - 1.0)
        if verbose and (b0 // batch + 1) % max(1, 10 // batch) == 0:
            print(f"  NUTS {min(b0 + batch, len(todo))}/{len(todo)} ({time.perf_counter() - t_nuts:.0f} s)",
                  flush=True)
    nuts_time = time.perf_counter() - t_nuts

    result = {
        "config": {"n_fits": n_fits, "seed": seed, "num_warmup": num_warmup, "num_samples": num_samples,
                   "chains_per_dataset": 1, "batch": batch, "shape": list(SHAPE), "pixel_scale": PIXEL_SCALE,
                   "psf_fwhm": PSF_FWHM, "zeropoint": ZEROPOINT, "noise_sigma": NOISE_SIGMA,
                   "priors": {k: repr(v) if isinstance(v, bp.PeriodicUniform) else
                              f"{type(v).__name__}({', '.join(f'{a}={float(getattr(v, a)):g}' for a in v.arg_constraints)})"
                              for k, v in priors().items()},
                   "map_starts": ["estimate_source", "prior medians"], "levels": list(levels)},
        "fits": [{k: v for k, v in r.items() if k not in ("data", "u_map", "L")} for r in records],
        "time_s": {"total": time.perf_counter() - t_start, "map": map_time, "nuts": nuts_time},
    }
    result["coverage"] = coverage(result["fits"], levels)
    result["failures"] = failures(result["fits"])
    return result


def coverage(fits, levels=LEVELS) -> dict:
    """Coverage fraction per parameter and level over the fits that were sampled (all of them
    unless a MAP could not be found at all, which :func:`failures` reports)."""
    done = [f for f in fits if "summary" in f]
    n = len(done)
    out = {}
    for name in REPORTED:
        out[name] = {}
        for lev in levels:
            k = sum(f["summary"][name]["covered"][str(lev)] for f in done)
            frac = k / n if n else float("nan")
            out[name][str(lev)] = {"covered": int(k), "n": n, "fraction": frac,
                                   "se_nominal": float(np.sqrt(lev * (1 - lev) / n)) if n else float("nan")}
    return out


def failures(fits) -> dict:
    """Counts of problems: MAP not converged / not found, large reduced chi2, MAP beaten by a draw,
    divergences, non-finite draws."""
    dof = SHAPE[0] * SHAPE[1] - 7
    chi2_limit = 1.0 + 5.0 * np.sqrt(2.0 / dof)
    out = {
        "map_not_found": [f["index"] for f in fits if f.get("map_start") is None],
        "map_not_converged": [f["index"] for f in fits if f.get("map_start") is not None and not f["map_success"]],
        "reduced_chi2_high": [f["index"] for f in fits if f.get("reduced_chi2", 0.0) > chi2_limit],
        "map_not_optimal": [f["index"] for f in fits if f.get("map_not_optimal")],
        "with_divergences": [f["index"] for f in fits if f.get("divergences", 0) > 0],
        "non_finite_draws": [f["index"] for f in fits if "finite" in f and not f["finite"]],
        "reduced_chi2_limit": chi2_limit,
    }
    return out


def pool(results) -> dict:
    """Several runs (different seeds) as one: fits concatenated, coverage and failures recounted."""
    results = list(results)
    fits = []
    for r in results:
        fits += [{**f, "index": f"{r['config']['seed']}:{f['index']}"} for f in r["fits"]]
    levels = tuple(results[0]["config"]["levels"])
    out = {"config": {**results[0]["config"], "seed": [r["config"]["seed"] for r in results], "n_fits": len(fits)},
           "fits": fits, "time_s": {k: sum(r["time_s"][k] for r in results) for k in ("total", "map", "nuts")}}
    out["coverage"] = coverage(fits, levels)
    out["failures"] = failures(fits)
    return out


def table(result) -> str:
    cov = result["coverage"]
    levels = result["config"]["levels"]
    n = next(iter(cov.values()))[str(levels[0])]["n"]
    head = f"{'parameter':<14}" + "".join(f"{f'{int(100 * lev)}% coverage':>22}" for lev in levels)
    lines = [f"Coverage of central posterior intervals, {n} datasets (truths drawn from the priors)", head]
    for name in REPORTED:
        cells = ""
        for lev in levels:
            c = cov[name][str(lev)]
            cells += f"{c['fraction']:>10.3f} ({c['covered']:>3}/{c['n']}) ±{c['se_nominal']:.3f}"
        mark = "" if name in CHECKED else "  (reported)"
        lines.append(f"{name:<14}{cells}{mark}")
    lines.append("± : binomial standard error sqrt(p(1-p)/N) at the nominal p")
    fl = result["failures"]
    lines.append(f"failures: MAP not found {len(fl['map_not_found'])}, MAP not converged "
                 f"{len(fl['map_not_converged'])}, reduced chi2 > {fl['reduced_chi2_limit']:.3f}: "
                 f"{len(fl['reduced_chi2_high'])}, a draw below the MAP potential - 1: {len(fl['map_not_optimal'])}, "
                 f"fits with divergences: {len(fl['with_divergences'])}, non-finite draws: "
                 f"{len(fl['non_finite_draws'])}")
    t = result["time_s"]
    lines.append(f"time: total {t['total']:.0f} s (MAP fits {t['map']:.0f} s, NUTS {t['nuts']:.0f} s)")
    return "\n".join(lines)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-fits", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1, help="datasets sampled at once (vmapped NUTS; a batch costs its slowest member, so 1 is usually fastest)")
    parser.add_argument("--out", type=pathlib.Path, default=CACHE / "calibration.json")
    parser.add_argument("--pool", type=pathlib.Path, nargs="+", metavar="JSON",
                        help="print the pooled table of earlier runs' JSON files instead of running")
    args = parser.parse_args(argv)
    if args.pool:
        result = pool(json.loads(p.read_text()) for p in args.pool)
        print(table(result))
        return result
    result = run_calibration(args.n_fits, args.seed, num_warmup=args.warmup, num_samples=args.samples,
                             batch=args.batch)
    result["machine"] = {"python": platform.python_version(), "jax": jax.__version__,
                         "processor": platform.processor() or platform.machine(), "command": " ".join(
                             ["benchmarks/calibration.py", *(argv if argv is not None else sys.argv[1:])])}
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=_json_default))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
