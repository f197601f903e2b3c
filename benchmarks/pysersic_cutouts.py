"""pysersic on the catalog benchmark's cut-outs (run in pysersic's own venv by benchmarks/catalog.py).

Reads an ``.npz`` written by ``catalog.py`` (``data``: objects x ny x nx, ``sigma``: the pixel
noise, ``psf``: the PSF stamp, pixel-integrated and normalised, ``scale``: arcsec per pixel,
``num_warmup``, ``num_samples``, ``num_chains``, ``nuts``: whether to sample) and fits each
object as a pysersic user would: ``autoprior(image, "sersic", sky_type="flat")``, ``FitSingle``
with its default renderer, ``find_MAP`` (SVI with an AutoDelta guide, early stopping), then,
with ``nuts``, numpyro's NUTS on ``FitSingle.build_model`` (what ``FitSingle.sample`` runs, with
its default ``init_to_sample`` start; the results object is skipped: it needs arviz < 1).

Writes a ``.npz`` with, per object, the MAP and NUTS wall times (s), the MAP's ``re`` (arcsec),
``n``, ``q``, ``flux`` and the draws (chains x draws) of ``re`` (arcsec), ``n`` and ``q``, for
``catalog.py`` to compute ESS with the same arviz as bayesprof's.

Usage:  /path/to/pysersic-venv/bin/python benchmarks/pysersic_cutouts.py IN.npz OUT.npz
"""

import sys
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from numpyro import infer  # noqa: E402
from pysersic import FitSingle  # noqa: E402
from pysersic.priors import autoprior  # noqa: E402


def main(path_in, path_out):
    f = np.load(path_in)
    data, sigma, psf, scale = f["data"], float(f["sigma"]), f["psf"], float(f["scale"])
    nw, ns, nc, nuts = int(f["num_warmup"]), int(f["num_samples"]), int(f["num_chains"]), bool(f["nuts"])
    out = {k: [] for k in ("map_s", "nuts_s", "re", "n", "q", "flux", "re_draws", "n_draws", "q_draws")}
    for k, im in enumerate(data):
        rms = np.full(im.shape, sigma)
        t = time.perf_counter()
        fitter = FitSingle(data=im, rms=rms, psf=psf, prior=autoprior(im, "sersic", sky_type="flat"))
        best = fitter.find_MAP(rkey=jax.random.PRNGKey(k), return_model=False)
        out["map_s"].append(time.perf_counter() - t)
        out["re"].append(float(best["r_eff"]) * scale)
        out["n"].append(float(best["n"]))
        out["q"].append(1.0 - float(best["ellip"]))
        out["flux"].append(float(best["flux"]))
        if not nuts:
            continue
        t = time.perf_counter()
        mcmc = infer.MCMC(infer.NUTS(fitter.build_model(return_model=False), init_strategy=infer.init_to_sample),
                          num_warmup=nw, num_samples=ns, num_chains=nc, chain_method="vectorized",
                          progress_bar=False)
        mcmc.run(jax.random.PRNGKey(100 + k))
        draws = mcmc.get_samples(group_by_chain=True)
        jax.block_until_ready(draws)
        out["nuts_s"].append(time.perf_counter() - t)
        out["re_draws"].append(np.asarray(draws["r_eff"]) * scale)
        out["n_draws"].append(np.asarray(draws["n"]))
        out["q_draws"].append(1.0 - np.asarray(draws["ellip"]))
        print(f"object {k}: MAP {out['map_s'][-1]:.1f} s, NUTS {out['nuts_s'][-1]:.1f} s", flush=True)
    np.savez(path_out, **{k: np.asarray(v) for k, v in out.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
