"""NUTS with real PSF stamps against analytic PSFs (issue "Scenes that scale", item 5).

The scene: one Sersic + a flat sky in the DECaLS DR9 g, r, z coadd of ``decals-grz``
(the central 120x120 px of the 256x256 cutout, 0.262"/px, inverse-variance noise), fitted
jointly (structure shared, flux per band).  Two runs, each in a fresh subprocess so that its
peak memory is its own, on the same pixels:

* ``stamps``: the survey's 63x63 PSF stamps (``bp.PixelPSF``), as a user would fit them (the
  default interpolant: band-limited for these well-sampled stamps);
* ``quintic``: the same stamps read with the quintic interpolant (the only one before
  2026-12-06), which needs 5-6x folding;
* ``gaussian``: Gaussian PSFs of the stamps' FWHM (measured by ``MoffatPSF.fit_stamp``).

Reported: the MAP time (first, compilation included), NUTS warm-up and sampling times,
min bulk ESS per second of sampling, the time of the per-draw log-likelihood pass, and peak RSS.

Usage:  .venv/bin/python benchmarks/psf_stamps.py [--warmup 500] [--samples 500] [--chains 2] [--kinds stamps,gaussian]
The data are read from ``../shared/data/decals-grz`` (not bundled).
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
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "decals-grz"


def build(psf_kind):
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS

    import bayesprof as bp

    images = []
    with fits.open(DATA / "cutout_59.1067_-30.4848.fits") as cut, fits.open(DATA / "copsf_59.1067_-30.4848.fits") as ps:
        for k, band in enumerate("grz"):
            sci, ivar = cut[1 + 2 * k], cut[2 + 2 * k]  # image and inverse variance, band after band
            wcs = WCS(sci.header).celestial[68:188, 68:188]
            data = np.asarray(sci.data, dtype=float)[68:188, 68:188]
            invvar = np.asarray(ivar.data, dtype=float)[68:188, 68:188]
            stamp = np.asarray(ps[k].data, dtype=float)
            psf = bp.PixelPSF(stamp, interpolant="quintic" if psf_kind == "quintic" else "auto")
            if psf_kind == "gaussian":
                psf = bp.GaussianPSF(bp.MoffatPSF.fit_stamp(stamp, 0.262).fwhm)  # noqa: E501
            mask = ~(invvar > 0)
            images.append(bp.Image(data, variance=np.where(mask, 1.0, 1.0 / np.where(mask, 1.0, invvar)), mask=mask,
                                   wcs=wcs, psf=psf, zeropoint=22.5, band=band, name=band))
    scene = bp.Scene(images)
    scene.add("gal", bp.Sersic)
    scene.add("sky", bp.FlatSky)
    return scene


def one(psf_kind, warmup, samples, chains):
    import bayesprof as bp

    scene = build(psf_kind)
    model = scene.build()
    t0 = time.perf_counter()
    fit = bp.fit_map(model)
    t_map = time.perf_counter() - t0
    t0 = time.perf_counter()
    post = bp.sample(model, fit, num_warmup=warmup, num_samples=samples, num_chains=chains, progress_bar=False)
    t_all = time.perf_counter() - t0
    attrs = post.tree.attrs
    ess = post.ess_min()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"psf": psf_kind, "map_s": t_map, "map_steps": fit.iterations, "warmup_s": attrs["warmup_time_s"],
            "sampling_s": attrs["sampling_time_s"], "total_s": t_all, "min_ess": ess,
            "ess_per_s": ess / attrs["sampling_time_s"], "loglik_s": attrs.get("log_likelihood_time_s", float("nan")),
            "divergences": post.num_divergences, "peak_rss_gib": rss}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--kinds", default="stamps,quintic,gaussian", help="comma-separated: stamps, quintic, gaussian")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.child, args.warmup, args.samples, args.chains)))
        return
    import jax

    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"jax {jax.__version__}; NUTS {args.chains} x ({args.warmup} + {args.samples})")
    print(f"{'PSF':>9} {'MAP s':>6} {'warm-up s':>9} {'sampling s':>10} {'loglik s':>8} {'min ESS':>7} {'ESS/s':>6} "
          f"{'div':>4} {'RSS GiB':>7}")
    ap_kinds = args.kinds.split(",")
    for kind in ap_kinds:
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--warmup", str(args.warmup), "--samples",
                              str(args.samples), "--chains", str(args.chains)], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{kind:>9} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{kind:>9} {r['map_s']:>6.1f} {r['warmup_s']:>9.1f} {r['sampling_s']:>10.1f} {r['loglik_s']:>8.1f} "
              f"{r['min_ess']:>7.0f} {r['ess_per_s']:>6.1f} {r['divergences']:>4} {r['peak_rss_gib']:>7.2f}",
              flush=True)


if __name__ == "__main__":
    main()
