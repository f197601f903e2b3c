"""Checks of a MAP fit that say when a result is not what it seems.

:func:`check_map` runs after every :func:`~bayesprof.fit_map`; each finding is a one-line
message in ``fit.flags`` and a :class:`FitWarning`:

* **a prior's bound**: a latent site whose MAP lies within one sigma of a finite bound of its
  prior's support (e.g. ``n = 3.02 +- 0.07`` under ``Uniform(3, 8)``): the prior, not the
  data, decides that value and its error;
* **light outside the images**: an extended source of which less than
  :data:`CONTAINED_FRACTION` of the model light falls inside the best-covering of its images
  (e.g. a disk much larger than the cut-out): its flux and size are extrapolations;
* **a noise map that does not match the residuals**: an image whose chi^2 per fitted pixel
  lies outside :data:`CHI2_BAND` (normal likelihood only), with the factor between the
  residuals' scatter and the noise map (e.g. a sigma map given as ``variance=``: chi^2/N
  ~0.1, uncertainties ~3x too large).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from .priors import prior_text

__all__ = ["FitWarning", "Flag", "check_map", "CHI2_BAND", "CONTAINED_FRACTION"]

#: chi^2 per fitted pixel outside this range is reported (residual scatter below 0.71 or above
#: 1.41 of the noise map).
CHI2_BAND = (0.5, 2.0)
#: an extended source with less than this fraction of its light inside every one of its images is reported
CONTAINED_FRACTION = 0.5


class FitWarning(UserWarning):
    """A fitted value that needs the user's attention (the message names the site or image)."""


@dataclass(frozen=True)
class Flag:
    """One finding: ``kind`` ("prior bound", "outside images" or "noise"), ``subject`` (the
    site, e.g. ``gal.n``; the source; or the image) and the one-line ``message``."""

    kind: str
    subject: str
    message: str

    def __str__(self):
        return self.message


def check_map(fit, image_chi2=None) -> list[Flag]:
    """The findings (:class:`Flag`, module docstring) for the MapResult ``fit``;
    ``image_chi2``: ``{image: (chi2, n_pixels)}`` if known (else computed)."""
    messages = _prior_bounds(fit)
    messages += _light_outside(fit)
    normal = {im.name for im, lk in zip(fit.model.images, fit.model.likelihoods) if lk.least_squares}
    if normal:  # chi^2 / N measures the noise only under a normal likelihood
        chi2 = fit.image_chi2() if image_chi2 is None else image_chi2
        messages += _noise_mismatch({name: c for name, c in chi2.items() if name in normal})
    return messages


def _prior_bounds(fit):
    out = []
    for s in fit.model.latent:
        support = s.prior.prior.support
        lo = np.broadcast_to(np.asarray(getattr(support, "lower_bound", -np.inf), float), s.shape)
        hi = np.broadcast_to(np.asarray(getattr(support, "upper_bound", np.inf), float), s.shape)
        x = np.asarray(fit.values[s.name], float)
        sig = np.asarray(fit.sigmas[s.name], float)
        for side, bound, dist in (("lower", lo, x - lo), ("upper", hi, hi - x)):
            near = np.isfinite(bound) & (dist <= sig)
            for i in zip(*np.nonzero(np.atleast_1d(near))):
                name = s.name if s.shape == () else f"{s.name}[{i[0]}]"
                value, sigma, b = (float(np.ravel(a)[i[0]]) for a in (x, sig, bound))
                out.append(Flag("prior bound", name,
                                f"{name} = {value:.4g} +- {sigma:.2g} is within 1 sigma of the {side} bound {b:g} of "
                                f"its prior {prior_text(s.prior.prior)}: the prior, not only the data, sets the value "
                                f"and its error (widen the prior if the bound is not physical)"))
    return out


def _light_outside(fit, n_radii=48, n_angles=32):
    """Extended sources whose light mostly falls outside their images: the fraction inside is
    estimated from points spread evenly in the source's light (radii at equal steps of enclosed
    flux, evenly in the ellipse's parametric angle, for which the light is uniform)."""
    model = fit.model
    values = model.complete(fit.values)
    best = {}
    for im, pixel_map in zip(model.images, model.image_maps):
        comps, _, _ = model.image_components(values, im)
        for name, c in comps.items():
            if c.is_point or not hasattr(c, "enclosed") or best.get(name, 0.0) >= CONTAINED_FRACTION:
                continue  # (a source contained in one image is not flagged: no need to look further)
            best[name] = max(best.get(name, 0.0), _fraction_inside(c, im, pixel_map, model.reference, n_radii,
                                                                   n_angles))
    return [Flag("outside images", name, f"{name}: only {frac:.0%} of its model light falls inside its images; "
                 f"its flux and size are extrapolated beyond the data (use larger cut-outs or fix its size)")
            for name, frac in best.items() if frac < CONTAINED_FRACTION]


def _fraction_inside(comp, image, pixel_map, reference, n_radii, n_angles):
    """The fraction of ``comp``'s light on ``image``: through its ``pixel_map``
    (:meth:`~bayesprof.image.PixelMap.contains`), or astropy's WCS (:meth:`Image.overlaps`) where
    there is none."""
    scale = float(np.max(np.asarray([getattr(comp, a, 1.0) for a in ("re", "fwhm")], float)))
    rho = scale * np.logspace(-4, 4, 801)
    enclosed = np.maximum.accumulate(np.asarray(_enclosed(comp, rho), float))
    levels = (np.arange(n_radii) + 0.5) / n_radii
    # light beyond the grid's last radius (a heavy tail) counts as outside the images
    radii = np.interp(levels, enclosed, rho, right=np.inf)
    theta = 2 * np.pi * (np.arange(n_angles) + 0.5) / n_angles
    pa = np.deg2rad(float(comp.pa))
    major = np.array([np.sin(pa), np.cos(pa)])  # (east, north) unit vector of the major axis
    minor = np.array([np.cos(pa), -np.sin(pa)])
    a = radii[:, None] * np.cos(theta)[None, :]
    b = float(comp.q) * radii[:, None] * np.sin(theta)[None, :]
    xi = float(comp.xi) + a * major[0] + b * minor[0]
    eta = float(comp.eta) + a * major[1] + b * minor[1]
    finite = np.isfinite(xi) & np.isfinite(eta)
    inside = np.zeros(xi.shape, bool)
    inside[finite] = (pixel_map.contains(xi[finite], eta[finite]) if pixel_map is not None
                      else image.overlaps(reference, xi[finite], eta[finite]))
    return float(inside.mean())


@jax.jit
def _enclosed(comp, rho):
    """``comp.enclosed(rho)`` as one compiled call (per component class and grid shape)."""
    return comp.enclosed(rho)


def _noise_mismatch(image_chi2):
    out = []
    lo, hi = CHI2_BAND
    for name, (chi2, n) in image_chi2.items():
        if n == 0:
            continue
        r = chi2 / n
        head = f"image {name}: chi2/N = {r:.3g} over {n} pixels: "
        if r == 0:  # a noiseless model of noiseless data
            out.append(Flag("noise", name, head + "the model matches the data exactly (noiseless data?), so the "
                                                  "uncertainties mean nothing"))
        elif r < lo:
            out.append(Flag("noise", name, head + f"the noise map is {1 / np.sqrt(r):.2g}x the residuals' scatter, so "
                                                  "every uncertainty is about that much too large (a sigma map given "
                                                  "as variance?)"))
        elif r > hi:
            out.append(Flag("noise", name, head + f"the residuals are {np.sqrt(r):.2g}x the noise map (an "
                                                  "underestimated noise map, or structure the model misses); "
                                                  "uncertainties are too small"))
    return out
