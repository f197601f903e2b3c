"""``make demo``: render the seed's three-image benchmark scene and check it against GalSim.

Renders one Sersic galaxy (n=2.5, re=6", q=0.6, PA=35 deg) into Legacy-Survey-r-like
(0.262"/px), unWISE-W1-like (2.75"/px) and GALEX-NUV-like (1.5"/px) images with their own
PSFs and zeropoints, prints the accuracy against GalSim (when installed) and the warm
render time, and writes ``render.png`` (model | GalSim | difference per image).
Usage:  python -m bayesprof.demo --out demo_output
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import numpy as np

from .render import Renderer
from .scenes import seed_benchmark_galaxy, seed_benchmark_images


def _galsim_reference(gal, image, counts):
    import galsim

    gsp = galsim.GSParams(folding_threshold=1e-6, maxk_threshold=1e-7, kvalue_accuracy=1e-8)
    prof = galsim.Sersic(n=gal.n, half_light_radius=gal.re * np.sqrt(gal.q), flux=counts, gsparams=gsp)
    prof = prof.shear(q=gal.q, beta=(gal.pa + 90.0) * galsim.degrees)
    conv = galsim.Convolve(prof, galsim.Gaussian(fwhm=image.psf.fwhm, gsparams=gsp), gsparams=gsp)
    return conv.drawImage(nx=image.nx, ny=image.ny, scale=image.pixel_scale).array


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_output", help="output folder")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    images = seed_benchmark_images()
    gal = seed_benchmark_galaxy()
    print(f"galaxy: {gal}")
    rows = []
    for image in images:
        renderer = Renderer(image, images.reference)
        model = np.asarray(renderer(gal))
        t0 = time.perf_counter()
        for _ in range(20):
            jax.block_until_ready(renderer(gal))
        ms = (time.perf_counter() - t0) / 20 * 1e3
        try:
            ref = _galsim_reference(gal, image, gal.flux * renderer.counts_per_ujy)
        except ImportError:
            ref = None
        rows.append((image, model, ref))
        if ref is None:
            print(f"{image.name:>4} {image.nx}x{image.ny} @ {image.pixel_scale}\"/px: rendered in {ms:.2f} ms "
                  "(install galsim to compare)")
        else:
            sigma = ref.max() / {"r": 50, "W1": 20, "NUV": 8}[image.name]
            print(f"{image.name:>4} {image.nx}x{image.ny} @ {image.pixel_scale}\"/px: "
                  f"max|model-GalSim|/peak = {np.abs(model - ref).max() / ref.max():.1e}, "
                  f"sum ratio - 1 = {model.sum() / ref.sum() - 1:+.1e}, "
                  f"chi2_sys(peak S/N {ref.max() / sigma:.0f}) = {np.sum(((model - ref) / sigma) ** 2):.1e}, "
                  f"warm render {ms:.2f} ms")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = 3 if rows[0][2] is not None else 1
    fig, axes = plt.subplots(len(rows), ncol, figsize=(4 * ncol, 3.6 * len(rows)), squeeze=False)
    for i, (image, model, ref) in enumerate(rows):
        panels = [("bayesprof model", model)]
        if ref is not None:
            panels += [("GalSim", ref), ("bayesprof - GalSim", model - ref)]
        for j, (title, arr) in enumerate(panels):
            ax = axes[i, j]
            if j < 2:
                im = ax.imshow(np.arcsinh(arr / (0.01 * model.max())), origin="lower", cmap="magma")
            else:
                lim = np.abs(arr).max() or 1.0
                im = ax.imshow(arr / model.max(), origin="lower", cmap="RdBu_r", vmin=-lim / model.max(),
                               vmax=lim / model.max())
                fig.colorbar(im, ax=ax, label="fraction of peak")
            ax.set_title(f"{image.name}: {title}")
            ax.set_xlabel("x [px] (west ->)")
            ax.set_ylabel("y [px] (north ->)")
    fig.tight_layout()
    fig.savefig(out / "render.png", dpi=80)
    print(f"wrote {out / 'render.png'}")


if __name__ == "__main__":
    main()
