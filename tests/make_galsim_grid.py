"""Draw the renderer-accuracy grid with GalSim and store it in tests/data/galsim_grid.npz.

GalSim needs minutes for steep, extended Sersic profiles (n >= 4, re >= 10 px need
FFTs of 2048^2 with a looser folding threshold), so the grid is drawn once by this script rather than in every test
run; ``tests/test_render_accuracy.py`` re-draws a subset live to check that the stored
file is what GalSim produces.  Run:  .venv/bin/python tests/make_galsim_grid.py
"""

import itertools
import multiprocessing
import os
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import galsim_reference as ref  # noqa: E402

from bayesprof.psf import GaussianPSF, MoffatPSF, PixelPSF  # noqa: E402

SIZE = 48
N_VALUES = (0.5, 1.0, 2.5, 4.0, 6.0)
RE_VALUES = (0.3, 1.0, 3.0, 10.0, 40.0)  # pixels (pixel scale 1 arcsec)
Q_VALUES = (0.15, 0.6, 1.0)
PSF_NAMES = ("gauss1.2", "gauss2.2", "gauss4", "moffat2.5", "pixel1x", "pixel3x")
OUT = pathlib.Path(__file__).parent / "data" / "galsim_grid.npz"


def make_psfs():
    return {
        "gauss1.2": GaussianPSF(1.2),
        "gauss2.2": GaussianPSF(2.2),
        "gauss4": GaussianPSF(4.0),
        "moffat2.5": MoffatPSF(2.0, beta=2.5),
        "pixel1x": PixelPSF(ref.pixel_psf_stamp(1), pixel_scale=1.0, interpolant="quintic"),
        "pixel3x": PixelPSF(ref.pixel_psf_stamp(3), pixel_scale=1.0 / 3, interpolant="quintic"),
    }


def cases():
    rng = np.random.default_rng(20261124)
    out = []
    for p, (n, re, q) in itertools.product(range(len(PSF_NAMES)), itertools.product(N_VALUES, RE_VALUES, Q_VALUES)):
        dx, dy = rng.uniform(-0.5, 0.5, 2)
        pa = rng.uniform(0.0, 180.0)
        out.append((n, re, q, pa, dx, dy, p))
    return np.array(out)


CACHE = pathlib.Path(__file__).parent / ".galsim_grid_cache"


def _draw(item):
    """Draw one case (cached on disk, so an interrupted run resumes)."""
    k, (n, re, q, pa, dx, dy, p) = item
    path = CACHE / f"{k:04d}.npz"
    if path.exists():
        with np.load(path) as f:
            return f["img"], float(f["ft"])
    psf = make_psfs()[PSF_NAMES[int(p)]]
    img, ft = ref.draw_sersic(n, re, q, pa, 1.0, psf, (SIZE, SIZE), 1.0, (dx, dy))
    np.savez(path, img=img, ft=ft)
    return img, ft


def main():
    rows = cases()
    CACHE.mkdir(exist_ok=True)
    order = np.argsort(-(rows[:, 0] * rows[:, 1]))  # slowest first for load balance
    with multiprocessing.Pool(int(os.environ.get("GRID_WORKERS", 2))) as pool:
        results = pool.map(_draw, [(int(k), rows[k]) for k in order], chunksize=1)
    images = np.empty((len(rows), SIZE, SIZE))
    folding = np.empty(len(rows))
    for k, (img, ft) in zip(order, results):
        images[k], folding[k] = img, ft
    OUT.parent.mkdir(exist_ok=True)
    psfs = make_psfs()
    np.savez_compressed(OUT, params=rows, images=images.astype(np.float32), folding=folding,
                        pixel1x=psfs["pixel1x"].image, pixel3x=psfs["pixel3x"].image)
    print(f"wrote {OUT} ({len(rows)} images)")


if __name__ == "__main__":
    main()
