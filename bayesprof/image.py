"""Images, their noise and geometry, and collections of images of one scene.

Conventions (see :mod:`bayesprof`):

* Arrays are indexed ``data[y, x]``. Pixel coordinates are 0-indexed with the
  centre of pixel ``(0, 0)`` at ``(x, y) = (0, 0)`` (astropy's convention), so
  pixel ``(i, j)`` covers ``x`` in ``[i - 0.5, i + 0.5]`` and ``y`` in
  ``[j - 0.5, j + 0.5]``. FITS ``CRPIX`` values are 1-indexed: 0-indexed pixel
  ``p`` is FITS pixel ``p + 1``.
* Sky positions inside a scene are gnomonic (tangent-plane) offsets
  ``(xi, eta)`` in arcsec about one common reference point: ``xi`` towards east
  (+RA), ``eta`` towards north.

The classes here are:

:class:`Image`
    One image: data, variance, mask, world coordinate system (any celestial
    astropy WCS; a north-up, east-left TAN WCS is built from ``pixel_scale``
    when none is given), PSF, photometric zeropoint, band and epoch.
:class:`PixelMap`
    A smooth, JAX-traceable map from the scene's tangent-plane offsets
    ``(xi, eta)`` to one image's pixel coordinates, fitted once to astropy's
    WCS transformation and then evaluated in JAX (under ``jit``, ``grad`` and
    ``vmap``).
:class:`ImageList`
    Many images of one scene (different sizes, pixel scales, orientations,
    PSFs, bands, epochs) with unique names and a common sky reference.

Two helpers, :func:`tangent_plane_offsets` and :func:`sky_from_offsets`,
convert between sky coordinates and tangent-plane offsets with numpy.
"""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
from astropy.coordinates import SkyCoord, UnitSphericalRepresentation
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

__all__ = [
    "ARCSEC_PER_RADIAN",
    "Image",
    "ImageList",
    "PixelMap",
    "sky_from_offsets",
    "tangent_plane_offsets",
]

#: Arcseconds per radian.
ARCSEC_PER_RADIAN = 180.0 * 3600.0 / np.pi


# ---------------------------------------------------------------------------
# Tangent-plane (gnomonic) projection
# ---------------------------------------------------------------------------


def _as_scalar_skycoord(reference: Any, what: str = "reference") -> SkyCoord:
    """Return ``reference`` as a scalar SkyCoord.

    Accepts a scalar :class:`~astropy.coordinates.SkyCoord` or a pair
    ``(ra, dec)`` in degrees (ICRS).
    """
    if isinstance(reference, SkyCoord):
        coord = reference
    else:
        try:
            ra, dec = (float(v) for v in reference)
        except (TypeError, ValueError):
            raise TypeError(
                f"{what} must be a SkyCoord or an (ra, dec) pair in degrees, "
                f"not {reference!r}"
            ) from None
        coord = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    if not coord.isscalar:
        raise ValueError(f"{what} must be a single sky position, not shape {coord.shape}")
    return coord


def _unit_vectors(coord: SkyCoord) -> np.ndarray:
    """Cartesian unit vectors of ``coord``, shape ``coord.shape + (3,)``."""
    sph = coord.represent_as(UnitSphericalRepresentation)
    lon = np.asarray(sph.lon.to_value(u.rad), dtype=np.float64)
    lat = np.asarray(sph.lat.to_value(u.rad), dtype=np.float64)
    cos_lat = np.cos(lat)
    return np.stack([cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)], axis=-1)


def _tangent_basis(reference: SkyCoord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors (towards reference, east, north) at the reference point."""
    sph = reference.represent_as(UnitSphericalRepresentation)
    lon0 = float(sph.lon.to_value(u.rad))
    lat0 = float(sph.lat.to_value(u.rad))
    r0 = np.array([np.cos(lat0) * np.cos(lon0), np.cos(lat0) * np.sin(lon0), np.sin(lat0)])
    east = np.array([-np.sin(lon0), np.cos(lon0), 0.0])
    north = np.array([-np.sin(lat0) * np.cos(lon0), -np.sin(lat0) * np.sin(lon0), np.cos(lat0)])
    return r0, east, north


def tangent_plane_offsets(coord: SkyCoord, reference: SkyCoord) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic (tangent-plane) offsets of ``coord`` about ``reference``, in arcsec.

    For a point at (alpha, delta) and a reference at (alpha0, delta0), with
    ``D = sin(delta) sin(delta0) + cos(delta) cos(delta0) cos(alpha - alpha0)``::

        xi  = cos(delta) sin(alpha - alpha0) / D
        eta = (sin(delta) cos(delta0) - cos(delta) sin(delta0) cos(alpha - alpha0)) / D

    (in radians, converted to arcsec). ``xi`` increases towards east (+RA) and
    ``eta`` towards north. ``coord`` is first transformed to the frame of
    ``reference``. Points 90 degrees or more from the reference have no
    gnomonic projection and give NaN.

    Parameters
    ----------
    coord : SkyCoord
        Positions, any shape.
    reference : SkyCoord
        Scalar tangent point.

    Returns
    -------
    xi, eta : numpy.ndarray
        float64 arrays of ``coord``'s shape (0-d for a scalar), arcsec.
    """
    reference = _as_scalar_skycoord(reference)
    coord = coord.transform_to(reference.frame.replicate_without_data())
    r0, east, north = _tangent_basis(reference)
    vec = _unit_vectors(coord)
    denom = vec @ r0
    ahead = denom > 0
    safe = np.where(ahead, denom, 1.0)
    xi = np.where(ahead, (vec @ east) / safe, np.nan) * ARCSEC_PER_RADIAN
    eta = np.where(ahead, (vec @ north) / safe, np.nan) * ARCSEC_PER_RADIAN
    return xi, eta


def sky_from_offsets(xi: Any, eta: Any, reference: SkyCoord) -> SkyCoord:
    """Sky positions of gnomonic offsets ``(xi, eta)`` (arcsec) about ``reference``.

    The inverse of :func:`tangent_plane_offsets`. Returns a SkyCoord in the
    frame of ``reference`` with the broadcast shape of ``xi`` and ``eta``.
    """
    reference = _as_scalar_skycoord(reference)
    xi_rad = np.asarray(xi, dtype=np.float64) / ARCSEC_PER_RADIAN
    eta_rad = np.asarray(eta, dtype=np.float64) / ARCSEC_PER_RADIAN
    xi_rad, eta_rad = np.broadcast_arrays(xi_rad, eta_rad)
    r0, east, north = _tangent_basis(reference)
    vec = r0 + xi_rad[..., None] * east + eta_rad[..., None] * north
    lon = np.arctan2(vec[..., 1], vec[..., 0])
    lat = np.arctan2(vec[..., 2], np.hypot(vec[..., 0], vec[..., 1]))
    rep = UnitSphericalRepresentation(lon * u.rad, lat * u.rad)
    return SkyCoord(reference.frame.realize_frame(rep))


# ---------------------------------------------------------------------------
# PixelMap: tangent-plane offsets -> pixel coordinates, in JAX
# ---------------------------------------------------------------------------


def _powers(t: Any, degree: int, xp: Any) -> Any:
    """Stack ``[1, t, t**2, ..., t**degree]`` along a new last axis.

    Built by repeated multiplication so that derivatives are finite everywhere
    (``t**0`` through ``pow`` has a NaN derivative at ``t = 0`` in JAX).
    """
    out = [xp.ones_like(t)]
    for _ in range(degree):
        out.append(out[-1] * t)
    return xp.stack(out, axis=-1)


def _monomial_mask(degree: int) -> np.ndarray:
    """Boolean ``(degree+1, degree+1)`` mask of exponents ``(i, j)`` with ``i + j <= degree``."""
    i, j = np.indices((degree + 1, degree + 1))
    return (i + j) <= degree


@jax.tree_util.register_pytree_node_class
class PixelMap:
    """Map from tangent-plane offsets ``(xi, eta)`` (arcsec) to one image's pixels.

    The map is fitted once, at construction, to astropy's exact WCS
    transformation and afterwards evaluated with :mod:`jax.numpy`, so it can be
    used inside ``jit``, ``grad`` and ``vmap``. Any WCS astropy understands
    (TAN, rotated or skewed CD matrices, TPV or SIP distortions) works.

    Construction samples a regular grid of pixel positions covering the image
    plus a margin (25 % of the image size on each side, at least 10 px),
    converts them to sky coordinates with ``wcs.pixel_to_world``, projects them
    to the tangent plane about ``reference`` (:func:`tangent_plane_offsets`)
    and fits pixel ``x`` and ``y`` each by least squares as a polynomial of
    total degree 3 in the normalised offsets
    ``u = (xi - xi0) / scale``, ``v = (eta - eta0) / scale`` (``xi0, eta0``:
    offsets of the image centre; ``scale``: the largest offset of a sample
    from it, so that ``|u|, |v| <= 1``). If the largest residual over the
    sample grid exceeds 1e-4 px the degree is raised, up to 5; if it still
    exceeds 1e-3 px a ValueError is raised (the image is then too large or too
    distorted for one polynomial: split it into smaller cutouts).

    Within the image the map agrees with ``wcs.world_to_pixel`` to about
    ``max_residual_pix`` (typically far below 1e-4 px).

    The object is a JAX pytree (coefficients are leaves), so it may also be
    passed as an argument to jitted functions.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS of the image.
    shape : tuple of int
        Image shape ``(ny, nx)``.
    reference : SkyCoord
        Tangent point of the scene (where ``xi = eta = 0``).

    Attributes
    ----------
    degree : int
        Total degree of the fitted polynomials.
    max_residual_pix : float
        Largest fit residual over the sample grid, in pixels.
    shape : tuple of int
        ``(ny, nx)`` of the image.
    """

    MARGIN_FRACTION = 0.25
    MIN_MARGIN_PIX = 10.0
    N_SAMPLES = 33
    DEGREES = (3, 4, 5)
    TARGET_RESIDUAL_PIX = 1e-4
    MAX_RESIDUAL_PIX = 1e-3

    def __init__(self, wcs: WCS, shape: tuple[int, int], reference: SkyCoord):
        reference = _as_scalar_skycoord(reference)
        ny, nx = (int(n) for n in shape)
        self.shape = (ny, nx)

        # Regular grid of sample pixels over the image plus a margin.
        margin_x = max(self.MARGIN_FRACTION * nx, self.MIN_MARGIN_PIX)
        margin_y = max(self.MARGIN_FRACTION * ny, self.MIN_MARGIN_PIX)
        gx = np.linspace(-0.5 - margin_x, nx - 0.5 + margin_x, self.N_SAMPLES)
        gy = np.linspace(-0.5 - margin_y, ny - 0.5 + margin_y, self.N_SAMPLES)
        px, py = (a.ravel() for a in np.meshgrid(gx, gy))
        xi, eta = tangent_plane_offsets(wcs.pixel_to_world(px, py), reference)
        if not (np.all(np.isfinite(xi)) and np.all(np.isfinite(eta))):
            raise ValueError(
                "PixelMap: the image (plus margin) reaches 90 degrees or more from the "
                "scene reference, or its WCS gives non-finite sky positions there; a "
                "gnomonic projection about the reference cannot describe it"
            )

        xc, yc = (nx - 1) / 2.0, (ny - 1) / 2.0
        xi0, eta0 = (float(v) for v in tangent_plane_offsets(wcs.pixel_to_world(xc, yc), reference))
        scale = float(max(np.max(np.abs(xi - xi0)), np.max(np.abs(eta - eta0))))
        if not scale > 0:
            raise ValueError("PixelMap: the WCS maps the whole image to a single sky point")
        us, vs = (xi - xi0) / scale, (eta - eta0) / scale

        for degree in self.DEGREES:
            cx, cy, resid = self._fit(us, vs, px, py, degree)
            if resid <= self.TARGET_RESIDUAL_PIX:
                break
        if resid > self.MAX_RESIDUAL_PIX:
            raise ValueError(
                f"PixelMap: a degree-{degree} polynomial reproduces the WCS only to "
                f"{resid:.3g} px over the image (needed: {self.MAX_RESIDUAL_PIX:g} px); "
                "the image is too large or too distorted for one polynomial map, "
                "split it into smaller cutouts"
            )
        self.degree = degree
        self.max_residual_pix = float(resid)
        self._cx = cx
        self._cy = cy
        self._xi0 = np.float64(xi0)
        self._eta0 = np.float64(eta0)
        self._scale = np.float64(scale)

    @staticmethod
    def _fit(
        us: np.ndarray, vs: np.ndarray, px: np.ndarray, py: np.ndarray, degree: int
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Least-squares polynomial fit; coefficient matrices ``C[i, j]`` of ``u**i v**j``."""
        keep = _monomial_mask(degree)
        design = (_powers(us, degree, np)[:, :, None] * _powers(vs, degree, np)[:, None, :])
        design = design[:, keep]
        sol, *_ = np.linalg.lstsq(design, np.stack([px, py], axis=-1), rcond=None)
        resid = float(np.max(np.hypot(*(design @ sol - np.stack([px, py], axis=-1)).T)))
        cx = np.zeros((degree + 1, degree + 1))
        cy = np.zeros((degree + 1, degree + 1))
        cx[keep] = sol[:, 0]
        cy[keep] = sol[:, 1]
        return cx, cy, resid

    # -- evaluation ---------------------------------------------------------

    def _xp(self, *values: Any) -> Any:
        """numpy for concrete inputs (set-up code: no JAX dispatch per operation), else jax.numpy
        (traced or JAX arrays, e.g. inside ``jit`` where the coefficients are tracers)."""
        return jnp if any(isinstance(v, jax.Array) for v in (self._cx, *values)) else np

    def _uv(self, xi: Any, eta: Any, xp: Any) -> tuple[Any, Any]:
        cast = (lambda v: np.asarray(v, dtype=float)) if xp is np else jnp.asarray  # JAX: its own precision
        xi, eta = xp.broadcast_arrays(cast(xi), cast(eta))
        return (xi - self._xi0) / self._scale, (eta - self._eta0) / self._scale

    @staticmethod
    def _poly(coeffs: Any, upow: Any, vpow: Any, xp: Any = jnp) -> Any:
        return xp.einsum("...i,ij,...j->...", upow, xp.asarray(coeffs), vpow)

    def __call__(self, xi: Any, eta: Any) -> tuple[Any, Any]:
        """Pixel coordinates ``(x, y)`` of tangent-plane offsets ``(xi, eta)`` in arcsec.

        ``xi`` and ``eta`` may be scalars or arrays (broadcast together); the
        results have their broadcast shape: numpy arrays for numbers or numpy
        arrays, JAX arrays for JAX arrays (or inside a traced function).
        """
        xp = self._xp(xi, eta)
        uu, vv = self._uv(xi, eta, xp)
        upow = _powers(uu, self.degree, xp)
        vpow = _powers(vv, self.degree, xp)
        return self._poly(self._cx, upow, vpow, xp), self._poly(self._cy, upow, vpow, xp)

    def contains(self, xi: Any, eta: Any) -> np.ndarray:
        """Whether offsets ``(xi, eta)`` (arcsec, numbers or numpy arrays) fall on the image, as
        :meth:`Image.overlaps` decides (``-0.5 <= x < nx - 0.5``, likewise in y) but through the
        fitted polynomial, without astropy: ~100x faster for a thousand points.  A point beyond
        the square of normalised offsets ``|u|, |v| <= 1`` that bounds the fitted sample (the
        image plus its margin) is outside; within it the polynomial matches the WCS to
        ``max_residual_pix`` on the image and extrapolates at most a margin's width off it."""
        uu, vv = self._uv(xi, eta, np)
        ny, nx = self.shape
        with np.errstate(invalid="ignore", over="ignore"):
            domain = (np.abs(uu) <= 1.0) & (np.abs(vv) <= 1.0)
            x, y = self(np.where(domain, xi, self._xi0), np.where(domain, eta, self._eta0))
            return domain & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)

    def jacobian(self, xi: Any, eta: Any) -> Any:
        """Jacobian ``d(x, y) / d(xi, eta)`` in pixels per arcsec.

        Returns an array of shape ``broadcast_shape + (2, 2)`` with
        ``J[..., 0, :] = (dx/dxi, dx/deta)`` and
        ``J[..., 1, :] = (dy/dxi, dy/deta)``; a ``(2, 2)`` array for scalar
        input (numpy or JAX as for :meth:`__call__`).
        """
        xp = self._xp(xi, eta)
        uu, vv = self._uv(xi, eta, xp)
        d = self.degree
        upow = _powers(uu, d, xp)
        vpow = _powers(vv, d, xp)
        # d/du of sum C[i, j] u^i v^j = sum (i+1) C[i+1, j] u^i v^j, likewise d/dv.
        ramp = np.arange(1, d + 1, dtype=np.float64)
        rows = []
        for c in (xp.asarray(self._cx), xp.asarray(self._cy)):
            dc_du = xp.concatenate([c[1:, :] * ramp[:, None], xp.zeros_like(c[:1, :])], axis=0)
            dc_dv = xp.concatenate([c[:, 1:] * ramp[None, :], xp.zeros_like(c[:, :1])], axis=1)
            rows.append(xp.stack([self._poly(dc_du, upow, vpow, xp), self._poly(dc_dv, upow, vpow, xp)], axis=-1))
        return xp.stack(rows, axis=-2) / self._scale

    # -- pytree protocol ----------------------------------------------------

    def tree_flatten(self) -> tuple[tuple, tuple]:
        # only the degree and shape are static: maps of other WCSs share compiled code
        children = (self._cx, self._cy, self._xi0, self._eta0, self._scale, self.max_residual_pix)
        aux = (self.degree, self.shape)
        return children, aux

    @classmethod
    def tree_unflatten(cls, aux: tuple, children: tuple) -> PixelMap:
        obj = object.__new__(cls)
        obj._cx, obj._cy, obj._xi0, obj._eta0, obj._scale, obj.max_residual_pix = children
        obj.degree, obj.shape = aux
        return obj

    def __repr__(self) -> str:
        return (
            f"PixelMap(shape={self.shape}, degree={self.degree}, "
            f"max_residual_pix={self.max_residual_pix:.2g})"
        )


# ---------------------------------------------------------------------------
# Image
# ---------------------------------------------------------------------------


def _describe(name: str | None) -> str:
    return f"Image {name!r}" if name is not None else "Image <unnamed>"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Image:
    """One astronomical image with its noise, mask, geometry and photometry.

    Parameters
    ----------
    data : array_like, shape (ny, nx)
        Pixel values in counts (any linear unit consistent with
        ``zeropoint``), indexed ``data[y, x]``. Stored as float64.
        NaN or infinite pixels are masked, with one :class:`UserWarning`
        stating how many.
    variance, weight, sigma : float or array_like of shape (ny, nx), optional
        The noise, given as at most one of: the variance per pixel, the weight
        (inverse variance) per pixel, or the 1-sigma standard deviation per
        pixel, in the units of ``data`` (squared for the variance, inverse
        squared for the weight). A weight of exactly 0 marks a pixel as masked
        (the usual convention of inverse-variance maps); otherwise every
        unmasked pixel must have a finite, positive noise, or a ValueError is
        raised. If none is given a variance of 1 is assumed, with a
        :class:`UserWarning`. Always stored as :attr:`variance`.
    mask : array_like of bool, shape (ny, nx), optional
        True for bad pixels, which are excluded from fits.
    pixel_scale : float, optional
        Pixel size in arcsec. Builds a north-up, east-left gnomonic (TAN)
        WCS: ``+x`` points west (RA decreases), ``+y`` points north. Give
        exactly one of ``pixel_scale`` and ``wcs``.
    wcs : astropy.wcs.WCS or astropy.io.fits.Header, optional
        Any celestial WCS astropy understands (TAN, rotated or skewed CD
        matrices, TPV or SIP distortions, ...). A header is converted with
        ``WCS(header)``. The WCS is copied.
    psf : object, optional
        The image's point-spread function (see :mod:`bayesprof.psf`); stored
        as given.
    zeropoint : float
        AB magnitude zeropoint: a source of magnitude ``mag`` has
        ``10**(-0.4 * (mag - zeropoint))`` counts in total. Default 0.
    band : str, optional
        Photometric band; images of one band share the flux parameters of
        each source. Default: the image's own band, named after the image.
    time : float, optional
        Epoch of observation (e.g. MJD, in days), for variable sources.
    wavelength : astropy Quantity or str, optional
        Effective wavelength of the image's band: a length (``6470 * u.AA``, ``"0.647 um"``) or
        a filter name (``"decam2014-r"``, ``"hsc2017-i"``, ``"hst_acs_wfc-F814W"``; see
        :func:`bayesprof.wavelength.effective_wavelength`).  Needed only by parameters that vary
        with wavelength (:class:`~bayesprof.Chebyshev`).
    name : str, optional
        Unique name; an :class:`ImageList` names unnamed images ``"img0"``,
        ``"img1"``, ... by their position.
    origin : (float, float), optional
        Only with ``pixel_scale``. Position, in arcsec, of the lower-left
        corner of pixel (0, 0) (pixel coordinate ``(-0.5, -0.5)``) in a common
        frame whose origin is the sky reference point
        :attr:`DEFAULT_SKY_REFERENCE` and whose axes run along this image's
        ``+x`` and ``+y`` pixel directions, i.e. west and north, so that frame
        position ``(X, Y)`` is tangent-plane offset ``(xi, eta) = (-X, Y)``
        about that point (AutoProf's convention for joint models). The reference point then lies at 0-indexed pixel
        ``(-0.5 - x0 / pixel_scale, -0.5 - y0 / pixel_scale)``. Images built
        with ``pixel_scale`` and ``origin`` are thus aligned with each other:
        a point at frame position ``(X, Y)`` arcsec lies at pixel
        ``(X - x0) / pixel_scale - 0.5`` (and likewise in y) of every image.
        Without ``origin`` the reference point lies at the array centre,
        pixel ``((nx - 1) / 2, (ny - 1) / 2)``.

    Attributes
    ----------
    data : numpy.ndarray
        float64 ``(ny, nx)``; 0 in masked pixels.
    variance : numpy.ndarray
        float64 ``(ny, nx)``, finite and positive; 1 in masked pixels.
    mask : numpy.ndarray
        bool ``(ny, nx)``, True for excluded pixels.
    wcs : astropy.wcs.WCS
        Celestial WCS of the image.
    pixel_scale : float
        arcsec per pixel; with a ``wcs`` the geometric mean of the two
        pixel-side lengths at the WCS reference point
        (:func:`astropy.wcs.utils.proj_plane_pixel_scales`, ignoring
        distortions).
    """

    #: Sky position (RA, Dec) in degrees (ICRS) of the reference point of WCSs
    #: built from ``pixel_scale``.
    DEFAULT_SKY_REFERENCE = (180.0, 0.0)

    def __init__(
        self,
        data: Any,
        *,
        variance: Any = None,
        weight: Any = None,
        sigma: Any = None,
        mask: Any = None,
        pixel_scale: float | None = None,
        wcs: WCS | fits.Header | None = None,
        psf: Any = None,
        zeropoint: float = 0.0,
        band: str | None = None,
        time: float | None = None,
        name: str | None = None,
        origin: tuple[float, float] | None = None,
        wavelength: Any = None,
    ):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Image name must be a string, not {type(name).__name__}")
        self._name = name
        label = _describe(name)

        raw = np.asarray(data)
        if raw.dtype.kind not in "biuf":
            raise TypeError(f"{label}: data must be a numeric array, not dtype {raw.dtype}")
        data = np.array(raw, dtype=np.float64, copy=True)
        if data.ndim != 2:
            raise ValueError(
                f"{label}: data must be a 2-D array, got {data.ndim}-D shape {data.shape}"
            )
        if data.size == 0:
            raise ValueError(f"{label}: data is empty (shape {data.shape})")
        shape = data.shape

        # -- mask -------------------------------------------------------------
        if mask is None:
            mask = np.zeros(shape, dtype=bool)
        else:
            mask = np.asarray(mask)
            if mask.dtype.kind not in "biu":
                raise TypeError(f"{label}: mask must be a boolean array, not dtype {mask.dtype}")
            mask = mask.astype(bool)  # a copy
            if mask.shape != shape:
                raise ValueError(
                    f"{label}: mask shape {mask.shape} does not match data shape {shape}"
                )

        bad_data = ~np.isfinite(data) & ~mask
        n_bad = int(np.count_nonzero(bad_data))
        if n_bad:
            warnings.warn(
                f"{label}: masked {_plural(n_bad, 'pixel')} with NaN or infinite data",
                UserWarning,
                stacklevel=2,
            )
            mask |= bad_data

        # -- noise ------------------------------------------------------------
        noise_args = (("variance", variance), ("weight", weight), ("sigma", sigma))
        given = {k: v for k, v in noise_args if v is not None}
        if len(given) > 1:
            raise ValueError(
                f"{label}: give at most one of variance, weight and sigma, not "
                f"{' and '.join(given)}"
            )
        if not given:
            warnings.warn(
                f"{label}: no variance, weight or sigma given; assuming unit variance",
                UserWarning,
                stacklevel=2,
            )
            var = np.ones(shape)
        else:
            kind, noise = next(iter(given.items()))
            noise = np.asarray(noise)
            if noise.dtype.kind not in "biuf":
                raise TypeError(f"{label}: {kind} must be numeric, not dtype {noise.dtype}")
            noise = noise.astype(np.float64)
            if noise.ndim == 0:
                noise = np.full(shape, float(noise))
            elif noise.shape != shape:
                raise ValueError(
                    f"{label}: {kind} shape {noise.shape} does not match data shape {shape}"
                )
            if kind == "weight":
                mask |= noise == 0  # weight 0 means "do not use this pixel"
            nonfinite = ~np.isfinite(noise) & ~mask
            nonpositive = (noise <= 0) & ~mask
            n_problem = int(np.count_nonzero(nonfinite | nonpositive))
            if n_problem:
                problems = []
                if np.any(nonpositive):
                    n = int(np.count_nonzero(nonpositive))
                    bound = "< 0" if kind == "weight" else "<= 0"
                    problems.append(f"{_plural(n, 'pixel')} {bound}")
                if np.any(nonfinite):
                    n = int(np.count_nonzero(nonfinite))
                    problems.append(f"{_plural(n, 'pixel')} NaN or infinite")
                raise ValueError(
                    f"{label}: {kind} has {' and '.join(problems)} that "
                    f"{'is' if n_problem == 1 else 'are'} not masked; "
                    "mask them or fix the noise map"
                )
            good = ~mask
            var = np.ones(shape)
            with np.errstate(over="ignore"):
                if kind == "variance":
                    var[good] = noise[good]
                elif kind == "sigma":
                    var[good] = noise[good] ** 2
                else:
                    var[good] = 1.0 / noise[good]
            # A tiny sigma or huge weight can underflow to a zero variance, and
            # a huge sigma overflow to infinity.
            degenerate = good & ~((var > 0) & np.isfinite(var))
            if np.any(degenerate):
                raise ValueError(
                    f"{label}: {kind} gives a zero or infinite variance in "
                    f"{_plural(int(np.count_nonzero(degenerate)), 'unmasked pixel')}; "
                    "mask them or fix the noise map"
                )

        if mask.all():
            warnings.warn(f"{label}: every pixel is masked", UserWarning, stacklevel=2)
        data[mask] = 0.0
        var[mask] = 1.0
        self.data = data
        self.variance = var
        self.mask = mask

        # -- geometry ---------------------------------------------------------
        if wcs is not None and pixel_scale is not None:
            raise ValueError(f"{label}: give pixel_scale or wcs, not both")
        if wcs is None and pixel_scale is None:
            raise ValueError(f"{label}: give pixel_scale or wcs")
        if origin is not None and wcs is not None:
            raise ValueError(f"{label}: origin only applies with pixel_scale, not with a wcs")
        if wcs is not None:
            self.wcs = self._check_wcs(wcs, shape, label)
            scales = proj_plane_pixel_scales(self.wcs) * 3600.0
            self.pixel_scale = float(np.sqrt(scales[0] * scales[1]))
        else:
            scale = float(pixel_scale)
            if not (np.isfinite(scale) and scale > 0):
                raise ValueError(
                    f"{label}: pixel_scale must be a finite number > 0 (arcsec/pixel), "
                    f"not {pixel_scale!r}"
                )
            self.pixel_scale = scale
            self.wcs = self._default_wcs(shape, scale, origin, label)

        # -- photometry and bookkeeping --------------------------------------
        self.zeropoint = float(zeropoint)
        if not np.isfinite(self.zeropoint):
            raise ValueError(f"{label}: zeropoint must be finite, not {zeropoint!r}")
        if band is not None and not isinstance(band, str):
            raise TypeError(f"{label}: band must be a string, not {type(band).__name__}")
        self._band = band
        self.time = None if time is None else float(time)
        self.psf = psf
        self.wavelength = wavelength

    # -- construction helpers ----------------------------------------------

    @classmethod
    def _default_wcs(
        cls, shape: tuple[int, int], scale: float, origin: Any, label: str
    ) -> WCS:
        """North-up, east-left TAN WCS centred on :attr:`DEFAULT_SKY_REFERENCE`."""
        ny, nx = shape
        if origin is None:
            ref_x, ref_y = (nx - 1) / 2.0, (ny - 1) / 2.0
        else:
            try:
                x0, y0 = (float(v) for v in origin)
            except (TypeError, ValueError):
                raise ValueError(f"{label}: origin must be a pair (x0, y0) in arcsec") from None
            if not (np.isfinite(x0) and np.isfinite(y0)):
                raise ValueError(f"{label}: origin must be finite, not {origin!r}")
            ref_x, ref_y = -0.5 - x0 / scale, -0.5 - y0 / scale
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.cunit = ["deg", "deg"]
        w.wcs.cdelt = [-scale / 3600.0, scale / 3600.0]
        w.wcs.crval = list(cls.DEFAULT_SKY_REFERENCE)
        w.wcs.crpix = [ref_x + 1.0, ref_y + 1.0]  # FITS pixels are 1-indexed
        w.wcs.radesys = "ICRS"
        w.pixel_shape = (nx, ny)
        return w

    @staticmethod
    def _check_wcs(wcs: Any, shape: tuple[int, int], label: str) -> WCS:
        if isinstance(wcs, fits.Header):
            wcs = WCS(wcs)
        if not isinstance(wcs, WCS):
            raise TypeError(
                f"{label}: wcs must be an astropy WCS or FITS header, not {type(wcs).__name__}"
            )
        if not wcs.has_celestial:
            raise ValueError(f"{label}: the WCS has no celestial (RA/Dec-like) axes")
        celestial = wcs.celestial.deepcopy()
        if celestial.pixel_n_dim != 2:
            raise ValueError(
                f"{label}: the WCS's celestial part has {celestial.pixel_n_dim} pixel axes, not 2"
            )
        ny, nx = shape
        declared = celestial.pixel_shape
        if declared is not None and any(declared) and tuple(declared) != (nx, ny):
            raise ValueError(
                f"{label}: the WCS describes an image of shape {tuple(declared[::-1])} "
                f"(ny, nx) but data has shape {shape}"
            )
        celestial.pixel_shape = (nx, ny)
        return celestial

    # -- simple properties -------------------------------------------------

    @property
    def name(self) -> str | None:
        """Unique name; None until given one or put in an :class:`ImageList`."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Image name must be a string, not {type(value).__name__}")
        self._name = value

    @property
    def band(self) -> str | None:
        """Photometric band; defaults to the image's name (a band of its own)."""
        return self._band if self._band is not None else self._name

    @band.setter
    def band(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise TypeError(f"band must be a string, not {type(value).__name__}")
        self._band = value

    @property
    def wavelength(self):
        """Effective wavelength of the image's band (astropy Quantity, Angstrom), or None."""
        return self._wavelength

    @wavelength.setter
    def wavelength(self, value) -> None:
        from .wavelength import effective_wavelength

        try:
            self._wavelength = None if value is None else effective_wavelength(value)
        except ValueError as err:
            raise ValueError(f"{_describe(self._name)}: {err}") from None

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return self.data.shape

    @property
    def ny(self) -> int:
        """Number of pixel rows."""
        return self.data.shape[0]

    @property
    def nx(self) -> int:
        """Number of pixel columns."""
        return self.data.shape[1]

    @property
    def weight(self) -> np.ndarray:
        """Inverse variance, float64 ``(ny, nx)``; 0 in masked pixels."""
        return np.where(self.mask, 0.0, 1.0 / self.variance)

    # -- geometry ------------------------------------------------------------

    def center_sky(self) -> SkyCoord:
        """Sky position of the array centre, pixel ``((nx - 1) / 2, (ny - 1) / 2)``."""
        return self.wcs.pixel_to_world((self.nx - 1) / 2.0, (self.ny - 1) / 2.0)

    def pixel_to_sky(self, x: Any, y: Any) -> SkyCoord:
        """Sky positions of 0-indexed pixel coordinates (``wcs.pixel_to_world``)."""
        return self.wcs.pixel_to_world(x, y)

    def sky_to_pixel(self, coord: SkyCoord) -> tuple[np.ndarray, np.ndarray]:
        """0-indexed pixel coordinates ``(x, y)`` of sky positions (``wcs.world_to_pixel``)."""
        x, y = self.wcs.world_to_pixel(coord)
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def pixel_map(self, reference: SkyCoord) -> PixelMap:
        """JAX map from tangent-plane offsets (arcsec) about ``reference`` to pixels."""
        return PixelMap(self.wcs, self.shape, reference)

    def overlaps(self, reference: SkyCoord, xi: Any, eta: Any, margin_pix: float = 0) -> Any:
        """Whether offsets ``(xi, eta)`` (arcsec) about ``reference`` fall on the image.

        A point is inside if its pixel coordinates satisfy
        ``-0.5 - margin_pix <= x < nx - 0.5 + margin_pix`` and likewise in y
        (the outer edges of the edge pixels, widened by ``margin_pix``).
        Returns a bool for scalar input, else a boolean array.
        """
        coord = sky_from_offsets(xi, eta, reference)
        with warnings.catch_warnings():
            # Points far outside a distorted WCS's domain may not invert; they are outside.
            warnings.simplefilter("ignore")
            x, y = self.sky_to_pixel(coord)
        m = float(margin_pix)
        inside = (
            (x >= -0.5 - m) & (x < self.nx - 0.5 + m) & (y >= -0.5 - m) & (y < self.ny - 0.5 + m)
        )
        return bool(inside) if inside.ndim == 0 else inside

    @classmethod
    def from_fits(cls, path: Any, hdu: Any = None, *, variance: Any = None, weight: Any = None,
                  sigma: Any = None, mask: Any = None, psf: Any = None, zeropoint: Any = 0.0,
                  band: str | None = None, time: Any = "MJD-OBS", name: str | None = None,
                  pixel_scale: float | None = None, exptime: Any = None, plane: int | None = None,
                  wavelength: Any = None) -> "Image":
        """An image read from a FITS file, with its WCS from the header.

        Parameters
        ----------
        path : str or path
            The FITS file.  ``"file.fits[1]"`` or ``"file.fits[N12]"`` picks an HDU too.
        hdu : int or str, optional
            HDU index or EXTNAME of the data; default: the first HDU holding 2-D data (the
            image extension of multi-extension files such as Legacy Survey CP images).
        variance, weight, sigma, mask : array, number or FITS path, optional
            Noise (at most one; ``weight`` is the inverse variance, 0 = masked) and bad-pixel
            mask (any non-zero value is bad, e.g. a data-quality map).  A string is read as a
            FITS file with the same ``[hdu]`` syntax (default HDU: the first 2-D one).
        psf : PSF object or FITS path, optional
            A path is read as a pixelized PSF at the image's pixel scale (:class:`PixelPSF`),
            or, if the file is a PSFEx model (a table with a ``PSF_MASK`` column: PSFEx
            ``.psf`` or legacypipe merged file), that model evaluated at the image's centre
            pixel ``((nx-1)/2, (ny-1)/2)`` of the data HDU's pixel frame, for the CCD named by
            the HDU's ``CCDNAME`` or ``EXTNAME`` (:meth:`PSFExModel.at`).  For a cut-out whose
            PSFEx model is in the parent CCD's frame, pass
            ``PSFExModel.from_fits(p, ccd).at(x0 + (nx-1)/2, y0 + (ny-1)/2)`` instead.
        zeropoint : float or str
            AB zeropoint, or a header keyword holding it (data HDU first, then the primary).
        plane : int, optional
            For a data cube: the plane (0-indexed along the first numpy axis) to fit.
        exptime : float or str, optional
            Exposure time (s) or a header keyword (e.g. ``EXPTIME``), for data in counts whose
            zeropoint is for counts per second (single DECam, BASS and MzLS exposures'
            ``MAGZERO``): the zeropoint used is ``zeropoint + 2.5 log10(exptime)``.
        band : str, optional
        time : float or str
            Epoch, or a header keyword (default ``MJD-OBS``; None if absent).
        pixel_scale : float, optional
            Only for files whose header has no celestial WCS: builds the default one.
        wavelength : Quantity or str, optional
            Effective wavelength or filter name (as :class:`Image`).

        The data are used as they are: a sky background still in them is fitted by a sky
        component.  Errors name the file and the problem (missing HDU, no WCS, shapes).
        """
        data, header, primary, label = _read_fits_2d(path, hdu, plane)
        noise = {}
        for key, value in (("variance", variance), ("weight", weight), ("sigma", sigma)):
            if value is not None:
                noise[key] = _read_fits_2d(value, None)[0] if isinstance(value, (str, pathlib.Path)) else value
        if mask is not None and isinstance(mask, (str, pathlib.Path)):
            mask = _read_fits_2d(mask, None)[0]
        if mask is not None:
            mask = np.asarray(mask)
            mask = mask != 0 if mask.dtype.kind != "b" else mask
        if isinstance(psf, (str, pathlib.Path)):
            from .psf import PixelPSF, PSFExModel, is_psfex_file

            if is_psfex_file(psf):
                # PSFEx model: evaluated at the image centre in the data HDU's own pixel frame
                # (legacypipe cut-outs shift the model's POLZERO with CRPIX, so that frame is
                # the cut-out's); the CCD row of a merged file by the HDU's CCDNAME/EXTNAME.
                ccd = header.get("CCDNAME", header.get("EXTNAME"))
                model = PSFExModel.from_fits(psf, None if ccd is None else str(ccd).strip())
                psf = model.at((data.shape[1] - 1) / 2.0, (data.shape[0] - 1) / 2.0)
            else:
                psf = PixelPSF(_read_fits_2d(psf, None)[0])

        def keyword(value, what):
            if not isinstance(value, str):
                return value
            for h in (header, primary):
                if h is not None and value in h:
                    return h[value]
            if what == "time":
                return None
            raise ValueError(f"{label}: header keyword {value!r} for the {what} not found")

        zp = keyword(zeropoint, "zeropoint")
        if exptime is not None:
            t_exp = float(keyword(exptime, "exposure time"))
            if not (np.isfinite(t_exp) and t_exp > 0):
                raise ValueError(f"{label}: the exposure time must be a positive number of seconds, not {t_exp!r}")
            zp = float(zp) + 2.5 * np.log10(t_exp)
        wcs = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy's FITSFixedWarning about date/obs keywords
            candidate = WCS(header)
        if candidate.has_celestial:
            wcs = candidate.celestial
        elif pixel_scale is None:
            raise ValueError(f"{label}: the header has no celestial WCS; pass pixel_scale= for a default one")
        t = keyword(time, "time")
        return cls(data, **noise, mask=mask, psf=psf, zeropoint=float(zp), band=band,
                   time=None if t is None else float(t), name=name or pathlib.Path(str(path)).stem.split("[")[0],
                   wcs=wcs, pixel_scale=None if wcs is not None else pixel_scale, wavelength=wavelength)

    def with_mask(self, extra: Any) -> "Image":
        """A copy with the pixels where ``extra`` (bool, the image's shape) is True masked too
        (e.g. :func:`bayesprof.catalog.neighbour_mask`); this image is unchanged."""
        import copy

        extra = np.asarray(extra, dtype=bool)
        if extra.shape != self.shape:
            raise ValueError(f"{_describe(self.name)}: the extra mask has shape {extra.shape}, the image {self.shape}")
        new = copy.copy(self)
        new.mask = self.mask | extra
        new.data = np.where(new.mask, 0.0, self.data)
        new.variance = np.where(new.mask, 1.0, self.variance)
        return new

    def cutout(self, x0: int, x1: int, y0: int, y1: int) -> "Image":
        """The sub-image ``data[y0:y1, x0:x1]`` (0-indexed, half-open) with its own WCS.

        The cut-out keeps the noise, mask, PSF, zeropoint, band, time and name; its WCS
        is this one shifted (astropy's WCS slicing), so sky positions land on the same
        pixels of the sky.  The box is clipped to the image; an empty box is a ValueError.
        """
        xa, xb = max(int(x0), 0), min(int(x1), self.nx)
        ya, yb = max(int(y0), 0), min(int(y1), self.ny)
        if xb <= xa or yb <= ya:
            raise ValueError(f"{_describe(self._name)}: the box x {x0}:{x1}, y {y0}:{y1} does not overlap "
                             f"the image ({self.nx} x {self.ny} pixels)")
        sl = (slice(ya, yb), slice(xa, xb))
        wcs = self.wcs.slice(sl)
        wcs.pixel_shape = (xb - xa, yb - ya)
        sub = Image.__new__(Image)
        sub.__dict__.update(self.__dict__)
        sub.data = self.data[sl].copy()
        sub.variance = self.variance[sl].copy()
        sub.mask = self.mask[sl].copy()
        sub.wcs = wcs
        return sub

    def stamp(self, x: float, y: float, shape: tuple[int, int]) -> "Image":
        """A cut-out of exactly ``shape`` (ny, nx) pixels about pixel ``(x, y)`` (0-indexed; the
        stamp's pixel ``(nx // 2, ny // 2)`` is the image's pixel nearest to it), with its own WCS.

        Where the stamp reaches beyond the image its pixels are masked (data 0, variance 1), so
        stamps of one shape can be fitted as one batch whatever their position on the frame.
        Noise, mask, PSF, zeropoint, band, time and name are kept.  A stamp that does not
        overlap the image is a ValueError."""
        from astropy.wcs import Sip

        ny, nx = (int(n) for n in shape)
        x0, y0 = int(np.floor(x + 0.5)) - nx // 2, int(np.floor(y + 0.5)) - ny // 2
        xa, xb, ya, yb = max(x0, 0), min(x0 + nx, self.nx), max(y0, 0), min(y0 + ny, self.ny)
        if xb <= xa or yb <= ya:
            raise ValueError(f"{_describe(self._name)}: a {nx} x {ny} stamp about pixel ({x:.1f}, {y:.1f}) does not "
                             f"overlap the image ({self.nx} x {self.ny} pixels)")
        inside = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
        frame = (slice(ya, yb), slice(xa, xb))
        data, variance, mask = np.zeros((ny, nx)), np.ones((ny, nx)), np.ones((ny, nx), bool)
        data[inside], variance[inside], mask[inside] = self.data[frame], self.variance[frame], self.mask[frame]
        wcs = self.wcs.deepcopy()
        wcs.wcs.crpix = wcs.wcs.crpix - np.array([x0, y0], float)
        if wcs.sip is not None:
            wcs.sip = Sip(wcs.sip.a, wcs.sip.b, wcs.sip.ap, wcs.sip.bp, wcs.sip.crpix - np.array([x0, y0], float))
        wcs.pixel_shape = (nx, ny)
        sub = Image.__new__(Image)
        sub.__dict__.update(self.__dict__)
        sub.data, sub.variance, sub.mask, sub.wcs = data, variance, mask, wcs
        return sub

    def __repr__(self) -> str:
        parts = [
            repr(self._name) if self._name is not None else "<unnamed>",
            f"{self.ny}x{self.nx}",
            f'{self.pixel_scale:.4g}"/px',
        ]
        if self._band is not None:
            parts.append(f"band={self._band!r}")
        parts.append(f"zeropoint={self.zeropoint:g}")
        if self.time is not None:
            parts.append(f"time={self.time:g}")
        if self._wavelength is not None:
            parts.append(f"wavelength={self._wavelength.value:.1f} A")
        n_masked = int(np.count_nonzero(self.mask))
        if n_masked:
            parts.append(f"masked={n_masked}")
        return f"Image({', '.join(parts)})"


def _read_fits_2d(path: Any, hdu: Any = None, plane: Any = None):
    """(data float64, header of that HDU, primary header, label) of a 2-D HDU of a FITS file,
    or of plane ``plane`` (0-indexed along the first numpy axis) of a 3-D one (a PSF cube).

    ``path`` may end in ``[k]`` or ``[EXTNAME]``; without an HDU, the first HDU with 2-D data
    (3-D with ``plane``).
    """
    text = str(path)
    if hdu is None and text.endswith("]") and "[" in text:
        text, spec = text[:-1].split("[", 1)
        hdu = int(spec) if spec.lstrip("-").isdigit() else spec
    label = f"FITS file {text!r}"
    if not pathlib.Path(text).exists():
        raise FileNotFoundError(f"{label} does not exist")
    ndim = 2 if plane is None else 3
    with fits.open(text) as hdul:
        names = [f"{k}:{h.name}" for k, h in enumerate(hdul)]
        if hdu is None:
            found = [h for h in hdul if h.data is not None and np.ndim(h.data) == ndim]
            if not found:
                cubes = [f"{k}:{h.name} {np.shape(h.data)}" for k, h in enumerate(hdul) if np.ndim(h.data) == 3]
                hint = f"; cubes: {cubes}, choose a plane (plane: k, 0-indexed)" if cubes and plane is None else ""
                raise ValueError(f"{label} has no {ndim}-D image HDU (HDUs: {names}){hint}")
            chosen = found[0]
        else:
            try:
                chosen = hdul[hdu]
            except (KeyError, IndexError):
                raise ValueError(f"{label} has no HDU {hdu!r} (HDUs: {names})") from None
            if chosen.data is None or np.ndim(chosen.data) != ndim:
                hint = ": choose a plane (plane: k, 0-indexed)" if np.ndim(chosen.data) == 3 else ""
                raise ValueError(f"{label}, HDU {hdu!r} holds no {ndim}-D image (shape {np.shape(chosen.data)}){hint}")
        data = np.array(chosen.data, dtype=np.float64)
        if plane is not None:
            if isinstance(plane, bool) or not isinstance(plane, (int, np.integer)) or not 0 <= plane < data.shape[0]:
                raise ValueError(f"{label}, HDU {chosen.name}: plane must be an integer from 0 to {data.shape[0] - 1} "
                                 f"(shape {data.shape}), not {plane!r}")
            data = data[plane]
        header = chosen.header.copy()
        primary = hdul[0].header.copy()
    where = f"{label}, HDU {chosen.name}" + ("" if plane is None else f", plane {plane}")
    return data, header, primary, where


# ---------------------------------------------------------------------------
# ImageList
# ---------------------------------------------------------------------------


class ImageList:
    """The images of one scene, with unique names and a common sky reference.

    Images may differ in size, pixel scale, orientation, PSF, band and epoch.
    The list supports ``len``, iteration, ``in`` and indexing by position
    (``images[0]``), by name (``images["r"]``) or by slice (giving a new
    ImageList with the same reference).

    Parameters
    ----------
    images : iterable of Image
        Unnamed images are named ``"img{k}"`` after their position ``k`` (the
        next free ``"img{m}"``, ``m > k``, if that name is taken). Duplicate
        names raise ValueError.
    reference : SkyCoord or (ra, dec) in degrees, optional
        Tangent point of the scene, where ``(xi, eta) = (0, 0)``. Default: the
        centre of the first image (see :meth:`Image.center_sky`).
    """

    def __init__(self, images: Iterable[Image] = (), *, reference: Any = None):
        self._images: list[Image] = []
        self._reference = None if reference is None else _as_scalar_skycoord(reference)
        images = list(images)
        for image in images:
            if not isinstance(image, Image):
                raise TypeError(f"ImageList holds Image objects, not {type(image).__name__}")
        names = [im.name for im in images if im.name is not None]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"ImageList: duplicate image names {duplicates}")
        # Explicit names are reserved before unnamed images get default ones.
        taken = set(names)
        for k, image in enumerate(images):
            if image.name is None:
                image.name = self._free_name(k, taken)
                taken.add(image.name)
            self._images.append(image)
        if self._reference is None and self._images:
            self._reference = self._images[0].center_sky()

    @staticmethod
    def _free_name(k: int, taken: set[str]) -> str:
        """``"img{k}"``, or the next ``"img{m}"`` (m > k) not in ``taken``."""
        while f"img{k}" in taken:
            k += 1
        return f"img{k}"

    def append(self, image: Image) -> None:
        """Add an image, naming it if unnamed; ValueError if its name is taken."""
        if not isinstance(image, Image):
            raise TypeError(f"ImageList holds Image objects, not {type(image).__name__}")
        taken = set(self.names)
        if image.name is None:
            image.name = self._free_name(len(self._images), taken)
        elif image.name in taken:
            raise ValueError(f"ImageList: duplicate image name {image.name!r}")
        self._images.append(image)
        if self._reference is None:
            self._reference = image.center_sky()

    @property
    def names(self) -> list[str]:
        """Image names, in order."""
        return [im.name for im in self._images]

    @property
    def bands(self) -> list[str]:
        """Distinct bands, in order of first appearance."""
        return list(dict.fromkeys(im.band for im in self._images))

    @property
    def reference(self) -> SkyCoord:
        """The scene's common tangent point (SkyCoord)."""
        if self._reference is None:
            raise ValueError("an empty ImageList has no reference; pass reference= or add an image")
        return self._reference

    @reference.setter
    def reference(self, value: Any) -> None:
        self._reference = _as_scalar_skycoord(value)

    def pixel_maps(self) -> list[PixelMap]:
        """One :class:`PixelMap` per image, about the common :attr:`reference`."""
        return [im.pixel_map(self.reference) for im in self._images]

    def __len__(self) -> int:
        return len(self._images)

    def __iter__(self) -> Iterator[Image]:
        return iter(self._images)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return item in self.names
        return any(item is im for im in self._images)

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            for im in self._images:
                if im.name == key:
                    return im
            raise KeyError(f"no image named {key!r}; names are {self.names}")
        if isinstance(key, slice):
            return ImageList(self._images[key], reference=self._reference)
        return self._images[key]

    def __repr__(self) -> str:
        body = ", ".join(f"{im.name!r}" for im in self._images)
        return f"ImageList([{body}], bands={self.bands})"
