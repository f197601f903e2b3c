"""Many sources at once: detection, source lists, and noise from the background.

Workflow for images without a segmentation map, a source list or a noise map::

    sigma = estimate_noise(data)                          # constant noise from the background
    image = bp.Image(data, sigma=sigma, wcs=wcs, psf=psf)
    segmap = segment(image)                               # 0 = sky, 1..N = sources
    sources = sources_from_segmentation(image, segmap, reference=images.reference)
    add_sources(scene, sources, bp.Sersic)                # one source per entry, windows per image

Conventions as everywhere in bayesprof: arrays ``data[y, x]``, 0-indexed pixels (astropy),
sky positions through each image's WCS (``pixel_to_world`` / ``world_to_pixel``), position
angles in degrees east of north, radii in arcsec (semi-major half-light radius), fluxes in
microjansky through the image's AB zeropoint.

**Noise** (:func:`estimate_noise`): the standard deviation of the background pixels,
``1.4826 x MAD`` about the median, sigma-clipped at 3 sigma until stable, after removing a
least-squares plane (a sky gradient would otherwise inflate it).  Source pixels are left out
(the segmentation map, dilated by 2 pixels; without one :func:`segment` finds them).  It is a constant *background* noise: the Poisson noise of the sources is
neglected, which is right for faint sources on a bright sky (or sky-dominated coadds) and
underestimates the noise on bright sources.  Pixel-to-pixel correlations (resampled coadds)
are not removed: the value is the marginal per-pixel sigma.

**Detection** (:func:`segment`, by photutils): the background-subtracted image is smoothed by
a Gaussian (default: FWHM of the image's PSF, at least 2 pixels); pixels whose smoothed signal
exceeds ``threshold`` (default 3) times the noise *of the smoothed image* (its clipped MAD, so
that correlated noise is accounted for) are connected (8-connectivity) into segments of at least
``min_area`` (default 10) pixels (``photutils.segmentation.detect_sources``).  Segments with
several peaks are split (``deblend``, ``photutils.segmentation.deblend_sources``): the segment
is re-thresholded at ``nlevels`` (32) exponentially spaced levels, and a child is kept where it
holds at least ``contrast`` (0.001) of the segment's flux and ``min_area`` pixels; the pixels
between children go to them by a watershed.

**Measurement** (:func:`sources_from_segmentation`): each segment is measured by
:func:`bayesprof.estimate.estimate_source` on the image with the other segments masked, inside
the segment's bounding box: centroid, curve-of-growth flux, half-light radius, axis ratio and
orientation from second moments; the orientation goes to a PA east of north through the WCS.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from astropy.stats import sigma_clipped_stats
from scipy import ndimage

from .estimate import background, estimate_source
from .image import Image, tangent_plane_offsets
from .profiles import flux_to_counts

__all__ = ["CatalogSource", "SourceList", "estimate_noise", "noise_autocorrelation", "noise_correlation_factor",
           "neighbour_mask", "segment", "sources_from_segmentation",
           "sources_from_table", "add_sources"]



# ---------------------------------------------------------------------------- noise
def _clipped_sigma(values, nsigma=3.0, maxiters=10):
    """(median, sigma) of values: 1.4826 MAD about the median, clipped at nsigma until stable
    (astropy's ``sigma_clipped_stats`` with ``stdfunc="mad_std"``)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 5:
        raise ValueError(f"estimate_noise: only {v.size} background pixels to estimate the noise from")
    _, med, sig = sigma_clipped_stats(v, sigma=nsigma, maxiters=maxiters, stdfunc="mad_std")
    return float(med), float(sig)


def neighbour_mask(segmap, keep) -> np.ndarray:
    """True on pixels that a segmentation map gives to another object than the one kept.

    ``keep``: the object's ID (int) or a pixel ``(x, y)`` (0-indexed) inside it; 0 is sky and is
    never masked."""
    seg = np.rint(np.asarray(segmap, dtype=float)).astype(np.int64)
    if isinstance(keep, (int, np.integer)) and not isinstance(keep, bool):
        own = int(keep)
    else:
        x, y = (int(v) for v in keep)
        if not (0 <= x < seg.shape[1] and 0 <= y < seg.shape[0]):
            raise ValueError(f"neighbour_mask: pixel ({x}, {y}) lies outside the map ({seg.shape[1]} x {seg.shape[0]})")
        own = seg[y, x]
    return (seg != 0) & (seg != own)


def _plane_residual(data, use):
    """data minus the least-squares plane fitted to the pixels ``use``."""
    yy, xx = np.indices(data.shape, dtype=float)
    A = np.stack([np.ones(use.sum()), xx[use], yy[use]], 1)
    coef, *_ = np.linalg.lstsq(A, data[use], rcond=None)
    return data - (coef[0] + coef[1] * xx + coef[2] * yy)


def _data_mask(image, mask=None):
    if isinstance(image, Image):
        data, bad = image.data, image.mask.copy()
    else:
        data = np.asarray(image, dtype=float)
        if data.ndim != 2:
            raise ValueError(f"expected a 2-D image, got shape {data.shape}")
        bad = ~np.isfinite(data)
    if mask is not None:
        bad |= np.asarray(mask, bool)
    return np.where(bad, np.nan, data), bad


def _background(image, segmap, mask, dilate, caller):
    """(data with NaN where bad, usable pixels, background pixels: usable and outside the
    sources ``segmap > 0`` dilated by ``dilate``; :func:`segment` finds them without a map)."""
    data, bad = _data_mask(image, mask)
    use = ~bad
    if segmap is None:
        segmap = segment(np.where(use, data, np.nan), deblend=False)
    seg = np.asarray(segmap) > 0
    if seg.shape != data.shape:
        raise ValueError(f"{caller}: segmap shape {seg.shape} differs from the image's {data.shape}")
    if dilate:
        seg = ndimage.binary_dilation(seg, iterations=int(dilate))
    return data, use, use & ~seg


def estimate_noise(image, segmap=None, *, mask=None, nsigma=3.0, dilate=2, plane=True) -> float:
    """Constant background noise sigma of an image (or 2-D array) from pixels outside sources.

    ``sigma = 1.4826 * MAD`` of the unmasked pixels outside the sources, about their median,
    clipped at ``nsigma`` until stable; a least-squares plane (``plane=True``) is removed first
    so that a sky gradient does not inflate it.  Sources: ``segmap > 0`` dilated by ``dilate``
    pixels; without a segmentation map, :func:`segment` finds them.  Non-finite pixels and ``mask`` are ignored.

    The result is the noise of the background only: the sources' own Poisson noise is
    neglected.  Pass it as ``Image(data, sigma=estimate_noise(data), ...)``.
    """
    data, use, sky = _background(image, segmap, mask, dilate, "estimate_noise")
    if sky.sum() < 25:
        sky = use
    resid = _plane_residual(np.where(use, data, 0.0), sky) if plane else data
    return _clipped_sigma(resid[sky], nsigma)[1]


def noise_autocorrelation(image, segmap=None, *, mask=None, max_lag=3, dilate=2, nsigma=5.0) -> np.ndarray:
    """Autocorrelation rho(dy, dx) of an image's background noise, for ``|dx|, |dy| <= max_lag``.

    Returns an array of shape (2 max_lag + 1, 2 max_lag + 1), ``rho[max_lag + dy, max_lag + dx]``,
    with rho(0, 0) = 1.  Measured on unmasked pixels outside the sources (``segmap > 0``
    dilated by ``dilate`` pixels; without a map, :func:`segment` finds them), after removing
    a least-squares plane, divided by the image's own sigma map when ``image`` is an
    :class:`~bayesprof.Image`, and with pixels beyond ``nsigma`` clipped.
    """
    data, use, sky = _background(image, segmap, mask, dilate, "noise_autocorrelation")
    lag = int(max_lag)
    if lag < 1 or sky.sum() < 100 * (2 * lag + 1) ** 2 // 4:
        raise ValueError(f"noise_autocorrelation: {int(sky.sum())} background pixels are too few for "
                         f"max_lag={max_lag} (or max_lag < 1)")
    z = _plane_residual(np.where(use, data, 0.0), sky)
    if isinstance(image, Image):
        z = z / np.sqrt(np.where(use, image.variance, 1.0))
    med, sig = _clipped_sigma(z[sky], 3.0)
    sky &= np.abs(z - med) < nsigma * sig
    z = np.where(sky, z - z[sky].mean(), 0.0)
    w = sky.astype(float)
    ny, nx = z.shape

    def covariance(dx, dy):
        a = (slice(max(dy, 0), ny + min(dy, 0)), slice(max(dx, 0), nx + min(dx, 0)))
        b = (slice(max(-dy, 0), ny + min(-dy, 0)), slice(max(-dx, 0), nx + min(-dx, 0)))
        return (z[a] * z[b]).sum() / max((w[a] * w[b]).sum(), 1.0)

    lags = range(-lag, lag + 1)
    cov = np.array([[covariance(dx, dy) for dx in lags] for dy in lags])
    return cov / cov[lag, lag]


def noise_correlation_factor(image, segmap=None, **kwargs) -> float:
    """How much pixel-to-pixel noise correlation inflates the variance of fitted parameters.

    Resampled coadds (KiDS, SDSS, HSC, most survey stacks) have noise that is correlated
    between neighbouring pixels, while the likelihood treats pixels as independent.  For a
    quantity that averages many pixels over scales larger than the correlation length
    (fluxes, sizes, shapes of resolved sources), the true variance is the independent-pixel
    variance times

        F = sum over lags (dx, dy) of rho(dx, dy),   abs(dx), abs(dy) <= max_lag,

    where rho is :func:`noise_autocorrelation` (same arguments; ``max_lag`` 3 by default).
    White noise gives F = 1; noise smoothed by a 2x2 box gives F = 4.  To use it: multiply
    the image's variance by F (or the sigmas of a fit to that image alone by sqrt(F)).
    Choose ``max_lag`` to cover the resampling kernel (2-3 pixels): larger lags also pick
    up faint source light and sky structure.  (A chi^2 over N correlated pixels scatters by
    sqrt(2 sum(rho^2) / N), with the squares of the same rho.)
    """
    return float(noise_autocorrelation(image, segmap, **kwargs).sum())


# ---------------------------------------------------------------------------- detection
def _psf_fwhm_px(image):
    """FWHM (image pixels) of an image's PSF: from the area above half maximum for a pixelized
    PSF, else its half-light diameter; None without a PSF."""
    psf = getattr(image, "psf", None)
    if psf is None:
        return None
    stamp = getattr(psf, "image", None)
    if stamp is not None:
        step = float(psf._step(image.pixel_scale)) if hasattr(psf, "_step") else 1.0
        return 2.0 * math.sqrt(np.count_nonzero(stamp >= 0.5 * stamp.max()) / math.pi) * step
    try:
        return 2.0 * float(psf.radius(image.pixel_scale, 0.5))
    except Exception:  # noqa: BLE001 - a PSF without a radius: fall back to the default
        return None


def segment(image, *, threshold=3.0, smooth_fwhm=None, min_area=10, deblend=True, contrast=0.001, nlevels=32,
            mask=None) -> np.ndarray:
    """Segmentation map (int array, 0 = background, 1..N = sources) of an Image or 2-D array,
    by photutils (``detect_sources``, ``deblend_sources``) on the smoothed S/N image.

    threshold : float
        Detection threshold in units of the smoothed image's noise (default 3).
    smooth_fwhm : float, optional
        FWHM (pixels) of the Gaussian smoothing kernel; default the PSF's FWHM (an Image with a
        PSF), at least 2 pixels.
    min_area : int
        Smallest segment kept (and smallest deblended child), in pixels (default 10).
    deblend, contrast, nlevels
        Split segments with several peaks: photutils' multi-threshold deblending over
        ``nlevels`` exponentially spaced levels, a child kept when it holds at least
        ``contrast`` of its parent's flux (see the module docstring).
    mask : bool array, optional
        Pixels to ignore (besides an Image's own mask and non-finite values).

    Labels are ordered by decreasing peak smoothed signal (1 = brightest).
    """
    from photutils.segmentation import deblend_sources, detect_sources
    from photutils.utils.exceptions import NoDetectionsWarning

    data, bad = _data_mask(image, mask)
    fwhm = smooth_fwhm if smooth_fwhm is not None else max(_psf_fwhm_px(image) or 0.0, 2.0)
    s = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    resid = _plane_residual(np.where(bad, 0.0, data), ~bad)
    level, _ = _clipped_sigma(resid[~bad])
    img = np.where(bad, 0.0, resid - level)
    smooth = ndimage.gaussian_filter(img, s, mode="constant")
    weight = ndimage.gaussian_filter((~bad).astype(float), s, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = np.where(weight > 0.2, smooth / np.maximum(weight, 1e-12), 0.0)
    # the noise of the smoothed image, measured on it (correct for correlated noise too)
    _, noise_s = _clipped_sigma(smooth[(weight > 0.2) & ~bad])
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = smooth / noise_s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)  # nothing found: an empty map
        seg = detect_sources(snr, threshold, n_pixels=int(min_area), connectivity=8, mask=bad)
    if seg is None:
        return np.zeros(data.shape, int)
    if deblend and seg.n_labels:
        seg = deblend_sources(snr, seg, n_pixels=int(min_area), n_levels=int(nlevels), contrast=float(contrast),
                              mode="exponential", connectivity=8)
    labels = np.asarray(seg.data)
    # relabel 1..N by decreasing peak S/N
    ids = np.unique(labels[labels != 0])
    if ids.size == 0:
        return np.zeros(data.shape, int)
    peaks = ndimage.maximum(snr, labels, index=ids)
    lut = np.zeros(int(labels.max()) + 1, int)
    lut[ids[np.argsort(-np.asarray(peaks))]] = np.arange(1, ids.size + 1)
    return lut[labels]


# ---------------------------------------------------------------------------- source lists
@dataclass
class CatalogSource:
    """One entry of a source list.

    ``ra``, ``dec`` (deg, ICRS) and, with a reference, ``xi``, ``eta`` (arcsec east/north of
    it); ``x``, ``y`` (0-indexed pixels of the measuring image); ``flux`` (microjansky, through
    the image's zeropoint) and ``counts`` (data units); ``re`` (semi-major half-light radius,
    arcsec), ``q`` (b/a), ``pa`` (deg east of north); ``box`` (x0, x1, y0, y1), the pixel
    footprint in the measuring image (half-open); ``extent`` (dxi_min, dxi_max, deta_min,
    deta_max), the footprint on the sky in arcsec about the source's own position; ``area``
    (pixels of the segment), ``snr`` (flux / its background noise).  Unknown values are NaN.
    ``point``: the source is unresolved and is fitted as a :class:`~bayesprof.PointSource`
    (by :func:`add_sources` and :func:`bayesprof.fit_catalog`); see :func:`mark_point_sources`.
    """

    id: int | str
    ra: float
    dec: float
    xi: float = float("nan")
    eta: float = float("nan")
    x: float = float("nan")
    y: float = float("nan")
    flux: float = float("nan")
    counts: float = float("nan")
    re: float = float("nan")
    q: float = float("nan")
    pa: float = float("nan")
    box: tuple | None = None
    extent: tuple = (float("nan"),) * 4
    area: int = 0
    snr: float = float("nan")
    point: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def coord(self):
        from astropy.coordinates import SkyCoord
        import astropy.units as u

        return SkyCoord(self.ra * u.deg, self.dec * u.deg, frame="icrs")


class SourceList(list):
    """A list of :class:`CatalogSource` with :meth:`table` (an astropy Table) and :meth:`select`."""

    def table(self):
        from astropy.table import Table

        rows = []
        for s in self:
            d = asdict(s)
            d.pop("extra")
            d["box"] = tuple(d["box"]) if d["box"] is not None else (-1, -1, -1, -1)
            rows.append(d)
        return Table(rows=rows) if rows else Table()

    def select(self, keep) -> "SourceList":
        """The entries for which ``keep(source)`` is true."""
        return SourceList(s for s in self if keep(s))

    def __getitem__(self, k):
        out = super().__getitem__(k)
        return SourceList(out) if isinstance(k, slice) else out


def _icrs(coord):
    c = coord.icrs
    return float(c.ra.deg), float(c.dec.deg)


def _pa_from_theta(image, x, y, theta_deg):
    """PA (deg east of north) of the pixel direction ``theta`` (deg from +x towards +y) at (x, y)."""
    th = math.radians(theta_deg)
    c0 = image.pixel_to_sky(x, y)
    c1 = image.pixel_to_sky(x + 0.5 * math.cos(th), y + 0.5 * math.sin(th))
    c2 = image.pixel_to_sky(x - 0.5 * math.cos(th), y - 0.5 * math.sin(th))
    dxi1, deta1 = (float(v) for v in tangent_plane_offsets(c1, c0))
    dxi2, deta2 = (float(v) for v in tangent_plane_offsets(c2, c0))
    return float(np.degrees(np.arctan2(dxi1 - dxi2, deta1 - deta2)) % 180.0)


def _extent(image, box, centre):
    x0, x1, y0, y1 = box
    xs = np.array([x0 - 0.5, x1 - 0.5, x0 - 0.5, x1 - 0.5])
    ys = np.array([y0 - 0.5, y0 - 0.5, y1 - 0.5, y1 - 0.5])
    xi, eta = tangent_plane_offsets(image.pixel_to_sky(xs, ys), centre)
    xi, eta = np.asarray(xi, float), np.asarray(eta, float)
    return (float(xi.min()), float(xi.max()), float(eta.min()), float(eta.max()))


#: pixels kept about a measured box: the 1.5 px smoothing of estimate_source reaches 6 px
_MEASURE_MARGIN = 8


def _measure(image, data, mask, variance, box, position=None, sky=None, segment=None):
    """estimate_source inside ``box`` and the derived sky quantities; with ``segment`` =
    ``(segmentation map, label)`` the other segments are masked too.

    Everything estimate_source measures lies inside the box (or within 3 px of ``position``,
    inside it), so it runs on the box plus a margin cut from the frame, with the frame's ``sky``
    (:func:`~bayesprof.estimate.background` of ``data``, measured once per frame by the
    caller): the cost per source does not grow with the frame, so a frame's sources cost
    linearly in their number."""
    sky = background(data, mask, variance) if sky is None else sky
    x0, x1, y0, y1 = box
    ny, nx = data.shape
    cx0, cx1 = max(x0 - _MEASURE_MARGIN, 0), min(x1 + _MEASURE_MARGIN, nx)
    cy0, cy1 = max(y0 - _MEASURE_MARGIN, 0), min(y1 + _MEASURE_MARGIN, ny)
    cut = (slice(cy0, cy1), slice(cx0, cx1))
    mask = mask[cut] if segment is None else mask[cut] | ((segment[0][cut] > 0) & (segment[0][cut] != segment[1]))
    g = estimate_source(data[cut], mask, variance[cut], box=(x0 - cx0, x1 - cx0, y0 - cy0, y1 - cy0), sky=sky,
                        position=None if position is None else (position[0] - cx0, position[1] - cy0))
    g.x, g.y = g.x + cx0, g.y + cy0
    centre = image.pixel_to_sky(g.x, g.y)
    pa = _pa_from_theta(image, g.x, g.y, g.theta)
    per_count = float(flux_to_counts(1.0, image.zeropoint))
    sig = sky[1]
    noise = sig * math.sqrt(math.pi) * max(g.radius_px, 1.0)  # background noise in the flux aperture
    return dict(x=g.x, y=g.y, centre=centre, counts=g.counts, flux=g.counts / per_count,
                re=g.re_px * image.pixel_scale, q=g.q, pa=pa, snr=g.counts / noise, radius_px=g.radius_px)


def _offsets(coord, reference):
    if reference is None:
        return float("nan"), float("nan")
    xi, eta = tangent_plane_offsets(coord, reference)
    return float(xi), float(eta)


def _reference(reference):
    if reference is None:
        return None
    if hasattr(reference, "images"):  # a Scene
        return reference.images.reference
    if hasattr(reference, "reference") and not hasattr(reference, "ra"):  # an ImageList
        return reference.reference
    return reference


def sources_from_segmentation(image, segmap, *, reference=None, pad=3) -> SourceList:
    """A :class:`SourceList` from a segmentation map of ``image`` (an :class:`~bayesprof.Image`).

    Each segment (label > 0, in increasing label order) is measured with
    :func:`bayesprof.estimate.estimate_source` on the image with every other segment masked,
    inside the segment's bounding box widened by ``pad`` pixels, above the frame's sky level
    (the median of its border between the segments).  ``reference`` (SkyCoord,
    ImageList or Scene) adds the (xi, eta) offsets of the scene's frame.
    """
    if not isinstance(image, Image):
        raise TypeError("sources_from_segmentation needs a bayesprof Image (with its WCS and zeropoint)")
    seg = np.asarray(segmap)
    if seg.shape != image.shape:
        raise ValueError(f"segmap shape {seg.shape} differs from the image's {image.shape}")
    reference = _reference(reference)
    out = SourceList()
    labels = np.clip(seg, 0, None).astype(int)
    slices = ndimage.find_objects(labels)
    sky = background(image.data, image.mask | (labels > 0), image.variance)  # the frame's, between the segments
    for lab, sl in enumerate(slices, start=1):
        if sl is None:
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        box = (max(x0 - pad, 0), min(x1 + pad, image.nx), max(y0 - pad, 0), min(y1 + pad, image.ny))
        m = _measure(image, image.data, image.mask, image.variance, box, sky=sky, segment=(labels, lab))
        ra, dec = _icrs(m["centre"])
        xi, eta = _offsets(m["centre"], reference)
        out.append(CatalogSource(
            id=int(lab), ra=ra, dec=dec, xi=xi, eta=eta, x=m["x"], y=m["y"], flux=m["flux"], counts=m["counts"],
            re=m["re"], q=m["q"], pa=m["pa"], box=(int(x0), int(x1), int(y0), int(y1)),
            extent=_extent(image, (x0, x1, y0, y1), m["centre"]), area=int(np.count_nonzero(seg[sl] == lab)),
            snr=m["snr"]))
    return out


def _column(table, name, n):
    if name is None:
        return None
    try:
        col = table[name]
    except (KeyError, ValueError, IndexError):
        return None
    col = np.asarray(getattr(col, "value", col), dtype=float)
    if col.shape != (n,):
        raise ValueError(f"sources_from_table: column {name!r} has shape {col.shape}, expected ({n},)")
    return col


def sources_from_table(table, *, ra="ra", dec="dec", id="id", flux="flux", re="re", q="q", pa="pa",
                       radius="radius", point="point", image=None, reference=None, default_radius=1.0) -> SourceList:
    """A :class:`SourceList` from a user catalogue of sky positions.

    table : astropy Table, dict of arrays, structured array or DataFrame
        Column ``ra`` and ``dec`` in degrees (ICRS) are required; ``id``, ``flux`` (microjansky),
        ``re`` (arcsec), ``q``, ``pa`` (deg east of north) and ``radius`` (arcsec, the half-size of
        the footprint) are optional (give None or a missing name to skip one), and so is
        ``point`` (true for an unresolved source, fitted as a :class:`~bayesprof.PointSource`;
        booleans, or numbers where non-zero is true).  Numeric ids that
        are all integers stay integers; any others (names such as ``"007"``) are kept as
        strings; without an id column, 1, 2, ...
    image : Image, optional
        Measure the quantities the table lacks on this image, about each position (within 3
        pixels), inside a box of half-size ``radius`` (default ``max(4 re, default_radius)``).
    reference : SkyCoord, ImageList or Scene, optional
        Adds the (xi, eta) offsets of the scene's frame.

    The footprint (``extent``) is a square of half-size ``radius`` (or ``max(4 re,
    default_radius)`` arcsec) about the position.
    """
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    reference = _reference(reference)
    ra_c = np.asarray(getattr(table[ra], "value", table[ra]), dtype=float)
    n = ra_c.size
    dec_c = _column(table, dec, n)
    cols = {k: _column(table, v, n) for k, v in (("flux", flux), ("re", re), ("q", q), ("pa", pa),
                                                  ("radius", radius))}
    points = _column(table, point, n)
    if points is not None and not np.all(np.isfinite(points)):
        raise ValueError(f"sources_from_table: column {point!r} has missing or non-finite entries; "
                         "give true/false for every source")
    ids = None
    if id is not None:
        try:
            column = list(table[id])
        except (KeyError, ValueError, IndexError):
            column = None
        if column is not None:  # numbers that are integers stay integers; anything else (names) strings
            try:
                if any(isinstance(v, (str, bytes)) for v in column):
                    raise ValueError
                ids = [int(v) for v in column]
                if any(float(v) != i for v, i in zip(column, ids)):
                    raise ValueError
            except (ValueError, TypeError):
                ids = [v.decode() if isinstance(v, bytes) else str(v) for v in column]
    out = SourceList()
    sky = background(image.data, image.mask, image.variance) if image is not None else None
    for k in range(n):
        coord = SkyCoord(ra_c[k] * u.deg, dec_c[k] * u.deg, frame="icrs")
        val = {p: (float(c[k]) if c is not None else float("nan")) for p, c in cols.items()}
        x = y = counts = snr = float("nan")
        box = None
        if image is not None:
            x, y = (float(v) for v in image.sky_to_pixel(coord))
            half_as = val["radius"] if np.isfinite(val["radius"]) else max(
                4 * val["re"] if np.isfinite(val["re"]) else 0.0, default_radius)
            h = max(int(math.ceil(half_as / image.pixel_scale)), 3)
            xi0, yi0 = int(round(x)), int(round(y))
            box = (max(xi0 - h, 0), min(xi0 + h + 1, image.nx), max(yi0 - h, 0), min(yi0 + h + 1, image.ny))
            if box[1] <= box[0] or box[3] <= box[2]:
                raise ValueError(f"sources_from_table: source {k} at RA {ra_c[k]:.6f}, Dec {dec_c[k]:.6f} lies "
                                 f"outside the image {image.name!r}")
            m = _measure(image, image.data, image.mask, image.variance, box, position=(x, y), sky=sky)
            counts, snr = m["counts"], m["snr"]
            for p in ("flux", "re", "q", "pa"):
                if not np.isfinite(val[p]):
                    val[p] = m[p]
        if not np.isfinite(val["radius"]):
            val["radius"] = max(4 * val["re"], default_radius) if np.isfinite(val["re"]) else default_radius
        r = val["radius"]
        xi, eta = _offsets(coord, reference)
        out.append(CatalogSource(
            id=ids[k] if ids is not None else k + 1, ra=float(ra_c[k]), dec=float(dec_c[k]), xi=xi, eta=eta, x=x,
            y=y, flux=val["flux"], counts=counts, re=val["re"], q=val["q"], pa=val["pa"], box=box,
            extent=(-r, r, -r, r), snr=snr, point=bool(points[k]) if points is not None else False))
    return out


#: :func:`mark_point_sources`: a source is unresolved when its measured half-light radius is
#: at most this multiple of a point source's, measured the same way in the same image (the
#: COSMOS HSC field, r band: its star 0.87, its galaxies 1.34-2.1)
POINT_SIZE_RATIO = 1.15

#: :func:`mark_point_sources`: below this S/N a source is not classified (it stays extended):
#: its measured size scatters by more than the ratio's margin
POINT_MIN_SNR = 20.0


def sharpest_image(images):
    """The image whose PSF has the smallest FWHM on the sky (arcsec); images without a PSF are
    skipped (ValueError when none has one)."""
    sized = [(fwhm * im.pixel_scale, k) for k, im in enumerate(images) if (fwhm := _psf_fwhm_px(im))]
    if not sized:
        raise ValueError("no image has a PSF")
    return images[min(sized)[1]]


def _point_source_size(image, half):
    """Half-light radius (arcsec) that :func:`estimate_source` measures for a noise-free point
    source through ``image``'s PSF, centred in a ``(2 half + 1)``-pixel box."""
    from .components import PointSource
    from .render import Renderer

    n = 2 * half + 1 + 2 * _MEASURE_MARGIN
    blank = Image(np.zeros((n, n)), variance=np.ones((n, n)), pixel_scale=image.pixel_scale, psf=image.psf,
                  zeropoint=image.zeropoint)
    stamp = np.asarray(Renderer(blank)(PointSource(flux=1.0)))
    c = n // 2
    g = estimate_source(stamp, np.zeros(stamp.shape, bool), np.ones(stamp.shape), sky=(0.0, 1e-12),
                        box=(c - half, c + half + 1, c - half, c + half + 1), position=(c, c))
    return g.re_px * image.pixel_scale


def mark_point_sources(sources, image, *, size_ratio=POINT_SIZE_RATIO, min_snr=POINT_MIN_SNR, radius=None):
    """The source list with ``point`` set for the unresolved sources: a size test (star/galaxy
    separation by size, as in SDSS and HSC) in one image, ideally the sharpest
    (:func:`sharpest_image`).

    Each source's half-light radius is measured (:func:`~bayesprof.estimate.estimate_source`,
    about its position, every source in a square box of the same half-size ``radius``, arcsec;
    default ``max(2 x PSF FWHM, 1")``) and compared with what the same measurement gives for a
    noise-free point source through the image's PSF: a source with S/N >= ``min_snr`` whose
    size is at most ``size_ratio`` times the point source's is marked ``point=True``; the
    others keep their own ``point`` (fainter sources cannot be told apart and stay extended).
    Returns a new :class:`SourceList`; ``sources`` is not changed.
    """
    from dataclasses import replace

    fwhm_px = _psf_fwhm_px(image)
    if not fwhm_px:
        raise ValueError(f"mark_point_sources: image {image.name!r} has no PSF, or one without a size")
    fwhm = fwhm_px * image.pixel_scale
    radius = max(2.0 * fwhm, 1.0) if radius is None else float(radius)
    half = max(int(math.ceil(radius / image.pixel_scale)), 3)
    reference = _point_source_size(image, half)
    sky = background(image.data, image.mask, image.variance)
    out = SourceList()
    for s in sources:
        x, y = (float(v) for v in image.sky_to_pixel(s.coord))
        xi0, yi0 = int(round(x)), int(round(y))
        box = (max(xi0 - half, 0), min(xi0 + half + 1, image.nx), max(yi0 - half, 0), min(yi0 + half + 1, image.ny))
        point = s.point
        if box[1] - box[0] > 2 and box[3] - box[2] > 2:
            try:
                m = _measure(image, image.data, image.mask, image.variance, box, position=(x, y), sky=sky)
            except ValueError:  # every pixel masked: nothing to measure
                m = None
            if m is not None and m["snr"] >= min_snr and m["re"] <= size_ratio * reference:
                point = True
        out.append(replace(s, point=bool(point)))
    return out


# ---------------------------------------------------------------------------- scenes
def add_sources(scene, sources, kind=None, *, name="src{id}", vary=None, window_pad=1.0,
                init=("xi", "eta", "re", "q", "pa"), images=None, common_window=(), bulge_disk=(),
                bulge_disk_vary=None) -> list:
    """Add one source per entry of ``sources`` to ``scene``; returns the declared sources.

    kind : component class
        Default :class:`~bayesprof.Sersic`; sources marked ``point`` (:class:`CatalogSource`,
        :func:`mark_point_sources`) are :class:`~bayesprof.PointSource` whatever ``kind``, with
        the rules of ``vary`` for their parameters (position, flux).
    name : str
        Format string for each source's name, with the fields of :class:`CatalogSource`
        (default ``"src{id}"``).
    vary : dict, optional
        Sharing rules, as in :meth:`Scene.add` (default: structure shared, flux per band).
    window_pad : float
        Each source gets a :class:`~bayesprof.SkyWindow` in every image: its footprint
        (``extent``) about its position, widened by ``window_pad`` arcsec on every side.
        Images the window does not overlap are left out of the source.  None: no windows.
    init : sequence of str
        Parameters whose initial values come from the list (when the kind has them and the
        value is finite); the others (e.g. flux per band) are estimated from the images.
        Positions are the list's sky positions in the scene's frame.
    images : list of image names, optional
        Limit the sources to these images.
    common_window : list of image names
        In these images every source gets the same window, the box enclosing all their
        windows: one renderer per image instead of one per source (faster to build and
        compile; use it for coarse images where the sources' windows overlap anyway).
    bulge_disk : collection of source ids
        These sources become a bulge + disk (:meth:`Scene.add_bulge_disk`, default profiles),
        named as the others, with the same windows and starting centre; their entry in the
        returned list is the pair ``(bulge, disk)``.
    bulge_disk_vary : dict, optional
        The sharing rules of both components of those (default: ``vary``).
    """
    from . import components as comps
    from .scene import SkyWindow

    kind = comps.Sersic if kind is None else kind
    reference = scene.images.reference
    names = list(images) if images is not None else list(scene.images.names)
    declared, sources = [], list(sources)
    both = [s.id for s in sources if s.point and s.id in bulge_disk]
    if both:
        raise ValueError(f"add_sources: sources {both} are marked point and bulge_disk; a point source has no bulge")
    for s in sources:
        this = comps.PointSource if s.point else kind
        params = this.PARAMETERS
        xi, eta = _offsets(s.coord, reference)
        values = {"xi": xi, "eta": eta, "re": s.re, "q": s.q, "pa": s.pa, "flux": s.flux}
        if this is comps.Gaussian or this is comps.Moffat:
            values["fwhm"] = s.re * 2.0 if np.isfinite(s.re) else float("nan")
        start = {p: float(values[p]) for p in init if p in params and p in values and np.isfinite(values[p])}
        if "q" in start:
            start["q"] = float(np.clip(start["q"], 0.1, 0.95))
        if "pa" in start:
            start["pa"] = float(start["pa"] % 180.0)
        windows, members = {}, []
        for im_name in names:
            im = scene.images[im_name]
            if window_pad is None:
                if im.overlaps(reference, xi, eta):
                    members.append(im_name)
                continue
            e = s.extent if np.all(np.isfinite(s.extent)) else (-1.0, 1.0, -1.0, 1.0)
            w = SkyWindow(xi + e[0] - window_pad, xi + e[1] + window_pad,
                          eta + e[2] - window_pad, eta + e[3] + window_pad)
            x0, x1, y0, y1 = w.pixel_box(im, reference)
            if min(x1, im.nx) - max(x0, 0) < 2 or min(y1, im.ny) - max(y0, 0) < 2:
                continue
            windows[im_name] = w
            members.append(im_name)
        if not members:
            warnings.warn(f"add_sources: source {s.id} at RA {s.ra:.6f}, Dec {s.dec:.6f} falls on no image; "
                          "skipped", UserWarning, stacklevel=2)
            continue
        label = name.format(**{k: getattr(s, k) for k in ("id", "ra", "dec", "x", "y")})
        declared.append((label, this, members, windows, start, s.id in bulge_disk))
    for im_name in common_window:
        ws = [d[3][im_name] for d in declared if im_name in d[3]]
        if ws:
            union = SkyWindow(min(w.xi_min for w in ws), max(w.xi_max for w in ws),
                              min(w.eta_min for w in ws), max(w.eta_max for w in ws))
            for _, _, _, w, _, _ in declared:
                if im_name in w:
                    w[im_name] = union
    missing = set(bulge_disk) - {s.id for s in sources}
    if missing:
        raise ValueError(f"add_sources: bulge_disk names source ids {sorted(missing, key=str)} that are not in the list")
    two_vary = vary if bulge_disk_vary is None else bulge_disk_vary

    def rules(this):  # the sharing rules of the parameters ``this`` kind has
        if vary is None or this is kind:
            return vary
        return {p: rule for p, rule in vary.items() if p in this.PARAMETERS}

    return [scene.add_bulge_disk(label, vary_bulge=two_vary, vary_disk=two_vary, images=members,
                                 windows=windows or None, init={k: v for k, v in start.items() if k in ("xi", "eta")})
            if two else scene.add(label, this, vary=rules(this), images=members, windows=windows or None, init=start)
            for label, this, members, windows, start, two in declared]

