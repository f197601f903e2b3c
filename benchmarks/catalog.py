"""Catalog benchmark: batch MAP fits per second, their growth with the number of objects, Dask's
gain with 2 workers, a GalSim field with known truth, and the ten GAMA galaxies (real data).

Parts (``--parts``, default all):

``cutouts``   single-band 64 x 64 GalSim Sersic cut-outs (0.2"/px, Moffat PSF FWHM 0.8" beta 3,
              r = 19-21 mag, re 0.4-1.2", n 0.8-3, q 0.4-0.9) through ``fit_cutouts``: a first set
              of ``--n`` (compile + fits), then other sets of ``--n`` and ``4 x --n`` objects of the
              same structure (warm): fits/s and the time per object at both sizes; the same
              for 3-band joint fits (g, r, i at 0.2"/px, Moffat PSFs of FWHM 0.9", 0.8", 0.75").
              With ``--astrophot`` / ``--pysersic`` (the pythons of their venvs), the peers fit the
              second single-band set in the same run (AstroPhot: its initialisation + LM;
              pysersic: ``find_MAP``): time per object and RMS errors against the truth.
``growth``    the single-band cut-outs at ``--growth-sizes`` objects (default 100, 1,000 and
              10,000; fresh objects for each, after one compile): time per object and the
              process's resident memory before and at its peak during each run, to show that
              both stay flat as the list grows.
``nuts``      NUTS per object (``fit_cutouts(nuts=True)``: 2 chains x (300 warm-up + 500 draws)
              from each MAP) on ``--nuts-n`` of the single-band cut-outs, a first set (compile +
              fits) and a second set (warm): galaxies/s, the time per object, min bulk ESS and
              max R-hat per object, and the pulls (posterior mean - truth) / posterior sd of re, n
              and q over the objects.
``dask``      ``run_catalog`` on a field of isolated galaxies (one structure) with a LocalCluster
              of 1 and of 2 single-threaded workers, each run from scratch on the same objects
              after a warm-up run that fills the persistent compilation cache.
``kill``      the same field run three times with 2 workers: uninterrupted; with one worker
              process killed (SIGKILL) once the first partition is written; and killed as a
              whole (driver and cluster) after two partitions, then rerun.  The final tables
              must equal the uninterrupted one.
``field``     a GalSim field (``--field-px`` square in r at 0.2"/px, plus i at 0.3"/px with
              another PSF) of galaxies at a density of 1,000 per 2,000 x 2,000 r-pixels, blends
              included: converged fraction, and the pulls (fit - truth) / sigma of the isolated
              galaxies (re, n, q, r and i fluxes; q also for true q below and above 0.6, since a round
              galaxy's axis ratio is measured low at low S/N).
``noiseless`` ``--noiseless-n`` galaxies on a 12" grid drawn without noise and fitted with the
              realistic noise declared: the bias of the method itself, with neighbours masked and
              with their first-pass light subtracted (``neighbours="model"``).
``gama``      the ten GAMA galaxies (KiDS r + SDSS r cut-outs, ProFit's example data) through
              ``fit_cutouts`` when ``--gama`` names their folder (``../shared/data/gama-kids-sdss``).
``cosmos``    the bundled COSMOS HSC field (seven blended sources in g, r, i, z, y) through
              ``fit_catalog`` with ``point_sources="auto"`` (the size test picks the stars): the
              table, and residual thumbnails per band in ``figures/``.

Prints a Markdown table per part and writes every figure to ``benchmarks/.cache/catalog.json``.

Usage:  .venv/bin/python benchmarks/catalog.py [--n 32] [--dask-n 64] [--field-px 1000]
        [--pysersic benchmarks/.venv-pysersic/bin/python] [--astrophot benchmarks/.venv-astrophot/bin/python]
        [--noiseless-n 49] [--nuts-n 8]
        [--growth-sizes 100 1000 10000] [--parts cutouts,growth,nuts,dask,kill,field,noiseless,gama,cosmos]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import bayesprof as bp  # noqa: E402
from bayesprof.simulate import FIELD_BANDS, draw_galaxies, simulate_field  # noqa: E402
from bayesprof.survey import fit_cutouts, run_catalog  # noqa: E402

R_BAND = ("r", 0.2, bp.MoffatPSF(fwhm=0.8, beta=3.0), 0.0)
THREE_BANDS = (("g", 0.2, bp.MoffatPSF(fwhm=0.9, beta=3.0), 0.6), R_BAND, ("i", 0.2, bp.MoffatPSF(fwhm=0.75, beta=3.0),
                                                                          -0.4))


def cutout_sets(seed, n, bands, size=64, sigma=0.05):
    """``n`` objects, each an ImageList of GalSim cut-outs (one per band), and their truths."""
    rng = np.random.default_rng(seed)
    sets, truths = [], []
    for _ in range(n):
        mag = rng.uniform(19.0, 21.0)
        gal = bp.Sersic(xi=rng.uniform(-0.4, 0.4), eta=rng.uniform(-0.4, 0.4), flux=1.0, re=rng.uniform(0.4, 1.2),
                        n=rng.uniform(0.8, 3.0), q=rng.uniform(0.4, 0.9), pa=rng.uniform(0.0, 180.0))
        ims = []
        for name, scale, psf, colour in bands:
            flux = float(bp.mag_to_flux(mag + colour))
            blank = bp.Image(np.zeros((size, size)), sigma=sigma, pixel_scale=scale, psf=psf, zeropoint=23.9,
                             band=name, name=name)
            data = draw_galaxies(gal.replace(flux=flux), blank) + rng.normal(0.0, sigma, (size, size))
            ims.append(bp.Image(data, sigma=sigma, pixel_scale=scale, psf=psf, zeropoint=23.9, band=name, name=name))
        sets.append(bp.ImageList(ims))
        truths.append(gal)
    return sets, truths


def _psf_stamp():
    """The r band's PSF as GalSim draws it (pixel-integrated) on a 41 x 41 stamp, normalised."""
    from bayesprof.simulate import _galsim_psf

    psf = _galsim_psf(R_BAND[2]).drawImage(nx=41, ny=41, scale=R_BAND[1]).array
    return psf / psf.sum()


def _peer(python, script, sets, **extra):
    """Run a peer's script (``script`` in the venv of ``python``) on single-band cut-outs; its
    output arrays."""
    import subprocess

    folder = Path(tempfile.mkdtemp(prefix="bp-peer-"))
    try:
        np.savez(folder / "in.npz", data=np.stack([ims[0].data for ims in sets]), sigma=0.05, psf=_psf_stamp(),
                 scale=R_BAND[1], zeropoint=23.9, **extra)
        done = subprocess.run([python, str(HERE / script), str(folder / "in.npz"), str(folder / "out.npz")],
                              capture_output=True, text=True)  # progress bars and warnings: stderr
        if done.returncode:
            raise RuntimeError(f"{script} failed:\n{done.stderr[-3000:]}")
        with np.load(folder / "out.npz") as f:
            return {k: f[k] for k in f.files}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _errors(values, truths):
    """RMS of re / re_true - 1, and of n - n_true and q - q_true, over the objects."""
    return {p: float(np.sqrt(np.mean([(v / getattr(g, p) - 1.0 if p == "re" else v - getattr(g, p)) ** 2
                                      for v, g in zip(values[p], truths)]))) for p in ("re", "n", "q")}


def _map_peers(sets, truths, tab, dt, pysersic, astrophot):
    """bayesprof's warm single-band fits (``tab``, ``dt`` s) against pysersic's ``find_MAP`` and
    AstroPhot's LM on the same cut-outs, in this run: time per object and the RMS errors
    against the truth."""
    rows = {"bayesprof": {"time_s": dt, "errors": _errors({p: np.asarray(tab[p]) for p in ("re", "n", "q")}, truths),
                          "converged": int(np.sum(tab["converged"]))}}
    if astrophot:
        r = _peer(astrophot, "astrophot_cutouts.py", sets)
        rows["AstroPhot"] = {"time_s": float(r["time_s"].sum()), "errors": _errors(r, truths),
                             "converged": int(r["success"].sum()), "first_s": float(r["time_s"][0])}
    if pysersic:
        r = _peer(pysersic, "pysersic_cutouts.py", sets, num_warmup=0, num_samples=0, num_chains=0, nuts=False)
        rows["pysersic"] = {"time_s": float(r["map_s"].sum()), "errors": _errors(r, truths),
                            "converged": -1, "first_s": float(r["map_s"][0])}
    m = len(sets)
    for name, r in rows.items():
        e = r["errors"]
        print(f"| MAP, {name}, {m} objects | {r['time_s']:.1f} s: {m / r['time_s']:.2f} fits/s, "
              f"{1e3 * r['time_s'] / m:.0f} ms/object | RMS re/re_true - 1 {e['re']:.3f}, n {e['n']:.3f}, "
              f"q {e['q']:.3f} | converged {r['converged'] if r['converged'] >= 0 else 'not reported'} |", flush=True)
    return rows


def part_cutouts(n, pysersic=None, astrophot=None):
    out = {}
    for label, bands in (("1 band", (R_BAND,)), ("3 bands", THREE_BANDS)):
        first, _ = cutout_sets(1, n, bands)
        t = time.perf_counter()
        tab = fit_cutouts(first)
        cold = time.perf_counter() - t
        runs = {}
        for k, m in ((2, n), (3, 4 * n)):
            sets, truths = cutout_sets(k, m, bands)
            t = time.perf_counter()
            tab = fit_cutouts(sets)
            dt = time.perf_counter() - t
            runs[m] = {"time_s": dt, "fits_per_s": m / dt, "converged": int(np.sum(tab["converged"])),
                       "mean_steps": float(np.mean(tab["lm_steps"]))}
            if m == n and len(bands) == 1 and (pysersic or astrophot):  # the peers on the same objects
                out["peers"] = _map_peers(sets, truths, tab, dt, pysersic, astrophot)
        out[label] = {"cold_s": cold, "cold_n": n, "warm": runs}
        print(f"| {label} | first {n}: {cold:.1f} s | " + " | ".join(
            f"{m}: {r['time_s']:.1f} s, {r['fits_per_s']:.2f} fits/s, {1e3 * r['time_s'] / m:.0f} ms/object, "
            f"{r['converged']}/{m} converged, {r['mean_steps']:.1f} steps" for m, r in runs.items()) + " |", flush=True)
    return out


def _rss_mb():
    """The process's resident memory (MB)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_rss_while(f):
    """``(f(), peak resident MB while it ran)``, sampled every 0.1 s by a thread."""
    import threading

    peak, stop = [_rss_mb()], threading.Event()

    def watch():
        while not stop.wait(0.1):
            peak[0] = max(peak[0], _rss_mb())

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        out = f()
    finally:
        stop.set()
        thread.join()
    return out, max(peak[0], _rss_mb())


def part_growth(sizes):
    """Single-band cut-out fits at each of ``sizes`` objects, warm: the time per object and the
    memory must not grow with the list (``fit_cutouts`` works a chunk of objects at a time)."""
    import gc
    from functools import partial

    first, _ = cutout_sets(1, 32, (R_BAND,))
    t = time.perf_counter()
    fit_cutouts(first)
    cold = time.perf_counter() - t
    print(f"| first 32 objects (compilation + fits) | {cold:.1f} s |", flush=True)
    del first
    runs = {}
    for k, m in enumerate(sizes):
        sets, _ = cutout_sets(100 + k, m, (R_BAND,))
        gc.collect()
        before = _rss_mb()
        t = time.perf_counter()
        tab, peak = _peak_rss_while(partial(fit_cutouts, sets))
        dt = time.perf_counter() - t
        runs[m] = {"time_s": dt, "fits_per_s": m / dt, "ms_per_object": 1e3 * dt / m,
                   "converged": int(np.sum(tab["converged"])), "mean_steps": float(np.mean(tab["lm_steps"])),
                   "rss_before_mb": before, "rss_peak_mb": peak}
        print(f"| {m} objects | {dt:.1f} s | {m / dt:.2f} fits/s | {1e3 * dt / m:.1f} ms/object | "
              f"{runs[m]['converged']}/{m} converged, {runs[m]['mean_steps']:.1f} steps | RSS {before:.0f} MB before, "
              f"peak {peak:.0f} MB (+{peak - before:.0f}) |", flush=True)
        del sets, tab
    return {"cold_s": cold, "runs": runs}


def _pysersic(python, sets, nuts):
    """pysersic (``benchmarks/pysersic_cutouts.py``) MAP and NUTS on the same single-band
    cut-outs: per object the MAP and NUTS times (s), MAP values and draws."""
    return _peer(python, "pysersic_cutouts.py", sets, num_warmup=nuts["num_warmup"], num_samples=nuts["num_samples"],
                 num_chains=nuts["num_chains"], nuts=True)


def _ess_bulk_min(draws):
    """The smallest arviz bulk ESS over a dict of (chains, draws) arrays."""
    import arviz as az

    return min(float(az.ess(np.asarray(d), method="bulk")) for d in draws.values())


def part_nuts(n, pysersic=None):
    from bayesprof.survey import NUTS_DEFAULTS

    out = {}
    for label, seed in (("first", 11), ("warm", 12)):
        sets, truths = cutout_sets(seed, n, (R_BAND,))
        folder = Path(tempfile.mkdtemp(prefix="bp-posteriors-"))
        t = time.perf_counter()
        tab = fit_cutouts(sets, nuts=True, posterior_dir=folder)
        dt = time.perf_counter() - t
        pulls = {p: np.asarray([(r[f"{p}_mean"] - getattr(g, p)) / r[f"{p}_sd"] for r, g in zip(tab, truths)])
                 for p in ("re", "n", "q")}
        out[label] = {"n": n, "time_s": dt, "galaxies_per_s": n / dt,
                      "nuts_time_s": [float(x) for x in tab["nuts_time_s"]],
                      "map_time_s": [float(x) for x in tab["time_s"]],
                      "ess_bulk_min": [float(x) for x in tab["ess_bulk_min"]],
                      "rhat_max": [float(x) for x in tab["rhat_max"]],
                      "divergences": [int(x) for x in tab["divergences"]],
                      "nuts_steps": [float(x) for x in tab["nuts_steps"]],
                      "flags": [str(x) for x in tab["flags"]],
                      "pulls": {p: v.tolist() for p, v in pulls.items()}}
        ess = np.asarray(tab["ess_bulk_min"])
        print(f"| bayesprof NUTS, {label} {n} | {dt:.1f} s: {n / dt:.3f} galaxies/s, NUTS "
              f"{np.median(tab['nuts_time_s']):.1f} s per object (median) | min bulk ESS median {np.median(ess):.0f}, "
              f"lowest {ess.min():.0f} | leapfrog steps per draw {', '.join(f'{x:.1f}' for x in tab['nuts_steps'])} "
              f"| max R-hat {np.max(tab['rhat_max']):.3f} | divergences "
              f"{int(np.sum(tab['divergences']))} | pulls " + ", ".join(
                  f"{p} {v.mean():+.2f} ± {v.std(ddof=1):.2f}" for p, v in pulls.items()) + " |", flush=True)
        if pysersic and label == "warm":  # the peer on the same objects, same NUTS settings, same run
            peer = _pysersic(pysersic, sets, NUTS_DEFAULTS)
            ess_p = np.asarray([_ess_bulk_min({p: peer[f"{p}_draws"][k] for p in ("re", "n", "q")}) for k in range(n)])
            ess_b = np.asarray([_ess_bulk_min({p: bp.load_posterior(folder / f).draws("s0." + p)
                                               for p in ("re", "n", "q")}) for f in tab["posterior"]])
            print(f"| bayesprof, {label}: min bulk ESS (re, n, q) median {np.median(ess_b):.0f}, lowest "
                  f"{ess_b.min():.0f} |", flush=True)
            out[label]["ess_bulk_min_re_n_q"] = ess_b.tolist()
            pulls_p = {p: np.asarray([(peer[f"{p}_draws"][k].mean() - getattr(g, p)) / peer[f"{p}_draws"][k].std(ddof=1)
                                      for k, g in enumerate(truths)]) for p in ("re", "n", "q")}
            out["pysersic"] = {"map_s": peer["map_s"].tolist(), "nuts_s": peer["nuts_s"].tolist(),
                               "ess_bulk_min_re_n_q": ess_p.tolist(),
                               "pulls": {p: v.tolist() for p, v in pulls_p.items()},
                               "map": {p: peer[p].tolist() for p in ("re", "n", "q")}}
            total = float(peer["map_s"].sum() + peer["nuts_s"].sum())
            print(f"| pysersic MAP + NUTS, {label} {n} | {total:.1f} s: {n / total:.3f} galaxies/s, NUTS "
                  f"{np.median(peer['nuts_s']):.1f} s, MAP {np.median(peer['map_s']):.1f} s per object (median) | min "
                  f"bulk ESS (re, n, q) median {np.median(ess_p):.0f}, lowest {ess_p.min():.0f} | pulls " + ", ".join(
                      f"{p} {v.mean():+.2f} ± {v.std(ddof=1):.2f}" for p, v in pulls_p.items()) + " |", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    return out


def grid_field(seed, n, spacing=10.0, bands=None):
    side = int(np.ceil(np.sqrt(n)))
    g = (np.arange(side) - (side - 1) / 2) * spacing
    rng = np.random.default_rng(seed)
    pos = np.array([(x, y) for x in g for y in g])[:n] + rng.uniform(-1.0, 1.0, (n, 2))
    kw = {} if bands is None else {"bands": bands}
    return simulate_field(seed, size_arcsec=side * spacing + 10.0, positions=pos, mag_range=(18.5, 20.0),
                          re_range=(0.5, 0.7), **kw)


def part_dask(n):
    images, truth = grid_field(5, n)
    cat = truth[["id", "ra", "dec"]]
    out = {}
    cache = Path(tempfile.mkdtemp(prefix="bp-dask-cache-"))
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache))
    try:
        for workers in (1, 2, 1, 2):  # the first two fill the compilation cache
            folder = Path(tempfile.mkdtemp(prefix="bp-catalog-"))
            t = time.perf_counter()
            tab = run_catalog(images, cat, folder, n_workers=workers, partition_size=max(1, n // 8), progress=False)
            dt = time.perf_counter() - t
            shutil.rmtree(folder, ignore_errors=True)
            out.setdefault(workers, []).append({"time_s": dt, "converged": int(np.sum(tab["converged"]))})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    one, two = out[1][-1]["time_s"], out[2][-1]["time_s"]
    print(f"| Dask, {n} objects | 1 worker {one:.1f} s | 2 workers {two:.1f} s | speed-up {one / two:.2f}x |",
          flush=True)
    return {"n": n, "runs": out, "speedup": one / two}


def _same(a, b):
    """Whether two catalog tables agree (every column but the timings; floats to 1e-9)."""
    if list(a["id"]) != list(b["id"]):
        return False
    for col in a.colnames:
        if col == "time_s":
            continue
        if a[col].dtype.kind == "f":
            if not np.allclose(a[col], b[col], rtol=1e-9, atol=1e-12, equal_nan=True):
                return False
        elif list(a[col]) != list(b[col]):
            return False
    return True


def _kill_run(n, out):
    """Child process: the run that the parent kills as a whole."""
    images, truth = grid_field(6, n)
    run_catalog(images, truth[["id", "ra", "dec"]], out, n_workers=2, partition_size=max(1, n // 8), progress=False)


def part_kill(n):
    """An uninterrupted run; a run in which one worker process is killed once the first
    partition is written; and a run killed as a whole (its driver and cluster) after two
    partitions, then rerun: the three final tables must agree."""
    import signal
    import subprocess
    import threading

    from distributed import Client

    images, truth = grid_field(6, n)
    cat = truth[["id", "ra", "dec"]]
    root = Path(tempfile.mkdtemp(prefix="bp-kill-"))
    part = max(1, n // 8)
    ref = run_catalog(images, cat, root / "ref", n_workers=2, partition_size=part, progress=False)
    # one worker killed (SIGKILL) as soon as the first partition is on disk: its nanny restarts it,
    # the scheduler reassigns the partitions it held
    from bayesprof.survey import _local_cluster

    cluster = _local_cluster(2, root / ".jax_cache")
    client = Client(cluster)
    killed = {}

    def killer():
        while not list((root / "worker").glob("parts/part-*.parquet")):
            time.sleep(0.2)
        pids = client.run(os.getpid)
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        killed["pid"] = victim

    (root / "worker").mkdir()
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        worker_run = run_catalog(images, cat, root / "worker", client=client, partition_size=part, progress=False)
    finally:
        client.close()
        cluster.close()
    # the whole run killed (SIGKILL to its process group) after two partitions, then rerun
    child = subprocess.Popen([sys.executable, __file__, "--kill-child", str(root / "whole"), "--dask-n", str(n)],
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while len(list((root / "whole").glob("parts/part-*.parquet"))) < 2 and child.poll() is None:
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    done = len(list((root / "whole").glob("parts/part-*.parquet")))
    rerun = run_catalog(images, cat, root / "whole", n_workers=2, partition_size=part, progress=False)
    result = {"n": n, "worker_killed": bool(killed), "worker_run_equal": _same(worker_run, ref),
              "partitions_before_kill": done, "rerun_equal": _same(rerun, ref)}
    shutil.rmtree(root, ignore_errors=True)
    print(f"| kill, {n} objects | a worker killed mid-run: final table equal {result['worker_run_equal']} | whole run "
          f"killed after {done} partitions, rerun: equal {result['rerun_equal']} |", flush=True)
    return result


def part_field(px):
    n = int(round(1000 * (px / 2000.0) ** 2))
    t = time.perf_counter()
    images, truth = simulate_field(11, n_galaxies=n, size_arcsec=px * 0.2, mag_range=(19.0, 22.0),
                                   re_range=(0.3, 1.2))
    t_sim = time.perf_counter() - t
    t = time.perf_counter()
    tab = bp.survey.fit_catalog(images, truth[["id", "ra", "dec"]])
    dt = time.perf_counter() - t
    iso = np.asarray(tab["n_group"] == 1) & np.asarray(tab["converged"])
    pulls = {}
    q_true = np.asarray(truth["q"])
    for label, col, sel in (("re", "re", iso), ("n", "n", iso), ("q", "q", iso),
                            ("q, true q < 0.6", "q", iso & (q_true < 0.6)), ("q, true q >= 0.6", "q", iso & (q_true >= 0.6)),
                            ("flux_r", "flux_r", iso), ("flux_i", "flux_i", iso)):
        p = np.asarray((tab[col] - truth[col]) / tab[col + "_err"])[sel]
        p = p[np.isfinite(p)]
        pulls[label] = {"mean": float(np.mean(p)), "sd": float(np.std(p)), "n": int(p.size)}
    conv = float(np.mean(tab["converged"]))
    flags = {}
    for f in tab["flags"]:
        for k in str(f).split(","):
            if k:
                flags[k] = flags.get(k, 0) + 1
    print(f"| field {px}x{px} r px, {n} galaxies | simulate {t_sim:.0f} s | fit {dt:.0f} s ({n / dt:.2f} /s) | "
          f"converged {100 * conv:.1f} % | isolated {int(iso.sum())} | flags {flags} |", flush=True)
    for col, p in pulls.items():
        print(f"|   pull {col} | mean {p['mean']:+.3f} | sd {p['sd']:.3f} | n {p['n']} |")
    return {"px": px, "n": n, "fit_s": dt, "converged": conv, "isolated": int(iso.sum()), "pulls": pulls,
            "flags": flags, "groups": int(len(set(tab["group"])))}


def part_noiseless(n):
    """The method's own bias: ``n`` galaxies (r 18-19.5 mag, re 0.3-1.2", n 0.8-3) on a 12" grid,
    drawn by GalSim without noise and fitted with the realistic noise declared, neighbours
    masked and neighbours modelled (the second pass on the masked table)."""
    side = int(np.ceil(np.sqrt(n)))
    g = (np.arange(side) - (side - 1) / 2) * 12.0
    rng = np.random.default_rng(4)
    pos = np.array([(x, y) for x in g for y in g])[:n] + rng.uniform(-1.0, 1.0, (n, 2))
    quiet = tuple(b[:4] + (1e-9,) + b[5:] for b in FIELD_BANDS)
    images, truth = simulate_field(11, size_arcsec=side * 12.0 + 10.0, positions=pos, bands=quiet,
                                   mag_range=(18.0, 19.5), re_range=(0.3, 1.2))
    for im, b in zip(images, FIELD_BANDS):
        im.variance = np.full(im.shape, b[4] ** 2)
    masked = bp.survey.fit_catalog(images, truth[["id", "ra", "dec"]], neighbours="mask")
    subtracted = bp.survey.fit_catalog(images, truth[["id", "ra", "dec"]], neighbour_table=masked)
    out = {}
    for mode, tab in (("mask", masked), ("model", subtracted)):
        out[mode] = {}
        for col in ("re", "n", "q", "flux_r", "flux_i"):
            b = np.asarray((tab[col] - truth[col]) / tab[col + "_err"])
            out[mode][col] = {"mean": float(b.mean()), "min": float(b.min()), "max": float(b.max())}
            print(f"| noiseless grid of {n}, neighbours {mode} | bias {col} | mean {b.mean():+.3f} sigma | "
                  f"range {b.min():+.3f} .. {b.max():+.3f} |", flush=True)
    return out


def part_gama(folder):
    from bayesprof.datasets import gama_kids_sdss

    gals = sorted(p.name[:-len("fitim.fits")] for p in (Path(folder) / "KiDS").glob("*fitim.fits"))
    sets = [gama_kids_sdss(g, folder=folder) for g in gals]
    t = time.perf_counter()
    tab = fit_cutouts(sets)
    dt = time.perf_counter() - t
    tab["galaxy"] = gals
    print(f"| GAMA, {len(gals)} galaxies (KiDS r + SDSS r) | {dt:.0f} s | {int(np.sum(tab['converged']))} converged |")
    print("| galaxy | re (\") | n | q | PA | KiDS r mag | SDSS r mag | chi2/N KiDS | chi2/N SDSS | steps | flags |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in tab:
        print(f"| {r['galaxy']} | {r['re']:.3f} ± {r['re_err']:.3f} | {r['n']:.2f} ± {r['n_err']:.2f} | {r['q']:.3f} | "
              f"{r['pa']:.1f} | {r['mag_KiDS-r']:.3f} | {r['mag_SDSS-r']:.3f} | {r['chi2nu_KiDS']:.2f} | "
              f"{r['chi2nu_SDSS']:.2f} | {r['lm_steps']} | {r['flags']} |")
    return {"time_s": dt, "rows": [{k: (float(r[k]) if np.ndim(r[k]) == 0 and k not in ("galaxy", "flags", "status")
                                       else str(r[k])) for k in tab.colnames} for r in tab]}


def part_cosmos(max_steps=200):
    """The COSMOS HSC field (``datasets.cosmos_hsc_field``: seven blended sources in HSC grizy
    with the survey's variance, masks and PSF stamps) through ``fit_catalog``, unresolved sources
    as point sources by the size test (``point_sources="auto"``): the table, and a page of
    residual thumbnails per band in ``benchmarks/figures/cosmos_hsc_<band>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    from bayesprof import datasets

    images, sources = datasets.cosmos_hsc_field()
    t = time.perf_counter()
    tab, fits = bp.fit_catalog(images, sources, max_steps=max_steps, point_sources="auto", return_fits=True)
    dt = time.perf_counter() - t
    print(f"| COSMOS HSC field, {len(sources)} sources in grizy | {dt:.0f} s | {int(np.sum(tab['converged']))} converged, "
          f"{len(set(tab['group']))} group(s) |")
    print("| id | re (\") | n | q | g | r | i | z | y | chi2/N g r i z y | steps | flags |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in tab:
        mags = " | ".join(f"{r[f'mag_{b}']:.2f}" for b in "grizy")
        chi = " ".join(f"{r[f'chi2nu_{b}']:.2f}" for b in "grizy")
        shape = ("point source | | " if r["point"] else
                 f"{r['re']:.3f} ± {r['re_err']:.3f} | {r['n']:.2f} ± {r['n_err']:.2f} | {r['q']:.2f} | ")
        print(f"| {r['id']} | {shape}{mags} | {chi} | {r['lm_steps']} | {r['flags']} |")
    unique = list({id(f): f for f in fits if f is not None}.values())
    for band in "grizy":
        fig = bp.plot.thumbnails(unique, image=band, ncols=1, size=2.4)
        fig.savefig(HERE / "figures" / f"cosmos_hsc_{band}.png", dpi=80)
    return {"time_s": dt, "rows": [{k: (float(r[k]) if np.ndim(r[k]) == 0 and k not in ("flags", "status")
                                       else str(r[k])) for k in tab.colnames} for r in tab]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--nuts-n", type=int, default=8)
    ap.add_argument("--pysersic", help="python of a venv with pysersic (benchmarks/setup_pysersic_venv.sh): "
                                       "a peer in the cutouts (MAP) and nuts parts")
    ap.add_argument("--astrophot", help="python of the AstroPhot venv (benchmarks/setup_astrophot_venv.sh): a peer in "
                                        "the cutouts part (MAP)")
    ap.add_argument("--dask-n", type=int, default=64)
    ap.add_argument("--field-px", type=int, default=1000)
    ap.add_argument("--noiseless-n", type=int, default=49)
    ap.add_argument("--gama", default=str(HERE.parent.parent / "shared" / "data" / "gama-kids-sdss"))
    ap.add_argument("--growth-sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--parts", default="cutouts,growth,nuts,dask,kill,field,noiseless,gama,cosmos")
    ap.add_argument("--out", default=str(HERE / ".cache" / "catalog.json"))
    ap.add_argument("--kill-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.kill_child:
        _kill_run(args.dask_n, args.kill_child)
        return
    import jax

    parts = args.parts.split(",")
    result = {"machine": {"python": platform.python_version(), "jax": jax.__version__, "bayesprof": "main",
                          "cpus": os.cpu_count(), "backend": jax.default_backend(), "command": " ".join(sys.argv)}}
    if "cutouts" in parts:
        result["cutouts"] = part_cutouts(args.n, args.pysersic, args.astrophot)
    if "growth" in parts:
        result["growth"] = part_growth(args.growth_sizes)
    if "nuts" in parts:
        result["nuts"] = part_nuts(args.nuts_n, args.pysersic)
    if "dask" in parts:
        result["dask"] = part_dask(args.dask_n)
    if "kill" in parts:
        result["kill"] = part_kill(args.dask_n)
    if "field" in parts:
        result["field"] = part_field(args.field_px)
    if "noiseless" in parts:
        result["noiseless"] = part_noiseless(args.noiseless_n)
    if "gama" in parts and Path(args.gama).is_dir():
        result["gama"] = part_gama(args.gama)
    if "cosmos" in parts:
        result["cosmos"] = part_cosmos()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
