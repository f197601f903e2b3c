"""bayesprof: joint Bayesian modelling of astronomical images.

Conventions (used everywhere in the package):

* Arrays are indexed ``data[y, x]``; pixel coordinates are 0-indexed with the
  centre of pixel ``(0, 0)`` at ``(x, y) = (0, 0)`` (astropy's convention).
* Sky positions are tangent-plane offsets (xi, eta) in arcsec about one common
  reference point of the scene: xi towards east (+RA), eta towards north.
* Position angles are in degrees, east of north (0 = major axis towards north,
  90 = towards east).
* Effective radii are semi-major-axis half-light radii in arcsec.
* Brightness is a total flux per band in AB magnitudes; an image with
  zeropoint ``zp`` records ``10**(-0.4 * (mag - zp))`` counts for it.

JAX runs in float64 by default; call :func:`set_precision` with ``"float32"``
to use single precision (for GPUs).
"""

import jax

jax.config.update("jax_enable_x64", True)

from .components import DeVaucouleurs, Exponential, Gaussian, Moffat, PointSource, Sersic  # noqa: E402
from .image import Image, ImageList, PixelMap, sky_from_offsets, tangent_plane_offsets  # noqa: E402
from .profiles import flux_to_counts, flux_to_mag, mag_to_flux, sersic_ie_from_flux, sersic_flux_from_ie  # noqa: E402
from .psf import GaussianPSF, MoffatPSF, PixelPSF, gaussian_psf  # noqa: E402
from .render import Renderer, render  # noqa: E402

__all__ = [
    "Image", "ImageList", "PixelMap", "tangent_plane_offsets", "sky_from_offsets",
    "GaussianPSF", "MoffatPSF", "PixelPSF", "gaussian_psf",
    "Sersic", "Exponential", "DeVaucouleurs", "Gaussian", "Moffat", "PointSource",
    "Renderer", "render",
    "mag_to_flux", "flux_to_mag", "flux_to_counts", "sersic_ie_from_flux", "sersic_flux_from_ie",
    "set_precision",
]


def set_precision(precision: str = "float64") -> None:
    """Select JAX's floating-point precision: ``"float64"`` (default) or ``"float32"``."""
    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', not {precision!r}")
    jax.config.update("jax_enable_x64", precision == "float64")
