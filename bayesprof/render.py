"""The renderer: parameters -> model image, exact to ~1e-4 of the peak.

Each model pixel is the integral over that pixel of (profile convolved with the PSF).
Writing E = PSF * pixel (the effective PSF), a pixel value is the convolution of the
intrinsic profile I with E sampled at the pixel centre.  Sharp cores and extended
tails need different treatment, so every extended component is split smoothly by a
taper W(rho / r_c) on its own elliptical radius:

* **core** ``I * W`` (compact, contains any cusp): rendered in Fourier space.  Its
  Fourier transform is a 1-D Hankel transform of the radial profile; we compute it
  exactly from the *enclosed flux* of ~300 annuli (analytic incomplete-gamma
  differences for Sersic profiles, so even n = 6 with re = 0.3 px is integrated
  exactly; log-spaced near the centre, linear further out) times the transform of an
  annulus whose density is linear in radius (slope from the neighbouring annuli, flux
  kept exact: third-order accurate), on a fixed grid of dimensionless wavenumbers (one
  precomputed matrix-vector product).  The elliptical, sheared,
  shifted transform is then interpolated onto a small patch's wavenumbers,
  multiplied by E's transform (PSF x pixel sinc, folded to well beyond Nyquist for
  undersampled PSFs) and inverse-FFT'd.  A sub-pixel centre is a phase: no
  resampling, no grid alignment.
* **halo** ``I * (1 - W)`` (smooth, zero near the centre): sampled in real space on
  the image grid (``oversample`` x ``oversample`` points per pixel for undersampled
  PSFs) and convolved with E by FFT.  Tails are evaluated exactly where they fall,
  so flux beyond the image edge never wraps around.

The core radius keeps the core's *minor* semi-axis at >= ``core_minor_px`` pixels (4 halo samples),
so the halo is smooth on the pixel scale whatever q and n are.

A point source is a pure core (its transform is the flux).

Everything geometric that depends on the image (WCS polynomial, PSF transforms,
sampling factors) is prepared once with numpy in :class:`Renderer`; the per-call work
is pure, jit-compiled, differentiable JAX.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from . import profiles
from . import psf as psf_module
from .components import Component

__all__ = ["Renderer", "render", "stack", "stack_groups", "next_fast_len"]

# -------------------------------------------------------------------- static tables
_U_LOG_MIN, _U_LOG_STEP, _U_LIN_STEP, _U_MAX = 1e-6, 0.1, 0.01, 2.0
_KAPPA0, _DT = 10.0, 0.01
_N_GAUSS = 24


def _annulus_edges():
    """0, then log-spaced edges (ratio e^LOG_STEP) up to where that spacing reaches LIN_STEP, then linear to U_MAX."""
    u_cross = min(_U_LIN_STEP / _U_LOG_STEP, _U_MAX)
    n_log = int(np.ceil(np.log(u_cross / _U_LOG_MIN) / _U_LOG_STEP))
    log_edges = np.exp(np.linspace(np.log(_U_LOG_MIN), np.log(u_cross), n_log + 1))
    n_lin = int(np.ceil((_U_MAX - u_cross) / _U_LIN_STEP))
    lin_edges = np.linspace(u_cross, _U_MAX, n_lin + 1)[1:]
    return np.concatenate([[0.0], log_edges, lin_edges])


_U_EDGES = _annulus_edges()
_U_MID = 0.5 * (_U_EDGES[1:] + _U_EDGES[:-1])


def _annulus_matrix(kappa):
    """Table matrix: (n_kappa, n_annuli) map from annulus fluxes to the transform at kappa.

    Each annulus' density is reconstructed as linear in u about the annulus' area centroid,
    keeping its flux exactly; the slope is the central difference of the neighbouring annulus
    means (zero in the central disk, zero density beyond the last edge).  This makes the
    transform accurate to O(du^3) instead of the O(du^2) of flat annuli, so far fewer annuli do.
    """
    k = kappa[:, None]
    u1, u2 = _U_EDGES[None, :-1], _U_EDGES[None, 1:]

    def disk_moment(u):  # 2 pi int_0^u J0(k r) r dr = 2 pi u J1(k u) / k  (-> pi u^2 at k=0)
        ku = k * u
        small = ku < 1e-6
        return np.where(small, np.pi * u * u * (1 - ku**2 / 8), 2 * np.pi * u * special.j1(ku) / np.where(small, 1, k))

    area = np.pi * (u2**2 - u1**2)
    flat = (disk_moment(u2) - disk_moment(u1)) / area  # FT of a unit-flux uniform annulus
    lo, hi = _U_EDGES[:-1], _U_EDGES[1:]
    centroid = (2.0 / 3.0) * (hi**3 - lo**3) / (hi**2 - lo**2)
    # B_j(kappa) = int_annulus (u - c_j) J0(kappa u) 2 pi u du, by Gauss-Legendre per annulus
    x, w = np.polynomial.legendre.leggauss(_N_GAUSS)
    half = 0.5 * (hi - lo)
    uq = 0.5 * (hi + lo)[:, None] + half[:, None] * x[None, :]  # (n_ann, n_gauss)
    wq = half[:, None] * w[None, :] * 2 * np.pi * uq * (uq - centroid[:, None])
    ramp = np.einsum("kaq,aq->ka", special.j0(kappa[:, None, None] * uq[None]), wq)
    # slope_j = (mean_{j+1} - mean_{j-1}) / (c_{j+1} - c_{j-1}), mean_j = flux_j / area_j
    n = len(lo)
    a = area[0]
    c_next = np.append(centroid[1:], 2 * centroid[-1] - centroid[-2])
    c_prev = np.concatenate([[0.0], centroid[:-1]])
    inv = 1.0 / (c_next - c_prev)
    D = np.zeros((n, n))
    j = np.arange(1, n)
    D[j[:-1], j[:-1] + 1] = inv[j[:-1]] / a[j[:-1] + 1]
    D[j, j - 1] = -inv[j] / a[j - 1]
    return flat + ramp @ D


@dataclass(frozen=True)
class _HankelTable:
    kappa_max: float
    matrix: np.ndarray  # (n_t, n_annuli)


_TABLES: dict[int, _HankelTable] = {}


def _hankel_table(kappa_max: float) -> _HankelTable:
    n_t = int(np.ceil(np.arcsinh(kappa_max / _KAPPA0) / _DT)) + 3
    if n_t not in _TABLES:
        kappa = _KAPPA0 * np.sinh(np.arange(n_t) * _DT)
        _TABLES[n_t] = _HankelTable(float(kappa[-3]), _annulus_matrix(kappa))
    return _TABLES[n_t]


def _interp_table(values, kappa):
    """Catmull-Rom interpolation of a table sampled at kappa_i = K0 sinh(i dt); values even in kappa."""
    t = jnp.arcsinh(kappa / _KAPPA0) / _DT
    n = values.shape[0]
    i = jnp.clip(jnp.floor(t).astype(jnp.int32), 0, n - 3)
    f = t - i
    padded = jnp.concatenate([values[1:2], values])  # values[-1] := values[1] (even function)
    p0, p1, p2, p3 = padded[i], padded[i + 1], padded[i + 2], padded[i + 3]
    return p1 + 0.5 * f * (p2 - p0 + f * (2 * p0 - 5 * p1 + 4 * p2 - p3 + f * (3 * (p1 - p2) + p3 - p0)))


def _safe_norm(a, b):
    """sqrt(a^2 + b^2) with a finite (zero) gradient at the origin."""
    s = a * a + b * b
    pos = s > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)


def _taper(u):
    """C-infinity taper: 1 for u <= 1, 0 for u >= 2 (and 1 - taper, exactly)."""
    eps = 1e-3
    t1 = jnp.clip(2.0 - u, eps, 1.0)
    t2 = jnp.clip(u - 1.0, eps, 1.0)
    z = 1.0 / t2 - 1.0 / t1
    return jax.nn.sigmoid(z), jax.nn.sigmoid(-z)


def next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (fast FFT sizes)."""
    n = int(n)
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < 2 * n:
        p35 = p5
        while p35 < 2 * n:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _on_grid(psf, fx, fy, dk, pixel_scale):
    """The PSF's effective transform on the grid of wavenumbers ``dk * fy`` (rows) x ``dk * fx``
    (columns), rad/px, for integer frequencies ``fx``, ``fy`` (1-D).  A circular PSF
    (:attr:`~bayesprof.psf.PSF.circular`) is evaluated once per distinct fx^2 + fy^2 (a lookup
    table indexed by that integer, no sort) and the pixel response once per distinct
    (|fx|, |fy|)."""
    fx, fy = np.ravel(fx).astype(np.int64), np.ravel(fy).astype(np.int64)
    if not getattr(psf, "circular", False):
        return psf.effective_fourier(dk * fx[None, :], dk * fy[:, None], pixel_scale)
    fx, fy = np.abs(fx), np.abs(fy)
    ux, uy = np.arange(fx.max() + 1), np.arange(fy.max() + 1)
    n2 = np.square(ux)[None, :] + np.square(uy)[:, None]  # the quarter (|fy|, |fx|)
    present = np.zeros(n2[-1, -1] + 1, bool)
    present[n2] = True
    distinct = np.flatnonzero(present)
    values = psf.fourier(dk * np.sqrt(distinct), np.zeros(distinct.size), pixel_scale)
    lookup = np.zeros(present.size, dtype=values.dtype)
    lookup[distinct] = values
    quarter = lookup[n2]
    if not psf.includes_pixel:
        quarter = quarter * psf_module.pixel_response(dk * ux[None, :], dk * uy[:, None])
    return quarter[np.ix_(fy, fx)]


def _alias_sum(psf_type, params, dx, dy, period, rings=2):
    """What a period-``period`` (px) circular convolution with a PSF of power-law wings adds at
    offset (dx, dy) px from the source: the wings of its periodic copies,
    sum over n != 0 of density(d + n period), for the ``rings`` rings of copies nearest the
    source (evaluated) plus those beyond (their mean level: the flux outside a circle of the
    remaining square's area, spread over one period's area).  numpy or JAX."""
    total = 0.0
    for i in range(-rings, rings + 1):
        for j in range(-rings, rings + 1):
            if i or j:
                total = total + psf_type.wing_density((dx + i * period) ** 2 + (dy + j * period) ** 2, params)
    far = psf_type.wing_outside((2 * rings + 1) * period / np.sqrt(np.pi), params) / period**2
    return total + far


# -------------------------------------------------------------------- the plan
@jax.tree_util.register_pytree_node_class
class Renderer:
    """Everything needed to render components into one image, prepared once.

    Parameters
    ----------
    image : bayesprof.Image
        Geometry (WCS), PSF and zeropoint come from here.
    reference : astropy SkyCoord, optional
        Tangent point of the scene's (xi, eta) frame; default: the image centre.
    oversample : int, optional
        Halo samples per pixel side; default chosen from the PSF (1 for PSF FWHM >~ 3 px).
    fold : int, optional
        The core's k-grid extends to ``fold`` x Nyquist (aliases up to there are folded in).
        Default from the PSF: where at most ``PSF.FOLD_TAIL`` (1e-4) of the integral of ``|E|``
        along a k axis lies beyond, at most 16: 1 (and no oversampling) for a band-limited stamp
        sampled at the image's pixels or a Moffat of FWHM >~ 4 px, 5-6 for a
        quintic-interpolated survey stamp.
    core_minor_px : float
        Minimum minor semi-axis of the Fourier-rendered core, in pixels.  Default
        ``max(2, 4 / oversample)``: the halo starts >= 4 halo samples from the centre.
    core_major_px : float
        Maximum major semi-axis of the core (pixels); sets the patch size.  Default
        ``core_minor_px / 0.15`` (the full minor axis for any q >= 0.15), at most half the image.
    psf_flux_fraction : float
        The PSF is truncated at the radius enclosing this fraction of its flux (default
        1 - 1e-7) or at the image's diagonal, whichever is smaller: farther light joins no
        two pixels of the image.  Power-law wings (Moffat) are cut sooner, where their density
        falls below 1e-6 of the peak, keeping at least 1 - 1e-4 of the flux, and far enough that
        the periodic copies wrap at most 1e-5 of it into the image (:meth:`_wing_reach`).  The
        FFT canvas is the image plus that radius on every side.
    psf_radius : int, optional
        The PSF's truncation radius (pixels) instead of the default above, e.g. the largest of
        several images' defaults, to give their renderers one structure (:meth:`sampling`).
    wings : bool, optional
        Remove what the core patch's and the halo kernels' periodic copies of a power-law PSF
        wing (:meth:`~bayesprof.psf.PSF.wing_params`, Moffat) wrap onto the image.  Default
        (:meth:`sampling`): where that light would exceed ``WING_WRAP_TOL`` (1e-5) of a source's
        flux (5.7e-4 of a point source's flux in a 48 x 48 image at beta = 1.5; at beta = 3 the
        truncation radius of :meth:`_wing_reach` keeps it below).
    pixel_map : PixelMap, optional
        ``image.pixel_map(reference)`` when the caller has made it already.
    """

    def __init__(self, image, reference=None, *, oversample=None, fold=None, core_minor_px=None, core_major_px=None,
                 psf_flux_fraction=1 - 1e-7, psf_radius=None, wings=None, pixel_map=None):
        if image.psf is None:
            raise ValueError(f"Image {image.name!r} has no PSF: give psf=GaussianPSF(...), MoffatPSF(...) or PixelPSF(...)")
        self.image = image
        self.reference = image.center_sky() if reference is None else reference
        self.pixel_map = image.pixel_map(self.reference) if pixel_map is None else pixel_map
        self.shape = ny, nx = image.shape
        scale = float(image.pixel_scale)
        psf = image.psf
        given = psf_radius and fold and oversample and wings is not None
        auto = self.sampling(image, psf_flux_fraction) if not given else {}
        self.psf_radius = R = int(psf_radius) if psf_radius else auto["psf_radius"]
        self.fold = fold = int(fold) if fold else auto["fold"]
        self.oversample = S = int(oversample) if oversample else auto["oversample"]
        wings = bool(auto["wings"] if wings is None else wings) and psf.wing_params(scale) is not None
        self._wing_type = type(psf) if wings else None
        self._wing_params = np.asarray(psf.wing_params(scale) if wings else np.zeros(2), dtype=float)

        # ---- halo: canvas = image + R margin, sub-lattices, E kernels per sub-lattice
        self.canvas = (ny + 2 * R, nx + 2 * R)
        self.fft_shape = (next_fast_len(self.canvas[0]), next_fast_len(self.canvas[1]))
        offs = (np.arange(S) + 0.5) / S - 0.5
        oy, ox = np.meshgrid(offs, offs, indexing="ij")
        self._sub_offsets = np.stack([oy.ravel(), ox.ravel()], axis=1)  # (S^2, 2) as (dy, dx)
        cy = np.arange(self.canvas[0]) - R
        cx = np.arange(self.canvas[1]) - R
        self._halo_y = cy[None, :, None] + self._sub_offsets[:, 0, None, None]  # (S^2, Cy, 1)
        self._halo_x = cx[None, None, :] + self._sub_offsets[:, 1, None, None]  # (S^2, 1, Cx)
        self._halo_kernels_ft = self._halo_kernels(psf, scale, R, fold)

        # ---- core patch: fine k-grid (fold x Nyquist), E's transform on it
        self.core_minor_px = float(core_minor_px) if core_minor_px else max(2.0, 4.0 / S)
        major = core_major_px if core_major_px else self.core_minor_px / 0.15
        self.core_major_px = float(min(major, max(4.0, 0.5 * max(ny, nx))))
        P = next_fast_len(2 * (int(np.ceil(_U_MAX * self.core_major_px)) + R) + 4)
        P += P % 2
        self.patch = P
        m = fold
        fx = np.arange(m * P // 2 + 1)
        fy = np.fft.fftfreq(m * P, d=1.0 / (m * P)).astype(int)
        kx, ky = 2 * np.pi * fx / P, 2 * np.pi * fy / P
        self._core_kx = kx[None, :]
        self._core_ky = ky[:, None]
        self._core_psf = _on_grid(psf, fx, fy, 2 * np.pi / P, scale)
        kmax = np.hypot(kx.max(), np.abs(ky).max())
        self._table = _hankel_table(self.core_major_px * kmax * 1.001)

        self.counts_per_ujy = float(profiles.flux_to_counts(1.0, image.zeropoint))

    @classmethod
    def sampling(cls, image, psf_flux_fraction=1 - 1e-7):
        """The image's default ``psf_radius`` (pixels), ``fold`` and ``oversample`` (see the class
        docstring), without building the renderer.  Renderers of images of one shape built with
        common values (the largest of each) share one structure, hence one compiled program."""
        ny, nx = image.shape
        scale = float(image.pixel_scale)
        psf = image.psf
        efour = lambda kx, ky: psf.effective_fourier(kx, ky, scale)  # noqa: E731
        # the PSF reaches at most across the image's diagonal: farther light joins no two pixels
        # of the image (it would only carry light of sources beyond that distance outside it)
        reach = psf.radius(scale, psf_flux_fraction)
        wp = psf.wing_params(scale)
        if wp is not None:
            reach = min(reach, cls._wing_reach(type(psf), wp, ny * nx))
        R = int(np.ceil(min(reach, np.hypot(ny, nx)))) + 1
        # the folding limit: where at most FOLD_TAIL of the integral of |E| along a k axis lies
        # beyond (the error of a point source relative to its peak, measured), for every PSF.
        # For an interpolated stamp a pointwise threshold would ask for ~16x folding: beyond the
        # stamp's Nyquist wavenumber its transform is the interpolant's k^-4 ghosts of the
        # stamp's Nyquist power.  For analytic PSFs a pointwise rule folds more than this accuracy
        # needs (a beta = 3 Moffat of FWHM 4 px twice instead of once, at 4x the core's cost).
        k, tail = psf.axis_tail(scale)
        fold = int(min(16, max(1, np.ceil(k[np.searchsorted(-tail, -psf.FOLD_TAIL)] / np.pi))))
        if hasattr(psf, "OVERSAMPLE_TAIL"):
            k_over = k[np.searchsorted(-tail, -psf.OVERSAMPLE_TAIL)]
        else:  # the halo's band limit pointwise: a tail rule undersamples sharp PSFs (FWHM ~1 px)
            k_over = cls._k_extent(efour, 1e-6)
        # the periodic copies (period ~2R) of a power-law wing wrap ~8 density(2R) per pixel
        wings = wp is not None and float(cls._wrapped_fraction(type(psf), wp, R, ny * nx)) > cls.WING_WRAP_TOL
        return {"psf_radius": R, "fold": fold, "oversample": max(1, int(np.ceil(k_over / (2 * np.pi) + 0.5))),
                "wings": bool(wings)}

    #: power-law PSF wings are truncated where their density falls below this fraction of the
    #: peak and at most WING_FLUX_BEYOND of the flux lies beyond (see :meth:`_wing_reach`)
    WING_DENSITY_TOL = 1e-6
    WING_FLUX_BEYOND = 1e-4
    #: the periodic copies' wrapped light (fraction of a source's flux in the image) above which
    #: it is removed (``wings``; the truncation radius grows to avoid it where the image's
    #: diagonal allows: the correction costs a compile several times longer)
    WING_WRAP_TOL = 1e-5

    @classmethod
    def _wing_reach(cls, wing_type, params, n_pixels):
        """Truncation radius (px) of a PSF with power-law wings, the largest of: the radius where
        the density falls to ``WING_DENSITY_TOL`` of its peak (what truncation leaves out of any
        pixel, relative to a point source's peak); the radius beyond which ``WING_FLUX_BEYOND``
        of the flux lies (the most it can leave out of an image's sum); and the radius whose
        periodic copies (period ~2R) wrap at most ``WING_WRAP_TOL`` of a source's flux into an
        image of ``n_pixels`` (so that no correction, ``wings``, is needed).  A flux fraction of
        1 - 1e-7, right for Gaussian-like PSFs, asks a beta = 3 Moffat of FWHM 3.8 px for 210 px
        (capped at the image's diagonal); this asks for 45 px in a 64 x 64 image: the renderer's
        canvases and core patch shrink accordingly."""
        r = np.geomspace(0.5, 1e6, 4000)
        dens = wing_type.wing_density(r * r, params)
        r_dens = r[np.searchsorted(-dens / wing_type.wing_density(0.0, params), -cls.WING_DENSITY_TOL)]
        r_flux = r[np.searchsorted(-wing_type.wing_outside(r, params), -cls.WING_FLUX_BEYOND)]
        r_wrap = r[np.searchsorted(-cls._wrapped_fraction(wing_type, params, r, n_pixels), -cls.WING_WRAP_TOL)]
        return float(max(r_dens, r_flux, r_wrap))

    @staticmethod
    def _wrapped_fraction(wing_type, params, R, n_pixels):
        """Estimate of the fraction of a source's flux that the periodic copies (period ~2R) of a
        PSF truncated at ``R`` px wrap into an image of ``n_pixels``: ~8 x density(2R) per pixel."""
        return 8.0 * wing_type.wing_density((2.0 * np.asarray(R, dtype=float)) ** 2, params) * n_pixels

    # ------------------------------------------------------------ pytree
    # A Renderer is a pytree: its tables are array leaves and only the sizes that shape the
    # computation are static, so renderers of images with the same sizes, PSF sampling and WCS
    # polynomial degree share one compiled program (other data, positions, zeropoints or PSFs
    # of the same kind do not recompile).
    _LEAVES = ("pixel_map", "_halo_x", "_halo_y", "_halo_kernels_ft", "_core_kx", "_core_ky", "_core_psf",
               "_table_matrix", "counts_per_ujy", "core_minor_px", "core_major_px", "_wing_params")
    _STATIC = ("shape", "psf_radius", "canvas", "fft_shape", "patch", "fold", "oversample", "_wing_type")

    @property
    def _table_matrix(self):
        return self._table.matrix if isinstance(self._table, _HankelTable) else self._table

    def tree_flatten(self):
        return tuple(getattr(self, k) for k in self._LEAVES), tuple(getattr(self, k) for k in self._STATIC)

    @classmethod
    def tree_unflatten(cls, static, leaves):
        obj = object.__new__(cls)
        for k, v in zip(cls._STATIC, static):
            setattr(obj, k, v)
        for k, v in zip(cls._LEAVES, leaves):
            setattr(obj, "_table" if k == "_table_matrix" else k, v)
        return obj

    # ------------------------------------------------------------ set-up helpers
    @staticmethod
    def _k_extent(efour, tol, diagonal=True):
        """Largest |k| (rad/px) along the x axis (and the diagonal) where |E(k)| > tol."""
        k = np.linspace(0, 16 * np.pi, 4097)
        vals = np.abs(efour(k, 0 * k))
        if diagonal:
            vals = np.maximum(vals, np.abs(efour(k / np.sqrt(2), k / np.sqrt(2))))
        above = np.nonzero(vals > tol)[0]
        return k[above[-1]] if above.size else 0.0

    def _halo_kernels(self, psf, scale, R, fold):
        """rfft2 of E sampled at (integer - sub-lattice offset), one kernel per sub-lattice.

        E is sampled through its transform on a period of Lp >= 2R + 2 pixels (so the kernel's
        2R + 1 taps are distinct and each one's nearest periodic copy lies beyond R: the
        aliasing is below the truncation at R), with all frequencies up to (fold + 1) x Nyquist
        folded onto the period's lattice.

        Frequency ``a Lp + i + f0`` (alias ``a``, lattice index ``i``) carries the offset's phase
        e^{-2 pi i (i + f0) o / Lp} e^{-2 pi i a o}: the first factor is common to the aliases, so
        the fold of every sub-lattice is one contraction of E's aliases with the second."""
        Lp = next_fast_len(max(2 * R + 2, 32))
        A = fold + 1
        f0 = -(Lp * A) // 2
        freq = f0 + np.arange(Lp * A)
        E4 = _on_grid(psf, freq, freq, 2 * np.pi / Lp, scale).reshape(A, Lp, A, Lp)  # [a_y, i, a_x, j]
        S = self.oversample
        offs = self._sub_offsets[:S, 1]  # the S offsets along one axis (the same along both)
        alias = np.exp(-2j * np.pi * np.arange(A)[None, :] * offs[:, None])  # (S, A)
        common = np.exp(-2j * np.pi * (np.arange(Lp)[None, :] + f0) * offs[:, None] / Lp)  # (S, Lp)
        # over the x aliases (E real: two real products), then the y aliases: (S_y, Lp, Lp, S_x)
        Ex = np.moveaxis(E4, 2, 3)  # [a_y, i, j, a_x]
        folded = (Ex @ alias.real.T) + 1j * (Ex @ alias.imag.T) if np.isrealobj(Ex) else Ex @ alias.T
        folded = np.tensordot(alias, folded, axes=([1], [0]))
        folded = np.moveaxis(folded, 3, 1) * (common[:, None, :, None] * common[None, :, None, :])
        roll = int(f0 % Lp)  # lattice index i is frequency i + f0 (mod Lp)
        e_real = np.fft.ifft2(np.roll(folded, (roll, roll), axis=(2, 3))).real.reshape(S * S, Lp, Lp)
        Ly, Lx = self.fft_shape
        mm = np.arange(-R, R + 1)
        if self._wing_type is not None:  # tap m holds E(m - o) plus its copies a period Lp away
            for s_, (dy, dx) in enumerate(self._sub_offsets):
                wrapped = _alias_sum(self._wing_type, self._wing_params, (mm - dx)[None, :], (mm - dy)[:, None], Lp)
                e_real[s_][np.ix_(np.mod(mm, Lp), np.mod(mm, Lp))] -= wrapped
        kern = np.zeros((S * S, Ly, Lx))
        kern[:, np.mod(mm, Ly)[:, None], np.mod(mm, Lx)[None, :]] = e_real[:, np.mod(mm, Lp)[:, None], np.mod(mm, Lp)[None, :]]
        return np.fft.rfft2(kern) / (S * S)  # h^2 = 1/S^2 sample weight folded in

    # ------------------------------------------------------------ per-call (pure JAX)
    def _geometry(self, comp):
        """Centre (pixels), T (pixel offset -> ellipse-frame arcsec) and core radius r_c (arcsec)."""
        x0, y0 = self.pixel_map(comp.xi, comp.eta)
        J = self.pixel_map.jacobian(comp.xi, comp.eta)  # d(x, y)/d(xi, eta), px/arcsec
        pa = jnp.deg2rad(comp.pa)
        s, c = jnp.sin(pa), jnp.cos(pa)
        rot = jnp.array([[s, c], [c / comp.q, -s / comp.q]])
        T = rot @ _inv2(J)
        a = jnp.sum(T * T)
        det = jnp.abs(_det2(T))
        r_c = jnp.minimum(self.core_minor_px * jnp.sqrt(a), self.core_major_px * det / jnp.sqrt(a))
        return x0, y0, T, det, r_c

    def _halo(self, comp, x0, y0, T, det, r_c, counts):
        dx = self._halo_x - x0
        dy = self._halo_y - y0
        w1 = T[0, 0] * dx + T[0, 1] * dy
        w2 = T[1, 0] * dx + T[1, 1] * dy
        rho = _safe_norm(w1, w2)
        _, outside = _taper(rho / r_c)
        return counts * det * jnp.exp(comp.log_density(rho)) * outside

    def _core_patch(self, comp, x0, y0, T, r_c, counts, point):
        P, m = self.patch, self.fold
        if point:
            spectrum = jnp.ones(self._core_psf.shape)
        else:
            u = jnp.asarray(_U_EDGES)
            enclosed = comp.enclosed(r_c * u)
            inside, _ = _taper(jnp.asarray(_U_MID))
            weights = (enclosed[1:] - enclosed[:-1]) * inside
            table = jnp.asarray(self._table_matrix) @ weights
            Tinv_T = _inv2(T).T
            k1 = Tinv_T[0, 0] * self._core_kx + Tinv_T[0, 1] * self._core_ky
            k2 = Tinv_T[1, 0] * self._core_kx + Tinv_T[1, 1] * self._core_ky
            kappa = r_c * _safe_norm(k1, k2)
            spectrum = _interp_table(table, kappa)
        # the shift to the centre (x0, y0) is a phase, separable: e^{-i kx x0} (row) times e^{-i ky y0}
        # (column); the wavenumbers are multiples of 2 pi / P, so only x0 mod P matters (reduced
        # first, for the phase's accuracy) and patch[(y, x) mod P] is the model at image pixel (y, x)
        ddx = x0 - P * jnp.floor(x0 / P)
        ddy = y0 - P * jnp.floor(y0 / P)
        phase_x = jnp.exp(-1j * self._core_kx * ddx)
        phase_y = jnp.exp(-1j * self._core_ky * ddy)
        spec = (counts * spectrum) * (self._core_psf * phase_x) * phase_y  # (m P, m P / 2 + 1)
        # pixel centres are every m-th point of the fine grid: sampling there folds the ky axis
        # onto P frequencies (sum of the m aliases), so the y transform has length P, not m P;
        # the kx half-spectrum keeps its length-m P real inverse (then every m-th column)
        # the barriers here and before the halo's FFT make XLA materialise the FFT inputs instead of
        # fusing their elementwise work (per tangent, in a Jacobian) into the FFT's padding and
        # copies: the forward-mode Jacobian of the r image of the seed scene took 6.4 ms without
        # them, 4.2 ms with them (2-core CPU)
        spec = jax.lax.optimization_barrier(spec)
        folded = spec.reshape(m, P, spec.shape[1]).sum(axis=0)
        rows = jnp.fft.ifft(folded, axis=0)
        patch = jnp.fft.irfft(rows, n=m * P, axis=1)[:, ::m] * m
        return patch, counts * jnp.real(spectrum[0, 0])  # the patch and its light (counts)

    def _place(self, patch, core_counts, x0, y0):
        """The periodic core ``patch`` (image pixel (y, x) at patch[y mod P, x mod P]) on the image:
        tiled over it and cut to the P x P window centred on the source (the core and its PSF
        wings lie inside, the periodic copies outside).  No canvas beyond the image is needed, and
        a source far off the image contributes zero.  With power-law PSF wings, what the periodic
        copies of the core's ``core_counts`` wrap into the window is removed (:func:`_alias_sum`)."""
        ny, nx = self.shape
        P = self.patch
        tiled = jnp.tile(patch, (-(-ny // P), -(-nx // P)))[:ny, :nx]
        j0 = jnp.floor(y0) - P // 2
        i0 = jnp.floor(x0) - P // 2
        y = np.arange(ny)
        x = np.arange(nx)
        rows = (y >= j0) & (y < j0 + P)
        cols = (x >= i0) & (x < i0 + P)
        if self._wing_type is not None:
            wrapped = _alias_sum(self._wing_type, self._wing_params, x[None, :] - x0, y[:, None] - y0, P)
            tiled = tiled - core_counts * wrapped
        return jnp.where(rows[:, None] & cols[None, :], tiled, 0.0)

    def _parts(self, comp):
        """One source's light: its core placed on the image, and its halo samples (None for a
        point source) on the canvas's sub-lattices, before the PSF convolution."""
        counts = comp.flux * self.counts_per_ujy
        x0, y0, T, det, r_c = self._geometry(comp)
        core = self._place(*self._core_patch(comp, x0, y0, T, r_c, counts, comp.is_point), x0, y0)
        halo = None if comp.is_point else self._halo(comp, x0, y0, T, det, r_c, counts)
        return core, halo

    def _convolve_halo(self, halo):
        """The halo samples (sub-lattices, canvas) convolved with the effective PSF, on the image."""
        ny, nx = self.shape
        R = self.psf_radius
        Ly, Lx = self.fft_shape
        halo = jax.lax.optimization_barrier(halo)
        spec = jnp.fft.rfft2(halo, s=(Ly, Lx))
        conv = jnp.fft.irfft2(jnp.sum(spec * self._halo_kernels_ft, axis=-3), s=(Ly, Lx))
        return conv[..., R:R + ny, R:R + nx]

    def render_stacks(self, stacks, barrier=False):
        """Model image of ``stacks``: a list of components whose parameters carry a leading axis
        (one entry per source, :func:`stack`).  Each stack is rendered by one ``vmap`` over its
        sources, so the traced program does not grow with their number; the halos of all
        sources are summed before one PSF convolution.

        ``barrier``: materialise each stack's light before the sums.  For renders batched over
        images (``vmap``), where XLA's CPU fusion otherwise slows the gradient down by more than
        a third; a lone image's render is faster without it (``benchmarks/RESULTS.md``, "Images
        in batches")."""
        model = jnp.zeros(self.shape)
        halo = None
        for comps in stacks:
            if jax.tree_util.tree_leaves(comps)[0].shape[0] == 1:  # a lone source: no batch axis
                core, h = self._parts(jax.tree_util.tree_map(lambda a: a[0], comps))
            else:
                core, h = jax.vmap(self._parts)(comps)
                core, h = jnp.sum(core, axis=0), None if h is None else jnp.sum(h, axis=0)
            if barrier:
                core, h = jax.lax.optimization_barrier((core, h))
            model = model + core
            if h is not None:
                halo = h if halo is None else halo + h
        if halo is not None:
            model = model + self._convolve_halo(halo)
        return model

    def render_one(self, comp):
        """Model image of one (unstacked) component: its core plus its convolved halo."""
        core, halo = self._parts(comp)
        return core if halo is None else core + self._convolve_halo(halo)

    def __call__(self, components):
        """Model image (counts per pixel, shape ``image.shape``) of a component or a list of them."""
        if isinstance(components, Component):
            components = [components]
        return _render_components(self, list(components))


def _det2(M):
    """Determinant of a 2 x 2 matrix, in closed form."""
    return M[0, 0] * M[1, 1] - M[0, 1] * M[1, 0]


def _inv2(M):
    """Inverse of a 2 x 2 matrix, in closed form: ``jnp.linalg.inv`` lowers to an LU
    factorisation with triangular solves (and more in its derivatives), which made up a tenth of
    a scene's compiled program for four numbers."""
    return jnp.array([[M[1, 1], -M[0, 1]], [-M[1, 0], M[0, 0]]]) / _det2(M)


@jax.jit
def _render_components(renderer, components):
    """One compiled program per renderer structure and list of component types."""
    return renderer.render_stacks(stack_groups(components))


def stack(components):
    """One component of the common type whose parameters are the ``components``' parameters
    stacked along a new leading axis (they must share the type and its static fields)."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack([jnp.asarray(a, dtype=float) for a in leaves]),
                                  *components)


def stack_groups(components):
    """``components`` grouped by pytree structure (type and static fields, e.g. spline knots),
    each group :func:`stack`-ed, in order of first appearance."""
    groups = {}
    for c in components:
        groups.setdefault(jax.tree_util.tree_structure(c), []).append(c)
    return [stack(g) for g in groups.values()]


_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def render(components, image, reference=None):
    """Render ``components`` (one or a list) into ``image``; returns the model (counts/pixel).

    Convenience wrapper caching one :class:`Renderer` per image (and reference); for
    repeated calls inside your own jitted code, build a :class:`Renderer` once.
    """
    key = None if reference is None else (float(reference.ra.deg), float(reference.dec.deg))
    per_image = _CACHE.setdefault(image, {})
    if key not in per_image:
        per_image[key] = Renderer(image, reference)
    return per_image[key](components)
