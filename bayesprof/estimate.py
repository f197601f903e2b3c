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

from .image import tangent_plane_offsets
from .profiles import flux_to_counts

__all__ = ["background", "SourceEstimate", "estimate_source", "aperture_flux", "territories", "scene_estimates"]


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


# ------------------------------------------------------------------ a scene's sources
def _territories(scene, members, pixel_map):
    """``territory(source, image)``: the boolean image of the pixels nearer to ``source``'s given
    position than to any other source's (:func:`~bayesprof.estimate.territories`; sources at
    one position share it), or None where fewer than two distinct positions are given in
    that image or the source has none."""
    inits = scene._inits
    given = {}
    for s in scene.sources:
        if not (s.kind.is_offset or s.kind.is_calibration or s.kind.is_sky) \
                and f"{s.name}.xi" in inits and f"{s.name}.eta" in inits:
            given[s.name] = (round(float(inits[f"{s.name}.xi"]), 6), round(float(inits[f"{s.name}.eta"]), 6))
    labels = {}

    def territory(name, im):
        if name not in given:
            return None
        if im.name not in labels:
            points = sorted({given[n] for n in given if im.name in members[n]})
            if len(points) < 2:
                labels[im.name] = None
            else:
                pm = pixel_map(im)
                pix = [tuple(float(v) for v in pm(xi, eta)) for xi, eta in points]
                labels[im.name] = (territories(im.shape, pix), points)
        if labels[im.name] is None:
            return None
        lab, points = labels[im.name]
        return lab == points.index(given[name])

    return territory


def scene_estimates(scene, members, boxes, pixel_map):
    """Initial values of every source of a :class:`~bayesprof.Scene`, estimated from its images
    object after object on the residual (each source's rough model is subtracted before the next
    is measured): moments on the finest image (centre, half-light radius, q, PA; the parameters
    from them as each component class declares, :class:`~bayesprof.components.Parameter`), an
    aperture flux per image, the sky on each image's border; a bulge + disk pair splits its
    galaxy's light 0.4 / 0.6.  Positions the user gave are kept and each source is measured on
    its territory (:func:`territories`).

    ``members``: per source, the names of the images it is in; ``boxes``: ``{(source, image):
    window box}``; ``pixel_map(image)``: the image's :class:`~bayesprof.PixelMap` at the scene's
    reference.  Returns ``(estimates, knots)``: per source a dict of values (per image for fluxes
    and skies) and per spline source its knots (arcsec, declared or chosen here)."""
    inits = scene._inits
    residual = {im.name: im.data.copy() for im in scene.images}
    est = {}
    finest = min(im.pixel_scale for im in scene.images)
    territory = _territories(scene, members, pixel_map)
    knots_of = {}
    bulges = {b: d for b, d in scene._bulge_disks.values()}
    disk_starts = {}  # a disk's estimate, split from its galaxy's (estimated as its bulge)
    for s in scene.sources:
        ims = [scene.images[n] for n in members[s.name]]
        e = {}
        if s.name in disk_starts:
            user = {p: inits[f"{s.name}.{p}"] for p in s.params if f"{s.name}.{p}" in inits}
            est[s.name] = {**disk_starts.pop(s.name), **{k: v for k, v in user.items() if k != "flux"}}
            continue
        if s.kind.is_nuisance():
            est[s.name] = {p: s.kind.parameter(p).initial({}, p) for p in s.params}
            continue
        if s.kind.is_sky:  # the level from the image border, the other parameters as declared
            for im in ims:
                level, sig = background(residual[im.name], im.mask, im.variance)
                e[im.name] = {**{p: s.kind.parameter(p).initial({"level": level}, p) for p in s.params},
                              "_sigma": sig}
            est[s.name] = e
            continue
        user = {p: inits[f"{s.name}.{p}"] for p in s.params if f"{s.name}.{p}" in inits}
        ref_im = min(ims, key=lambda im: im.pixel_scale)
        pm = pixel_map(ref_im)
        position = None
        if "xi" in user and "eta" in user:
            x, y = pm(float(user["xi"]), float(user["eta"]))
            position = (float(x), float(y))
            inside = [im.name for im in ims if im.overlaps(scene.images.reference, float(user["xi"]),
                                                            float(user["eta"]))]
            if not inside:
                raise ValueError(f"source {s.name!r} at (xi, eta) = ({float(user['xi']):g}, "
                                 f"{float(user['eta']):g}) arcsec lies outside every one of its images "
                                 f"{[im.name for im in ims]}")
        box = boxes.get((s.name, ref_im.name))
        g = estimate_source(residual[ref_im.name], ref_im.mask, ref_im.variance, position=position, box=box,
                            territory=territory(s.name, ref_im))
        sky = ref_im.pixel_to_sky(g.x, g.y)
        xi, eta = (float(v) for v in tangent_plane_offsets(sky, scene.images.reference))
        J = np.asarray(pm.jacobian(xi, eta))  # d(x,y)/d(xi,eta)
        th = np.radians(g.theta)
        major_sky = np.linalg.solve(J, [np.cos(th), np.sin(th)])
        pa = float(np.degrees(np.arctan2(major_sky[0], major_sky[1])) % 180.0)
        re = g.re_px * ref_im.pixel_scale
        radius_arcsec = g.radius_px * ref_im.pixel_scale
        xi, eta = float(user.get("xi", xi)), float(user.get("eta", eta))
        moments = {"xi": xi, "eta": eta, "re": re, "q": g.q, "pa": pa, "finest": finest}
        if hasattr(s.kind, "default_knots"):
            knots = s.knots or s.kind.default_knots(re, finest)
            knots_of[s.name] = tuple(float(k) for k in knots)  # the declaration stays as written
            moments["knots"] = knots
        # the moments (re for the rough model below), then each parameter as its class declares
        e = {"xi": xi, "eta": eta, "re": re, "q": g.q, "pa": pa, "_pos_scale": max(2.0 * re, 3.0 * finest)}
        e.update({p: s.kind.parameter(p).initial(moments, p) for p in s.params if p != "flux"})
        fluxes, apertures = {}, {}
        for im in ims:
            pmk = pixel_map(im)
            xk, yk = (float(v) for v in pmk(xi, eta))
            psf_r = float(im.psf.radius(im.pixel_scale, 0.9))
            rad = max(radius_arcsec / im.pixel_scale, 2.0 * psf_r, 2.0)
            c, c_err = aperture_flux(residual[im.name], im.mask, im.variance, xk, yk, rad,
                                     territory=territory(s.name, im))
            _, sig = background(residual[im.name], im.mask, im.variance)
            floor = 3 * sig * np.sqrt(np.pi) * max(psf_r, 1.0)
            per_ujy = float(flux_to_counts(1.0, im.zeropoint))
            fluxes[im.name] = max(c, floor) / per_ujy
            apertures[im.name] = (c / per_ujy, c_err / per_ujy)  # uJy, either sign, and its error
        e["flux"] = fluxes
        e["_aperture"] = apertures
        e.update({k: v for k, v in user.items() if k != "flux"})
        est[s.name] = e
        # subtract a rough (Gaussian, PSF-broadened) model of it before estimating the next source
        for im in ims:
            residual[im.name] = residual[im.name] - _gaussian_blob(im, pixel_map(im), e, fluxes[im.name])
        if s.name in bulges:  # the whole galaxy: 0.4 of its light to the bulge, 0.6 to the disk
            whole = dict(e)
            sizes = [k for k in ("re", "fwhm") if k in whole]
            disk_starts[bulges[s.name]] = {**whole, **{k: 1.5 * whole[k] for k in sizes},
                                           "n": 1.0, "flux": {k: 0.6 * v for k, v in fluxes.items()}}
            e.update({**{k: 0.5 * whole[k] for k in sizes}, "n": 3.0,
                      "flux": {k: 0.4 * v for k, v in fluxes.items()}})
            e.update({k: v for k, v in user.items() if k != "flux"})
    return est, knots_of


def _gaussian_blob(im, pm, e, flux):
    """A rough model (counts/pixel) of an estimated source: elliptical Gaussian of the same half-light
    radius, q and PA, broadened by the PSF; used only to estimate the next source on the residual.
    ``pm``: the image's pixel map."""
    x0, y0 = (float(v) for v in pm(float(e["xi"]), float(e["eta"])))
    J = np.asarray(pm.jacobian(float(e["xi"]), float(e["eta"])))
    sig_major = e["re"] / 1.1774  # arcsec; a Gaussian's half-light radius is 1.1774 sigma
    pa = np.radians(e["pa"])
    axes = np.array([[np.sin(pa), np.cos(pa)], [np.cos(pa), -np.sin(pa)]]).T  # columns: major, minor (xi, eta)
    cov_sky = axes @ np.diag([sig_major**2, (e["q"] * sig_major) ** 2]) @ axes.T
    psf_sigma = float(im.psf.radius(im.pixel_scale, 0.5)) / 1.1774  # pixels
    cov = J @ cov_sky @ J.T + (psf_sigma**2 + 1.0 / 12) * np.eye(2)
    yy, xx = np.indices(im.shape)
    d = np.stack([xx - x0, yy - y0], -1)
    chi2 = np.einsum("...i,ij,...j->...", d, np.linalg.inv(cov), d)
    counts = flux * float(flux_to_counts(1.0, im.zeropoint))
    return counts * np.exp(-0.5 * chi2) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))
