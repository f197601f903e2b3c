"""Initial estimates from the images: background, centroid, aperture flux, size, shape.

These seed the default priors (:mod:`bayesprof.priors`) and the starting point of the
MAP fit.  They are plain numpy, robust rather than exact:

* **background**: median of the outer 10 % border of unmasked pixels; the pixel noise
  ``sigma_pix`` is the median of the variance map's square root.
* **centre**: the brightest pixel of the background-subtracted image smoothed by a
  Gaussian of 1.5 pixels (inside a window, or near a given position), refined by a
  flux-weighted centroid within 3 pixels.
* **curve of growth**: circular-aperture fluxes about the centre; the total flux is
  taken where an annulus adds less than 2 sigma of its noise (or at the image edge),
  the circular half-light radius where the curve reaches half of it.
* **shape**: second moments of the positive pixels inside the total-flux aperture give
  the axis ratio q and the position angle (east of north); the semi-major half-light
  radius is the circular one divided by sqrt(q).

For a group of sources, :class:`bayesprof.Scene` estimates one source after another on
the residual image (data minus the sources estimated so far).  In a blend, a source whose
position is given is measured only on its **territory**: the pixels nearer to it than to any
other given position (:func:`territories`), so that its aperture, size and shape do not take
in its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["background", "SourceEstimate", "estimate_source", "aperture_flux", "territories"]


def background(data, mask, variance):
    """(level, sigma_pix): median of the unmasked outer border, median pixel sigma."""
    ny, nx = data.shape
    by, bx = max(1, ny // 10), max(1, nx // 10)
    border = np.zeros_like(mask)
    border[:by], border[-by:], border[:, :bx], border[:, -bx:] = True, True, True, True
    good = border & ~mask
    if not good.any():
        good = ~mask
    level = float(np.median(data[good])) if good.any() else 0.0
    sigma = float(np.median(np.sqrt(variance[~mask]))) if (~mask).any() else 1.0
    return level, sigma


@dataclass
class SourceEstimate:
    """Image-based guess for one source, in the image's pixels and in physical units."""

    x: float  # pixel centre (0-indexed)
    y: float
    counts: float  # total counts (background subtracted)
    re_px: float  # semi-major half-light radius, pixels
    q: float
    theta: float  # major-axis angle, degrees counter-clockwise from the +x pixel axis
    radius_px: float  # the total-flux aperture radius, pixels


def _growth(img, good, x, y, rmax):
    yy, xx = np.indices(img.shape)
    r = np.hypot(xx - x, yy - y)
    radii = np.arange(1, max(2, int(rmax)) + 1, dtype=float)
    flux = np.array([img[good & (r <= R)].sum() for R in radii])
    npix = np.array([np.count_nonzero(good & (r <= R)) for R in radii])
    return radii, flux, npix, r


def territories(shape, positions):
    """Label image (``shape``) of the pixels nearest to each of ``positions`` ((x, y) pixels):
    entry k is where position k is the nearest (a Voronoi partition of the image).  A k-d tree
    query per pixel: memory grows with the pixels, not with pixels x positions."""
    from scipy.spatial import cKDTree

    yy, xx = np.indices(shape)
    pos = np.asarray(positions, dtype=float).reshape(-1, 2)
    return cKDTree(pos).query(np.column_stack([xx.ravel(), yy.ravel()]))[1].reshape(shape)


def estimate_source(data, mask, variance, *, position=None, box=None, territory=None, sky=None):
    """Guess centre, counts, size and shape of the brightest source in an image.

    ``position``: optional (x, y) pixel guess (searched within 3 px); ``box``: optional
    (x0, x1, y0, y1) window to search in; ``territory``: optional boolean image, the only
    pixels the source is measured on (its part of a blend, :func:`territories`); ``sky``:
    optional ``(level, sigma_pix)`` (:func:`background`) already measured, e.g. on the whole
    frame that ``data`` is cut from.  The orientation is returned in pixel terms (``theta``);
    the scene turns it into a PA east of north through the image's WCS.
    """
    level, sigma = background(data, mask, variance) if sky is None else sky
    img = np.where(mask, 0.0, data - level)
    good = ~mask if territory is None else ~mask & territory
    ny, nx = img.shape
    x0, x1, y0, y1 = box if box is not None else (0, nx, 0, ny)
    smooth = ndimage.gaussian_filter(img, 1.5)
    search = np.zeros_like(good)
    if position is not None:
        px, py = position
        search[max(int(py) - 3, 0):int(py) + 4, max(int(px) - 3, 0):int(px) + 4] = True
        search &= good
    if not search.any():
        search[y0:y1, x0:x1] = True
        search &= good
    if not search.any():
        raise ValueError("no unmasked pixels to estimate a source from")
    j, i = np.unravel_index(np.argmax(np.where(search, smooth, -np.inf)), img.shape)
    # refine: centroid of positive pixels within 3 px
    yy, xx = np.indices(img.shape)
    near = good & (np.hypot(xx - i, yy - j) <= 3) & (img > 0)
    if near.any() and img[near].sum() > 0:
        w = img[near]
        cx, cy = float((xx[near] * w).sum() / w.sum()), float((yy[near] * w).sum() / w.sum())
    else:
        cx, cy = float(i), float(j)
    if position is not None and np.hypot(cx - position[0], cy - position[1]) > 3:
        cx, cy = float(position[0]), float(position[1])
    # the largest circle about the centre inside the window (or the image)
    rmax = max(3.0, min(cx - x0 + 0.5, x1 - 0.5 - cx, cy - y0 + 0.5, y1 - 0.5 - cy))
    radii, flux, npix, r = _growth(img, good, cx, cy, rmax)
    annulus = np.diff(np.concatenate([[0.0], flux]))
    ann_npix = np.diff(np.concatenate([[0], npix]))
    faint = (annulus < 2 * sigma * np.sqrt(np.maximum(ann_npix, 1))) & (radii >= 3)
    k = int(np.argmax(faint)) if faint.any() else len(radii) - 1
    total = float(flux[k])
    R = float(radii[k])
    if total <= 0:
        total = float(max(img[good & (r <= 2)].sum(), sigma))
        R = 2.0
    half = np.interp(0.5 * total, flux[: k + 1], radii[: k + 1]) if flux[0] < 0.5 * total else 0.5
    # second moments of positive pixels within R
    inside = good & (r <= R) & (img > sigma)
    w = img[inside]
    if w.size >= 3 and w.sum() > 0:
        dx, dy = xx[inside] - cx, yy[inside] - cy
        mxx, myy, mxy = (w * dx * dx).sum() / w.sum(), (w * dy * dy).sum() / w.sum(), (w * dx * dy).sum() / w.sum()
        tr, det = mxx + myy, mxx * myy - mxy**2
        disc = np.sqrt(max(tr * tr / 4 - det, 0.0))
        l1, l2 = tr / 2 + disc, max(tr / 2 - disc, 1e-12)
        q = float(np.clip(np.sqrt(l2 / l1), 0.2, 0.95))
        theta = float(0.5 * np.degrees(np.arctan2(2 * mxy, mxx - myy)))
    else:
        q, theta = 0.8, 90.0
    re_px = float(max(half / np.sqrt(q), 0.5))
    return SourceEstimate(cx, cy, total, re_px, q, theta, R)


def aperture_flux(data, mask, variance, x, y, radius_px, territory=None):
    """Background-subtracted counts inside a circle (pixels), masked pixels filled by the median;
    with ``territory`` (boolean image), inside the circle's part within it."""
    level, sigma = background(data, mask, variance)
    img = np.where(mask, 0.0, data - level)
    yy, xx = np.indices(img.shape)
    inside = np.hypot(xx - x, yy - y) <= max(radius_px, 1.0)
    if territory is not None:
        inside &= territory
    good = inside & ~mask
    n_in, n_good = np.count_nonzero(inside), np.count_nonzero(good)
    if n_good == 0:
        return 0.0, sigma
    return float(img[good].sum() * n_in / n_good), float(sigma * np.sqrt(n_in))
