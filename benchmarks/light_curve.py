"""Supernova light curves: bias, pulls, interval coverage and forced-photometry cost.

Simulations (GalSim, :func:`bayesprof.simulate.simulate_transient`): a Sersic host and a point
source 1.1" from its centre whose flux changes from epoch to epoch; every epoch its own dither
(through the WCS), Moffat PSF (beta 3) and Gaussian noise.

``six``     the six r-band epochs of the issue (64 x 64 px, 0.262"/px; SN 0, 6, 25, 70, 40, 12 uJy)
``thirty``  30 epochs cycling g, r, i every 3 days (64 x 64 px, 0.262"/px): a rise and an
            exponential decline, zero before day 10 (the first four epochs)
``ztf``     300 epochs in g and r (31 x 31 px, 1.01"/px, FWHM 1.6-3.0"), one per day, the
            supernova from day 40 on; the host fitted once on 10 epochs before it

For ``six`` and ``thirty``: the noiseless fit (bias per epoch in sigma and mmag), then
``--realisations`` (``six``) or ``--thirty-realisations`` noise realisations each fitted as a user would (a new Scene, default priors,
``fit_map``; the compiled solver is reused): pulls (MAP - truth) / sigma of every SN flux.  For
``six`` also NUTS on ``--nuts-realisations`` of them (the first realisation's model with each
realisation's pixels, :meth:`SceneModel.with_data`; the sampler of ``benchmarks/calibration.py``,
compiled once; 1 chain of ``--warmup`` + ``--samples``): how often the central 68 % and 95 %
intervals contain the truth.  For ``ztf``: :func:`bayesprof.forced_photometry` of the 300
epochs (wall time of the first call, set-up and compilation included, and of a second call),
with the host fixed and with its uncertainty propagated (the default), and the pulls of its fluxes.

Usage::

    .venv/bin/python benchmarks/light_curve.py [--realisations 100] [--thirty-realisations 24]
        [--nuts-realisations 24] [--warmup 300] [--samples 500] [--epochs 300] [--only six,thirty,ztf]
    .venv/bin/python benchmarks/light_curve.py --forced-cost 300      # time and peak RSS of forced photometry

Prints a summary, writes ``benchmarks/.cache/light_curve_<parts>.json`` and the figures
``benchmarks/figures/light_curve_{thirty,ztf}.png`` and ``light_curve_pulls_<parts>.png``.
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
from astropy.coordinates import SkyCoord

import bayesprof as bp
from bayesprof.simulate import add_noise, simulate_transient

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from calibration import make_sampler, whitening  # noqa: E402

REFERENCE = SkyCoord(150.0, 2.0, unit="deg")
HOST = bp.Sersic(xi=0.0, eta=0.0, flux=300.0, re=1.2, n=1.5, q=0.6, pa=40.0)
SN = (0.8, -0.75)  # arcsec east, north of the host centre


def six_epochs():
    rng = np.random.default_rng(3)
    fwhm, flux = (1.0, 1.3, 0.9, 1.6, 1.2, 1.4), (0.0, 6.0, 25.0, 70.0, 40.0, 12.0)
    spec = [dict(band="r", fwhm=f, flux=s, dither=rng.uniform(-3, 3, 2), mjd=60000.0 + 3 * k)
            for k, (f, s) in enumerate(zip(fwhm, flux))]
    return simulate_transient(HOST, {"r": 300.0}, SN, spec, reference=REFERENCE), [e["flux"] for e in spec]


def sn_model(t, band):
    """A rise and an exponential decline (uJy), zero before day 10."""
    peak = {"g": 60.0, "r": 80.0, "i": 70.0}[band]
    t = np.asarray(t, dtype=float)
    shape = np.exp(-(t - 20.0) / 25.0) / (1.0 + np.exp(-(t - 20.0) / 3.0))
    return np.where(t < 10.0, 0.0, peak * shape / 0.88)


def thirty_epochs():
    rng = np.random.default_rng(30)
    spec = []
    for k in range(30):
        band, t = "gri"[k % 3], 3.0 * k
        spec.append(dict(band=band, fwhm=rng.uniform(0.9, 1.6), flux=float(sn_model(t, band)),
                         dither=rng.uniform(-3, 3, 2), mjd=60000.0 + t, name=f"{band}{k:02d}"))
    hosts = {"g": 150.0, "r": 300.0, "i": 420.0}
    return simulate_transient(HOST, hosts, SN, spec, reference=REFERENCE), [e["flux"] for e in spec]


def fit_joint(images):
    """The user's joint fit: host shared (flux per band), SN position shared, SN flux per epoch."""
    scene = bp.Scene(images)
    scene.add("host", bp.Sersic, init={"xi": 0.0, "eta": 0.0})
    scene.add("sn", bp.PointSource, vary={"flux": "image"}, init={"xi": SN[0], "eta": SN[1]})
    return bp.fit_map(scene)


def sn_values(fit, images):
    v = np.array([float(fit.values[f"sn.flux[{im.name}]"]) for im in images])
    s = np.array([float(fit.sigmas[f"sn.flux[{im.name}]"]) for im in images])
    return v, s


def bias_and_pulls(name, images, truth, n_real, seed):
    truth = np.asarray(truth)
    t0 = time.perf_counter()
    fit = fit_joint(images)
    v, s = sn_values(fit, images)
    snr = truth / s
    bright = snr >= 20
    out = {"noiseless": {"success": bool(fit.success), "steps": fit.iterations,
                         "bias_sigma": ((v - truth) / s).tolist(), "snr": snr.tolist(),
                         "max_abs_bias_sigma": float(np.max(np.abs(v - truth) / s)),
                         "max_abs_mmag_snr_ge_20": float(np.max(np.abs(2500 * np.log10(v[bright] / truth[bright]))))
                         if bright.any() else None,
                         "first_fit_s": time.perf_counter() - t0}}
    rng = np.random.default_rng(seed)
    pulls, fails, t1 = [], 0, time.perf_counter()
    for _ in range(n_real):
        f = fit_joint(add_noise(images, rng))
        fails += not f.success
        vv, ss = sn_values(f, images)
        pulls.append((vv - truth) / ss)
    pulls = np.array(pulls).reshape(n_real, len(truth))  # (realisation, epoch)
    zero = truth == 0
    if not n_real:
        print(f"[{name}] noiseless: max |bias| {out['noiseless']['max_abs_bias_sigma']:.4f} sigma", flush=True)
        return out, pulls, fit
    out["pulls"] = {"realisations": n_real, "failed_fits": fails, "mean": float(pulls.mean()),
                    "sd": float(pulls.std(ddof=1)), "n": int(pulls.size),
                    "mean_zero_flux_epochs": float(pulls[:, zero].mean()) if zero.any() else None,
                    "sd_zero_flux_epochs": float(pulls[:, zero].std(ddof=1)) if zero.any() else None,
                    "per_epoch_mean": pulls.mean(axis=0).tolist(), "per_epoch_sd": pulls.std(axis=0, ddof=1).tolist(),
                    "time_per_fit_s": (time.perf_counter() - t1) / max(n_real, 1)}
    print(f"[{name}] noiseless: max |bias| {out['noiseless']['max_abs_bias_sigma']:.4f} sigma, "
          f"max |bias| at S/N >= 20: {out['noiseless']['max_abs_mmag_snr_ge_20']} mmag; pulls over {n_real} "
          f"realisations x {len(truth)} epochs: mean {out['pulls']['mean']:+.3f} "
          f"(+- {1 / np.sqrt(pulls.size):.3f}), sd {out['pulls']['sd']:.3f}; zero-flux epochs: mean "
          f"{out['pulls']['mean_zero_flux_epochs']}, sd {out['pulls']['sd_zero_flux_epochs']}; {fails} failed fits; "
          f"{out['pulls']['time_per_fit_s']:.2f} s per fit", flush=True)
    return out, pulls, fit


def nuts_coverage(images, truth, n_real, seed, num_warmup, num_samples):
    """Central 68 / 95 % intervals of every SN flux over ``n_real`` realisations (one model,
    each realisation's pixels)."""
    truth = np.asarray(truth)
    base = fit_joint(images).model
    sampler = make_sampler(base, num_warmup, num_samples)
    constrain = jax.jit(jax.vmap(base.constrain))
    rng = np.random.default_rng(seed)
    keys = jax.random.split(jax.random.PRNGKey(seed), n_real)
    names = [f"sn.flux[{im.name}]" for im in images]
    covered = {0.68: [], 0.95: []}
    sd_ratio, mean_pull = [], []  # posterior sd / MAP sigma; (posterior mean - truth) / posterior sd
    div, t0 = 0, time.perf_counter()
    for i in range(n_real):
        noisy = add_noise(images, rng)
        m = base.with_data([im.data for im in noisy])
        f = bp.fit_map(m)
        u_map, L = jnp.asarray(f.u), jnp.asarray(whitening(f.cov_u))
        z, pe, d, steps, _ = jax.block_until_ready(sampler(keys[i:i + 1], u_map[None], L[None], tuple(d[None] for d in m.data)))
        u = np.asarray(u_map)[None] + np.asarray(z[0]) @ np.asarray(L).T
        draws = constrain(jnp.asarray(u))
        div += int(np.sum(d))
        flux = np.stack([np.asarray(draws[n]) for n in names], axis=1)  # (draw, epoch)
        map_sigma = np.array([float(f.sigmas[n]) for n in names])
        sd_ratio.append(flux.std(axis=0, ddof=1) / map_sigma)
        mean_pull.append((flux.mean(axis=0) - truth) / flux.std(axis=0, ddof=1))
        for lev in covered:
            lo, hi = np.quantile(flux, [0.5 - lev / 2, 0.5 + lev / 2], axis=0)
            covered[lev].append((lo <= truth) & (truth <= hi))
        print(f"  NUTS {i + 1}/{n_real}: {time.perf_counter() - t0:.0f} s, covered: 68 % "
              f"{int(np.sum(covered[0.68][-1]))}/{len(truth)}, 95 % {int(np.sum(covered[0.95][-1]))}/{len(truth)}; "
              f"{int(np.sum(d))} divergences; posterior sd / MAP sigma {np.round(sd_ratio[-1], 2).tolist()}", flush=True)
    out = {"realisations": n_real, "warmup": num_warmup, "samples": num_samples, "divergences": div,
           "time_s": time.perf_counter() - t0,
           "covered": {str(lev): np.array(c).astype(int).tolist() for lev, c in covered.items()},
           "sd_over_map_sigma": {"median": float(np.median(sd_ratio)), "min": float(np.min(sd_ratio)),
                                 "max": float(np.max(sd_ratio))},
           "posterior_mean_pulls": {"mean": float(np.mean(mean_pull)), "sd": float(np.std(mean_pull, ddof=1))}}
    for lev, c in covered.items():
        c = np.array(c)
        out[f"coverage_{lev}"] = float(c.mean())
        out[f"binomial_sd_{lev}"] = float(np.sqrt(lev * (1 - lev) / c.size))
        out[f"n_{lev}"] = int(c.size)
    print(f"[six] NUTS coverage over {n_real} realisations x {len(truth)} epochs: 68 %: {out['coverage_0.68']:.3f} "
          f"(+- {out['binomial_sd_0.68']:.3f}), 95 %: {out['coverage_0.95']:.3f} (+- {out['binomial_sd_0.95']:.3f}); "
          f"{div} divergences; {out['time_s']:.0f} s; posterior sd / MAP sigma: median "
          f"{out['sd_over_map_sigma']['median']:.3f}; posterior-mean pulls: mean {out['posterior_mean_pulls']['mean']:+.3f}, "
          f"sd {out['posterior_mean_pulls']['sd']:.3f}", flush=True)
    return out


def ztf_epochs(n=300, seed=300):
    rng = np.random.default_rng(seed)
    spec = []
    for k in range(n):
        band, t = "gr"[k % 2], float(k)
        flux = float(sn_model(t - 30.0, band))  # explosion at day 40
        spec.append(dict(band=band, fwhm=rng.uniform(1.6, 3.0), flux=flux, dither=rng.uniform(-2, 2, 2),
                         mjd=59000.0 + t, name=f"{band}{k:03d}"))
    host = bp.Sersic(xi=0.0, eta=0.0, flux=300.0, re=2.0, n=1.5, q=0.6, pa=40.0)
    images = simulate_transient(host, {"g": 200.0, "r": 300.0}, (1.2, -0.9), spec, reference=REFERENCE, size=31,
                                pixel_scale=1.01, sigma=0.05)
    return add_noise(images, rng), np.array([e["flux"] for e in spec])


def forced(n_epochs):
    t0 = time.perf_counter()
    images, truth = ztf_epochs(n_epochs)
    sim_s = time.perf_counter() - t0
    reference_epochs = bp.ImageList([im for im, f in zip(images, truth) if f == 0][:10], reference=REFERENCE)
    scene = bp.Scene(reference_epochs)
    scene.add("host", bp.Sersic, init={"xi": 0.0, "eta": 0.0})
    scene.add("sky", bp.FlatSky)
    t1 = time.perf_counter()
    host = bp.fit_map(scene)
    host_s = time.perf_counter() - t1
    position = bp.sky_from_offsets(1.2, -0.9, REFERENCE)
    out = {"epochs": n_epochs, "simulation_s": sim_s, "host_fit_s": host_s, "host_steps": host.iterations,
           "host_success": bool(host.success)}
    zero = truth == 0
    # the host fixed (errors conditional on it), then its covariance propagated (the default)
    for mode, hu in (("host_fixed", False), ("host_uncertainty", True)):
        t2 = time.perf_counter()
        lc = bp.forced_photometry(host, images, position=position, host_uncertainty=hu)
        first_s = time.perf_counter() - t2
        t3 = time.perf_counter()
        lc = bp.forced_photometry(host, images, position=position, host_uncertainty=hu)
        second_s = time.perf_counter() - t3
        pull = (np.asarray(lc["flux"]) - truth) / np.asarray(lc["flux_err"])
        out[mode] = {"first_call_s": first_s, "second_call_s": second_s,
                     "pull_mean": float(pull.mean()), "pull_sd": float(pull.std(ddof=1)),
                     "pull_mean_zero": float(pull[zero].mean()), "pull_sd_zero": float(pull[zero].std(ddof=1)),
                     "n_zero": int(zero.sum()), "median_flux_err_host": float(np.median(lc["flux_err_host"])),
                     "median_flux_err_stat": float(np.median(lc["flux_err_stat"])),
                     "chi2_per_pixel": float(np.sum(lc["chi2"]) / np.sum(lc["n_pix"]))}
        o = out[mode]
        print(f"[ztf] {n_epochs} epochs, {mode}: host fit on {len(reference_epochs)} epochs {host_s:.1f} s "
              f"({host.iterations} steps); forced photometry {first_s:.1f} s (first call: set-up + compile + "
              f"solve), {second_s:.1f} s (second); pulls mean {o['pull_mean']:+.3f} sd {o['pull_sd']:.3f} "
              f"(zero-flux epochs {o['pull_mean_zero']:+.3f} / {o['pull_sd_zero']:.3f}, n={o['n_zero']}); median "
              f"errors: epoch {o['median_flux_err_stat']:.3g}, host {o['median_flux_err_host']:.3g} uJy; "
              f"chi2/pixel {o['chi2_per_pixel']:.3f}", flush=True)
    return out, lc, truth


def forced_cost(n_epochs):
    """Cost of forced photometry alone: the host fitted on 2 reference epochs, then
    ``forced_photometry`` of ``n_epochs`` ZTF-like epochs twice with the host fixed
    (``host_uncertainty=False``); wall times and peak RSS."""
    import resource

    images, truth = ztf_epochs(n_epochs)
    scene = bp.Scene(bp.ImageList([im for im, f in zip(images, truth) if f == 0][:2], reference=REFERENCE))
    scene.add("host", bp.Sersic, init={"xi": 0.0, "eta": 0.0})
    scene.add("sky", bp.FlatSky)
    host = bp.fit_map(scene)
    position = bp.sky_from_offsets(1.2, -0.9, REFERENCE)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    t0 = time.perf_counter()
    bp.forced_photometry(host, images, position=position, host_uncertainty=False)
    t1 = time.perf_counter()
    bp.forced_photometry(host, images, position=position, host_uncertainty=False)
    t2 = time.perf_counter()
    out = {"epochs": n_epochs, "first_s": t1 - t0, "second_s": t2 - t1, "rss_before_gb": rss0,
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}
    print(json.dumps(out), flush=True)
    return out


def figures(parts, thirty, ztf, pulls):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = HERE / "figures"
    fig_dir.mkdir(exist_ok=True)
    if thirty is not None:
        fit, images, truth = thirty
        lc = bp.light_curve(fit, "sn")
        fig = bp.plot.light_curve(lc, title="30 epochs g/r/i (one noise realisation): joint MAP +- 1 sigma; "
                                             "lines: truth")
        ax = fig.axes[0]
        t = np.linspace(0, 87, 300)
        for band, c in (("g", "tab:green"), ("r", "tab:red"), ("i", "tab:orange")):
            ax.plot(60000.0 + t, sn_model(t, band), color=c, lw=0.8)
        fig.savefig(fig_dir / "light_curve_thirty.png", dpi=80, bbox_inches="tight")
        plt.close(fig)
    if ztf is not None:
        lc, truth = ztf
        fig = bp.plot.light_curve(lc, title=f"{len(truth)} epochs g/r, forced photometry on a host fitted to 10 "
                                            "pre-explosion epochs; lines: truth")
        ax = fig.axes[0]
        t = np.arange(float(len(truth)))
        ax.plot(59000.0 + t[::2], truth[::2], color="tab:green", lw=0.8)
        ax.plot(59000.0 + t[1::2], truth[1::2], color="tab:red", lw=0.8)
        fig.savefig(fig_dir / "light_curve_ztf.png", dpi=80, bbox_inches="tight")
        plt.close(fig)
    pulls = {k: v for k, v in pulls.items() if np.size(v)}
    if pulls:
        fig, axes = plt.subplots(1, len(pulls), figsize=(4 * len(pulls), 3), squeeze=False)
        x = np.linspace(-4, 4, 200)
        for ax, (name, p) in zip(axes[0], pulls.items()):
            ax.hist(np.ravel(p), bins=np.linspace(-4, 4, 33), density=True, color="0.7")
            ax.plot(x, np.exp(-x**2 / 2) / np.sqrt(2 * np.pi), "k-", lw=1)
            ax.set_title(f"{name}: pulls of the SN fluxes (N={np.size(p)})", fontsize=9)
            ax.set_xlabel("(MAP - truth) / sigma")
        fig.savefig(fig_dir / f"light_curve_pulls_{parts}.png", dpi=80, bbox_inches="tight")
        plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realisations", type=int, default=100)
    ap.add_argument("--thirty-realisations", type=int, default=24)
    ap.add_argument("--nuts-realisations", type=int, default=24)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--only", default="six,thirty,ztf")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--forced-cost", type=int, default=0, metavar="N",
                    help="only: the cost of forced photometry of N epochs (one line of JSON)")
    args = ap.parse_args(argv)
    if args.forced_cost:
        forced_cost(args.forced_cost)
        return
    only = set(args.only.split(","))
    results = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                           "jax": jax.__version__, "cpus": jax.local_device_count(),
                           "device": str(jax.devices()[0])}, "args": vars(args)}
    thirty = ztf = None
    pulls = {}
    if "six" in only:
        images, truth = six_epochs()
        results["six"], pulls["six epochs"], _ = bias_and_pulls("six", images, truth, args.realisations, args.seed)
        if args.nuts_realisations:
            results["six"]["nuts"] = nuts_coverage(images, truth, args.nuts_realisations, args.seed + 1, args.warmup,
                                                   args.samples)
    if "thirty" in only:
        images, truth = thirty_epochs()
        results["thirty"], pulls["thirty epochs"], _ = bias_and_pulls("thirty", images, truth,
                                                                      args.thirty_realisations, args.seed + 2)
        thirty = (fit_joint(add_noise(images, np.random.default_rng(7))), images, truth)
    if "ztf" in only:
        results["ztf"], lc, truth = forced(args.epochs)
        ztf = (lc, truth)
        pulls[f"forced photometry ({args.epochs} epochs)"] = (np.asarray(lc["flux"]) - truth) / np.asarray(lc["flux_err"])
    cache = HERE / ".cache"
    cache.mkdir(exist_ok=True)
    (cache / f"light_curve_{'_'.join(sorted(only))}.json").write_text(json.dumps(results, indent=1))
    figures("_".join(sorted(only)), thirty, ztf, pulls)


if __name__ == "__main__":
    main()
