"""Ready-made image sets for demos, tests and benchmarks.

:func:`seed_benchmark_images` is the three-image set of AutoProf's JointModels tutorial
(Legacy Survey r, unWISE W1, GALEX NUV) reduced to benchmark sizes, with the true galaxy
of the benchmark scene.
"""

from __future__ import annotations

import numpy as np

from .components import Sersic
from .image import Image, ImageList
from .profiles import mag_to_flux
from .psf import GaussianPSF

__all__ = ["SEED_IMAGES", "seed_benchmark_images", "seed_benchmark_galaxy"]

#: (name, pixel scale arcsec/px, size px, PSF FWHM arcsec, AB zeropoint) as in the tutorial
SEED_IMAGES = (
    ("r", 0.262, 240, 1.12, 22.5),
    ("W1", 2.75, 26, 6.1, 25.199),
    ("NUV", 1.5, 44, 5.4, 20.08),
)


def seed_benchmark_galaxy(mag=15.0):
    """The benchmark galaxy: Sersic n=2.5, re=6 arcsec, q=0.6, PA=35 deg, at the scene centre."""
    return Sersic(xi=0.0, eta=0.0, flux=float(mag_to_flux(mag)), re=6.0, n=2.5, q=0.6, pa=35.0)


def seed_benchmark_images(data=None, sigma=None):
    """The r, W1 and NUV images of the benchmark scene, all centred on the same sky point.

    ``data`` / ``sigma``: optional per-image arrays / 1-sigma noise (default: zeros / 1).
    """
    images = []
    for k, (name, scale, size, fwhm, zp) in enumerate(SEED_IMAGES):
        d = np.zeros((size, size)) if data is None else data[k]
        s = 1.0 if sigma is None else sigma[k]
        images.append(Image(d, sigma=s, pixel_scale=scale, psf=GaussianPSF(fwhm), zeropoint=zp, band=name, name=name))
    return ImageList(images)
