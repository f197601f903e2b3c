"""AstroPhot on the catalog benchmark's cut-outs: MAP fits per object (run in the AstroPhot venv
by ``benchmarks/catalog.py --peers``; ``benchmarks/setup_astrophot_venv.sh`` makes it).

Reads an ``.npz`` written by ``catalog.py`` (``data``: objects x ny x nx, ``sigma``: the pixel
noise, ``psf``: the PSF stamp, pixel-integrated and normalised, ``scale``: arcsec per pixel,
``zeropoint``) and fits each object as an AstroPhot user would: one ``TargetImage`` with the
variance and the PSF stamp, a group of a PSF-convolved ``"sersic galaxy model"`` and a
``"flat sky model"``, AstroPhot's own initialisation (``initialize()``), then
``ap.fit.LM(model).fit()``.  Torch runs on one thread (``benchmarks/astrophot_seed.py``
explains why on this 2-core machine).

Writes a ``.npz`` with, per object, the wall time (s) of set-up + initialisation + LM, the LM
iterations, whether LM reports success, and the fitted ``re`` (arcsec), ``n`` and ``q``.

Usage:  benchmarks/.venv-astrophot/bin/python benchmarks/astrophot_cutouts.py IN.npz OUT.npz
"""

import logging
import sys
import time

import numpy as np
import torch


def main(path_in, path_out):
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    logging.getLogger().addHandler(logging.NullHandler())
    import astrophot as ap

    ap.config.set_logging_output(stdout=False)
    f = np.load(path_in)
    data, sigma, psf, scale, zp = f["data"], float(f["sigma"]), f["psf"], float(f["scale"]), float(f["zeropoint"])
    out = {k: [] for k in ("time_s", "iterations", "success", "re", "n", "q")}
    for k, im in enumerate(data):
        ny, nx = im.shape
        t = time.perf_counter()
        target = ap.TargetImage(data=im, variance=np.full(im.shape, sigma**2), pixelscale=scale, zeropoint=zp,
                                crpix=((nx - 1) / 2.0, (ny - 1) / 2.0), crtan=(0.0, 0.0),
                                psf=ap.PSFImage(data=psf), name=f"obj{k}")
        gal = ap.Model(name=f"gal{k}", model_type="sersic galaxy model", target=target, psf_convolve=True)
        sky = ap.Model(name=f"sky{k}", model_type="flat sky model", target=target)
        model = ap.Model(name=f"obj{k}", model_type="group model", models=[gal, sky], target=target)
        model.initialize()
        res = ap.fit.LM(model, verbose=0).fit()
        out["time_s"].append(time.perf_counter() - t)
        out["iterations"].append(len(res.loss_history) - 1)
        out["success"].append("success" in res.message)
        out["re"].append(float(gal.Re.value))
        out["n"].append(float(gal.n.value))
        out["q"].append(float(gal.q.value))
    np.savez(path_out, **{k: np.asarray(v) for k, v in out.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
