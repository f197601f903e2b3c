"""bayesprof: joint Bayesian modelling of astronomical images.

Conventions (used everywhere in the package):

* Arrays are indexed ``data[y, x]``; pixel coordinates are 0-indexed with the
  centre of pixel ``(0, 0)`` at ``(x, y) = (0, 0)`` (astropy's convention).
* Sky positions are tangent-plane offsets (xi, eta) in arcsec about one common
  reference point of the scene: xi towards east (+RA), eta towards north.
* Position angles are in degrees, east of north (0 = major axis towards north,
  90 = towards east).
* Effective radii are semi-major-axis half-light radii in arcsec.
* Brightness is a total flux per band in microjansky (AB magnitude
  ``23.9 - 2.5 log10(flux)``); an image with zeropoint ``zp`` records
  ``flux * 10**(0.4 * (zp - 23.9))`` counts for it.

The workflow: build a :class:`Scene` of images, :meth:`Scene.add` sources with
sharing rules, then :func:`fit_map` (Levenberg–Marquardt) and :func:`sample` (NUTS).

JAX runs in float64 by default; call :func:`set_precision` with ``"float32"``
to use single precision (for GPUs).
"""

import jax

jax.config.update("jax_enable_x64", True)

from . import catalog, likelihood, plot, survey  # noqa: E402
from .components import (  # noqa: E402
    AstrometricOffset, DeVaucouleurs, Exponential, FlatSky, Gaussian, Moffat, PhotometricOffset, PlaneSky, PointSource,
    Sersic, Spline)
from .diagnostics import FitWarning  # noqa: E402
from .image import Image, ImageList, PixelMap, sky_from_offsets, tangent_plane_offsets  # noqa: E402
from .inference import MapResult, fit_map, load_map, sample  # noqa: E402
from .lightcurve import forced_photometry, light_curve  # noqa: E402
from .priors import PeriodicUniform  # noqa: E402
from .profiles import flux_to_counts, flux_to_mag, mag_to_flux, sersic_ie_from_flux, sersic_flux_from_ie  # noqa: E402
from .psf import GaussianPSF, MoffatPSF, PixelPSF, PSFExModel, gaussian_psf  # noqa: E402
from .render import Renderer, render  # noqa: E402
from .results import Posterior, load_posterior  # noqa: E402
from .scene import Scene, SkyWindow, Window  # noqa: E402
from .scenefile import load_scene, save_scene  # noqa: E402
from .survey import fit_catalog, fit_cutouts, run_catalog  # noqa: E402
from .wavelength import Chebyshev, effective_wavelength  # noqa: E402


def _link_numpyro_submodules():
    """Bind every loaded ``numpyro.*`` submodule to its parent package.  arviz-base imports
    numpyro lazily (``lazy_loader``); ``import arviz`` followed by ``import numpyro.distributions``
    then leaves ``numpyro.distributions.distribution`` unbound, and NumPyro's own
    ``numpyro.factor`` (used by its ``potential_energy``) fails with an AttributeError."""
    import sys

    for name, module in list(sys.modules.items()):
        parent, _, child = name.rpartition(".")
        if name.startswith("numpyro.") and module is not None and parent in sys.modules \
                and not hasattr(sys.modules[parent], child):
            setattr(sys.modules[parent], child, module)


_link_numpyro_submodules()

__all__ = [
    "Image", "ImageList", "PixelMap", "tangent_plane_offsets", "sky_from_offsets",
    "GaussianPSF", "MoffatPSF", "PixelPSF", "PSFExModel", "gaussian_psf",
    "Sersic", "Exponential", "DeVaucouleurs", "Gaussian", "Moffat", "PointSource", "Spline", "FlatSky", "PlaneSky",
    "AstrometricOffset",
    "PhotometricOffset",
    "Renderer", "render",
    "Scene", "Window", "SkyWindow", "PeriodicUniform", "fit_map", "sample", "MapResult", "load_map", "Posterior",
    "load_posterior", "save_scene", "load_scene", "plot", "light_curve", "forced_photometry",
    "mag_to_flux", "flux_to_mag", "flux_to_counts", "sersic_ie_from_flux", "sersic_flux_from_ie",
    "set_precision", "FitWarning", "likelihood", "fit_catalog", "fit_cutouts", "run_catalog", "Chebyshev",
    "effective_wavelength",
]


def set_precision(precision: str = "float64") -> None:
    """Select JAX's floating-point precision: ``"float64"`` (default) or ``"float32"``."""
    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', not {precision!r}")
    jax.config.update("jax_enable_x64", precision == "float64")
