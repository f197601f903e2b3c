"""Write the simulated seed scene to ``benchmarks/.cache/seed_scene.npz``.

Run with the bayesprof venv:  ``.venv/bin/python benchmarks/seed_data.py [--seed 0]``

The file holds everything a third-party fitter (AstroPhot, see ``astrophot_seed.py``) needs,
so that it does not import bayesprof.  Keys:

* ``names``: image names (``r``, ``W1``, ``NUV``), in order;
* per image ``<name>_data`` / ``<name>_variance`` (2-D arrays, ``[y, x]``, counts),
  ``<name>_pixel_scale`` (arcsec/px), ``<name>_psf_fwhm`` (Gaussian FWHM, arcsec),
  ``<name>_zeropoint`` (AB);
* ``truth_keys`` / ``truth_values``: the true parameters in bayesprof's conventions
  (``gal.xi``, ``gal.eta`` arcsec offsets from the common image centre, +xi = east;
  ``gal.re`` semi-major half-light radius arcsec; ``gal.pa`` deg east of north;
  ``gal.flux[band]`` uJy);
* ``seed``.

Geometry: every image is north-up, east-left (+x = west), centred on the same sky point,
the array centre (pixel ``((N-1)/2, (N-1)/2)``, 0-indexed).  No sky background.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bayesprof.simulate import simulate_seed_scene

DEFAULT_PATH = Path(__file__).resolve().parent / ".cache" / "seed_scene.npz"


def image_arrays(images) -> dict:
    """The npz entries of ``images`` (Gaussian PSFs) for a fitter that does not import bayesprof:
    ``names`` and per image ``<name>_data``, ``_variance``, ``_pixel_scale``, ``_psf_fwhm``,
    ``_zeropoint`` (see the module docstring)."""
    out = {"names": np.array([im.name for im in images])}
    for im in images:
        out[f"{im.name}_data"] = np.asarray(im.data, dtype=np.float64)
        out[f"{im.name}_variance"] = np.broadcast_to(np.asarray(im.variance, dtype=np.float64), im.data.shape).copy()
        out[f"{im.name}_pixel_scale"] = np.array(float(im.pixel_scale))
        out[f"{im.name}_psf_fwhm"] = np.array(float(im.psf.fwhm))
        out[f"{im.name}_zeropoint"] = np.array(float(im.zeropoint))
    return out


def write_seed_scene(path: Path = DEFAULT_PATH, seed: int = 0) -> Path:
    images, truth = simulate_seed_scene(seed=seed)
    out = {**image_arrays(images), "seed": np.array(seed)}
    keys = list(truth)
    out["truth_keys"] = np.array(keys)
    out["truth_values"] = np.array([float(truth[k]) for k in keys])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_PATH)
    args = ap.parse_args()
    path = write_seed_scene(args.out, args.seed)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
