"""Point-spread functions.

A PSF is fixed during a fit, so everything here is evaluated once per image with
numpy at set-up time; the renderer only needs the PSF's Fourier transform
``fourier(kx, ky, pixel_scale)`` at wavenumbers in radians per *image* pixel
(unit flux: ``fourier(0, 0) == 1``) and a radius that contains it.

Classes
-------
``GaussianPSF(fwhm)``, ``MoffatPSF(fwhm, beta)``
    Analytic, circular; FWHM in arcsec.  They describe the optical/atmospheric PSF,
    so the renderer adds the pixel response (integration over each pixel).
``PixelPSF(image, pixel_scale, includes_pixel=True)``
    A PSF image sampled at ``pixel_scale`` arcsec/px (finer than the science image for
    an oversampled PSF; odd or even size; any normalisation).  **Centring convention**:
    the PSF centre is at 0-indexed array position ((nx-1)/2, (ny-1)/2), i.e. the central
    pixel for odd sizes and the corner shared by the four central pixels for even sizes
    (GalSim's ``true_center``).  **Interpolation**: a well-sampled stamp (its transform on the
    Nyquist boundary at most ``PixelPSF.BANDLIMIT_TOL`` = 1e-2 of its sum) is taken as
    band-limited (sinc interpolation): exact for a PSF sampled above Nyquist, closer to the
    sampled PSF than the quintic whenever that holds, and the renderer then needs no folding
    (several times faster).  Otherwise the samples are interpolated with GalSim's quintic
    interpolant (Bernstein & Gruen 2014).
    ``interpolant=`` forces one.  ``includes_pixel=True`` (the default) means the
    stamp is an *effective* PSF that already contains the detector's pixel response, as
    PSFEx models and most survey PSF stamps do; ``False`` means samples of the optical PSF
    alone, and the renderer then integrates over pixels.  The stamp axes are the image's
    pixel axes.  ``sampling=`` (instead of ``pixel_scale``) gives the sample spacing in
    image pixels, for stamps defined in pixels (PSFEx's ``PSF_SAMP``).
``gaussian_psf(sigma, width, pixel_scale)``
    The JointModels tutorial's helper: a ``width`` x ``width`` pixel-integrated Gaussian
    stamp (sigma in arcsec) as a :class:`PixelPSF`.
``PSFExModel.from_fits(path, ccdname=None)``
    A position-dependent PSFEx model (Bertin 2011), read from a standard PSFEx ``.psf``
    file or from a legacypipe "merged" file (one table row per CCD); ``.at(x, y)`` gives
    the normalised effective PSF at CCD pixel ``(x, y)`` (0-indexed) as a :class:`PixelPSF`;
    ``is_psfex_file(path)`` tells PSFEx files from PSF images by their content.
"""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
from astropy.io import fits
from scipy import special

__all__ = ["PSF", "GaussianPSF", "MoffatPSF", "PixelPSF", "PSFExModel", "is_psfex_file", "gaussian_psf",
           "FWHM_PER_SIGMA"]

#: FWHM / sigma of a Gaussian.
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def pixel_response(kx, ky):
    """Fourier transform of the unit square pixel: sinc(kx/2) sinc(ky/2) (k in rad/px)."""
    return np.sinc(kx / (2 * np.pi)) * np.sinc(ky / (2 * np.pi))


class PSF:
    """Base class. Subclasses define :meth:`fourier` and :meth:`radius`."""

    #: whether the PSF already contains the detector pixel response
    includes_pixel: bool = False
    #: True when the PSF is circular (its transform a function of ``|k|`` alone): the renderer then
    #: evaluates it once per distinct ``|k|``
    circular: bool = False

    def fourier(self, kx, ky, pixel_scale):  # pragma: no cover - interface
        raise NotImplementedError

    def radius(self, pixel_scale, flux_fraction=1 - 1e-6):
        """Radius (image pixels) containing ``flux_fraction`` of the PSF's flux."""
        raise NotImplementedError  # pragma: no cover - interface

    def wing_params(self, pixel_scale):
        """The parameters of :meth:`wing_density` and :meth:`wing_outside` (an array), for a
        PSF with analytic power-law wings (Moffat); None for one whose wings are negligible or
        compact (Gaussian, stamps)."""
        return None

    def effective_fourier(self, kx, ky, pixel_scale):
        """FT of the effective PSF (PSF convolved with the pixel response) at k (rad/px)."""
        f = self.fourier(kx, ky, pixel_scale)
        return f if self.includes_pixel else f * pixel_response(kx, ky)

    #: The renderer's folding rule (see :mod:`bayesprof.render`): the fraction of the 1-D axis
    #: profile of ``|E(k)|`` beyond the folding limit m pi that may be left out.  It bounds the
    #: error of a point source relative to its peak (measured: 8.6e-5 for a beta = 3 Moffat of
    #: FWHM 4 px folded once, where 3.9e-5 of the profile lies beyond pi).
    FOLD_TAIL = 1e-4

    def axis_tail(self, pixel_scale, kmax=16 * np.pi, n=4097):
        """(k, tail): the fraction of the integral of ``|E(k, 0)|`` over 0 <= k (rad / image pixel)
        that lies beyond each k; E is the effective PSF.  Beyond ``kmax`` a transform falling as
        k^-4 (a quintic-interpolated stamp's) is assumed, so the remainder is ``|E(kmax)| kmax / 3``
        (zero for a band-limited stamp, negligible for the analytic PSFs)."""
        k = np.linspace(0.0, kmax, n)
        e = np.abs(self.effective_fourier(k, 0.0 * k, pixel_scale))
        dk = k[1] - k[0]
        beyond = np.cumsum(e[::-1])[::-1] * dk + e[-1] * kmax / 3.0
        return k, beyond / beyond[0]



def _check_positive(name, value):
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _scaled_kv(nu, x):
    """e^x K_nu(x) (modified Bessel function of the second kind, exponentially scaled); for
    integer nu <= 20 by the upward recurrence K_(j+1) = K_(j-1) + (2 j / x) K_j from K_0 and K_1
    (stable for K; ~3x faster than scipy's general-order ``kve``)."""
    n = int(round(nu))
    if abs(nu - n) > 1e-12 or not 0 <= n <= 20:
        return special.kve(nu, x)
    k_prev, k = special.k0e(x), special.k1e(x)
    if n == 0:
        return k_prev
    for j in range(1, n):
        k_prev, k = k, k_prev + (2.0 * j / x) * k
    return k


class GaussianPSF(PSF):
    """Circular Gaussian PSF with full width at half maximum ``fwhm`` (arcsec)."""

    circular = True

    def __init__(self, fwhm):
        self.fwhm = _check_positive("GaussianPSF fwhm", fwhm)

    def sigma_pixels(self, pixel_scale):
        return self.fwhm / FWHM_PER_SIGMA / pixel_scale

    def fourier(self, kx, ky, pixel_scale):
        s = self.sigma_pixels(pixel_scale)
        return np.exp(-0.5 * s * s * (np.square(kx) + np.square(ky))).astype(complex)

    def radius(self, pixel_scale, flux_fraction=1 - 1e-6):
        # fraction outside r for a 2-D Gaussian: exp(-r^2 / 2 sigma^2)
        return self.sigma_pixels(pixel_scale) * np.sqrt(-2.0 * np.log(1.0 - flux_fraction))


    def __repr__(self):
        return f"GaussianPSF(fwhm={self.fwhm:g} arcsec)"


class MoffatPSF(PSF):
    """Circular Moffat PSF (1 + r^2/alpha^2)^-beta, ``fwhm`` in arcsec, ``beta`` > 1."""

    circular = True

    def __init__(self, fwhm, beta=2.5):
        self.fwhm = _check_positive("MoffatPSF fwhm", fwhm)
        self.beta = float(beta)
        if not self.beta > 1.0:
            raise ValueError(f"MoffatPSF beta must be > 1 (finite flux), got {beta!r}")

    def alpha_pixels(self, pixel_scale):
        return self.fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / self.beta) - 1.0)) / pixel_scale

    def fourier(self, kx, ky, pixel_scale):
        # Hankel transform of the unit-flux Moffat: 2 (k a / 2)^(b-1) K_(b-1)(k a) / Gamma(b-1)
        a = self.alpha_pixels(pixel_scale)
        nu = self.beta - 1.0
        x = np.hypot(kx, ky) * a
        small = x < 1e-8
        xs = np.where(small, 1.0, x)
        val = 2.0 * np.exp(nu * np.log(xs / 2.0) - special.gammaln(nu) - xs) * _scaled_kv(nu, xs)
        return np.where(small, 1.0, val).astype(complex)

    def radius(self, pixel_scale, flux_fraction=1 - 1e-6):
        # fraction outside r: (1 + r^2/a^2)^(1 - beta)
        a = self.alpha_pixels(pixel_scale)
        return a * np.sqrt((1.0 - flux_fraction) ** (1.0 / (1.0 - self.beta)) - 1.0)

    def wing_params(self, pixel_scale):
        return np.array([self.alpha_pixels(pixel_scale), self.beta])

    @staticmethod
    def wing_density(r2, params):
        """The unit-flux Moffat per px^2 at squared radius ``r2`` (px^2), ``params`` =
        (alpha in px, beta); numpy or JAX.  Far from the centre, where it is used, the pixel
        response changes it by ~beta / r^2 (relative), which is neglected."""
        a, b = params[0], params[1]
        return (b - 1.0) / (np.pi * a * a) * (1.0 + r2 / (a * a)) ** (-b)

    @staticmethod
    def wing_outside(r, params):
        """The fraction of the Moffat's flux beyond radius ``r`` (px)."""
        a, b = params[0], params[1]
        return (1.0 + r * r / (a * a)) ** (1.0 - b)

    @classmethod
    def fit_stamp(cls, stamp, pixel_scale, *, core_fraction=0.02, subsample=5):
        """The Moffat that best fits the core of a PSF stamp.

        For stamps whose wings cannot be trusted (negative rings, truncation; the KiDS
        stamps of ``gama-kids-sdss`` lose 16 % of their sum to negative pixels): only the
        pixels above ``core_fraction`` of the peak are fitted, by least squares, and the
        Moffat then supplies wings with the fitted ``beta``.  The stamp is taken to be an
        *effective* PSF (pixel response included, as survey stamps are): the model is the
        Moffat integrated over each stamp pixel (``subsample`` x ``subsample`` points per
        pixel), its centre, amplitude, FWHM (arcsec) and beta all free.  ``pixel_scale``:
        the stamp's sampling in arcsec/px.  Returns a :class:`MoffatPSF`; the fitted
        centre (0-indexed pixels) and the rms of the core residuals relative to the peak are
        set as ``center`` and ``core_rms`` attributes.
        """
        from scipy.optimize import least_squares

        p = np.asarray(stamp, dtype=float)
        if p.ndim != 2 or min(p.shape) < 5 or not np.isfinite(p).all():
            raise ValueError(f"fit_stamp needs a finite 2-D stamp of at least 5x5 pixels, got shape {p.shape}")
        peak = p.max()
        if not peak > 0:
            raise ValueError("fit_stamp: the stamp has no positive pixel")
        core = p > core_fraction * peak
        if core.sum() < 6:
            raise ValueError(f"fit_stamp: only {core.sum()} pixels above core_fraction={core_fraction} of the peak")
        y, x = np.indices(p.shape)
        off = (np.arange(subsample) + 0.5) / subsample - 0.5
        sx, sy = np.meshgrid(off, off)
        xs = (x[core][:, None] + sx.ravel()).ravel()
        ys = (y[core][:, None] + sy.ravel()).ravel()
        target = p[core] / peak
        cy0, cx0 = np.unravel_index(np.argmax(p), p.shape)

        def model(t):
            amp, cx, cy, log_a, log_bm1 = t
            a2 = np.exp(2 * log_a)
            r2 = (xs - cx) ** 2 + (ys - cy) ** 2
            m = (1.0 + r2 / a2) ** (-(1.0 + np.exp(log_bm1)))
            return amp * m.reshape(-1, subsample * subsample).mean(axis=1)

        res = least_squares(lambda t: model(t) - target, [1.0, cx0, cy0, np.log(1.5), np.log(1.5)],
                            bounds=([0, cx0 - 2, cy0 - 2, np.log(0.1), np.log(0.05)],
                                    [np.inf, cx0 + 2, cy0 + 2, np.log(p.shape[0]), np.log(50.0)]))
        if not res.success:
            raise RuntimeError(f"fit_stamp: the Moffat fit failed ({res.message})")
        _, cx, cy, log_a, log_bm1 = res.x
        beta = 1.0 + float(np.exp(log_bm1))
        fwhm = 2.0 * float(np.exp(log_a)) * np.sqrt(2.0 ** (1.0 / beta) - 1.0) * float(pixel_scale)
        out = cls(fwhm, beta)
        out.center = (float(cx), float(cy))
        out.core_rms = float(np.sqrt(np.mean(res.fun**2)))
        return out

    def __repr__(self):
        return f"MoffatPSF(fwhm={self.fwhm:g} arcsec, beta={self.beta:g})"


# Quintic interpolant of Bernstein & Gruen (2014), as used by GalSim: piecewise polynomial on
# |x| in [0,1], [1,2], [2,3]; coefficients from the highest power down.
_QUINTIC = (
    np.array([-55 / 12, 23 / 2, -95 / 12, 0.0, 0.0, 1.0]),
    np.array([55 / 24, -69 / 4, 1205 / 24, -70.0, 185 / 4, -23 / 2]),
    np.array([-11 / 24, 23 / 4, -685 / 24, 70.0, -339 / 4, 81 / 2]),
)


def quintic_kernel(x):
    """The quintic interpolation kernel K(x) (support |x| < 3, K(0)=1, K(j)=0)."""
    ax = np.abs(np.asarray(x, dtype=float))
    out = np.zeros_like(ax)
    for i, coeffs in enumerate(_QUINTIC):
        sel = (ax >= i) & (ax < i + 1)
        out[sel] = np.polyval(coeffs, ax[sel])
    return out


def quintic_fourier(u):
    """Fourier transform of :func:`quintic_kernel` at angular frequency ``u`` (rad per sample).

    Exact quadrature of the piecewise polynomial (Gauss-Legendre, 48 nodes per unit interval).
    """
    u = np.asarray(u, dtype=float)
    nodes, weights = np.polynomial.legendre.leggauss(48)
    total = np.zeros_like(u)
    for i, coeffs in enumerate(_QUINTIC):
        x = i + 0.5 * (nodes + 1.0)
        kx = np.polyval(coeffs, x) * 0.5 * weights
        total += 2.0 * np.cos(np.multiply.outer(u, x)) @ kx
    return total


class PixelPSF(PSF):
    """A PSF given as an image (see the module docstring for the conventions).

    Parameters
    ----------
    image : 2-D array
        PSF samples, any normalisation (the sum must be finite and > 0).
    pixel_scale : float
        arcsec per PSF pixel.  ``None`` means "the science image's scale" (resolved when
        the PSF is used).
    includes_pixel : bool
        True if the stamp already includes the detector pixel response (effective PSF).
    sampling : float, optional
        Instead of ``pixel_scale``: the PSF sample spacing in *science-image pixels*, for
        stamps defined in the image's own pixels whatever its scale in arcsec (PSFEx's
        ``PSF_SAMP``; 0.5 = sampled twice per image pixel).  Give at most one of the two.
    interpolant : {"auto", "sinc", "quintic"}
        How the PSF is defined between the samples.  ``"sinc"``: band-limited (its transform is
        the samples' discrete-time transform inside the Nyquist square ``|k s| < pi``, zero
        outside), the exact interpolant of a stamp sampled above Nyquist.  Galaxies rendered
        through stamps of a pixel-integrated beta = 3 Moffat differ from the analytic PSF's
        rendering (GalSim) by at most 1e-4, 6e-4 and 2e-3 of the peak at FWHM 4, 3 and 2.5
        samples with it, and 5e-3, 1.3e-2 and 1.9e-2 with the quintic
        (``tests/test_render_accuracy.py``).  ``"quintic"``: GalSim's quintic, compact
        (6 samples), for undersampled stamps, whose band-limited interpolant rings (about
        0.2-0.6 x the Nyquist level below, relative to the peak).  ``"auto"`` (default):
        ``"sinc"`` when :meth:`nyquist_level` is at most ``BANDLIMIT_TOL``, else ``"quintic"``;
        :attr:`interpolant` is the choice made.
    trim : float
        The stamp is cropped (symmetrically about its centre) to the square enclosing the
        circle outside which at most ``trim`` (e.g. 1e-4) of its absolute flux lies, then
        renormalised: survey stamps are often far larger than the PSF, with noisy wings that
        only cost time (the renderer's canvas and core patch grow with the PSF's size).  The
        flux left out changes a fitted flux by at most ``trim``.  None (default) or 0 keeps
        the stamp whole.  ``untrimmed_shape`` is the shape given.
    """

    #: the largest modulus of the transform on the Nyquist boundary, relative to the sum, at which ``"auto"``
    #: takes a stamp as band-limited
    BANDLIMIT_TOL = 1e-2

    def __init__(self, image, pixel_scale=None, includes_pixel=True, sampling=None, trim=None, interpolant="auto"):
        arr = np.array(image, dtype=float)
        if arr.ndim != 2:
            raise ValueError(f"PixelPSF image must be 2-D, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"PixelPSF image has {np.count_nonzero(~np.isfinite(arr))} non-finite pixels")
        total = arr.sum()
        if not total > 0:
            raise ValueError(f"PixelPSF image must have a positive sum, got {total!r}")
        self.trim = 0.0 if trim is None else float(trim)
        if not 0.0 <= self.trim < 0.5:
            raise ValueError(f"PixelPSF trim must be a flux fraction in [0, 0.5), got {trim!r}")
        arr = arr / total
        self.untrimmed_shape = arr.shape
        if self.trim > 0:
            arr = _trim_stamp(arr, self.trim)
        self.image = arr / arr.sum()
        self._radii, self._encircled = _encircled_flux(self.image)
        if pixel_scale is not None and sampling is not None:
            raise ValueError("PixelPSF: give pixel_scale (arcsec per PSF pixel) or sampling "
                             "(image pixels per PSF pixel), not both")
        self.pixel_scale = None if pixel_scale is None else _check_positive("PixelPSF pixel_scale", pixel_scale)
        self.sampling = None if sampling is None else _check_positive("PixelPSF sampling", sampling)
        self.includes_pixel = bool(includes_pixel)
        if interpolant not in ("auto", "sinc", "quintic"):
            raise ValueError(f"PixelPSF interpolant must be 'auto', 'sinc' or 'quintic', got {interpolant!r}")
        if interpolant == "auto":
            interpolant = "sinc" if self.nyquist_level() <= self.BANDLIMIT_TOL else "quintic"
        #: "sinc" (band-limited) or "quintic": how the PSF is defined between its samples
        self.interpolant = interpolant

    def nyquist_level(self):
        """The largest modulus of the samples' discrete-time transform on the boundary of the
        Nyquist square (either wavenumber = pi per sample), relative to their sum: ~0 for a
        well-sampled PSF, ~0.04 for a pixel-integrated Gaussian of FWHM 2 samples."""
        ny, nx = self.image.shape
        u = np.linspace(-np.pi, np.pi, 4 * max(nx, ny) + 1)
        ex = np.exp(-1j * np.multiply.outer(u, np.arange(nx)))
        ey = np.exp(-1j * np.multiply.outer(u, np.arange(ny)))
        alt_x, alt_y = (-1.0) ** np.arange(nx), (-1.0) ** np.arange(ny)  # e^{-i pi n}
        at_kx_pi = ey @ (self.image @ alt_x)  # kx = pi, every ky
        at_ky_pi = (alt_y @ self.image) @ ex.T  # ky = pi, every kx
        return float(max(np.abs(at_kx_pi).max(), np.abs(at_ky_pi).max()))

    def _interpolant_fourier(self, u):
        """Transform of the interpolation kernel at ``u`` (rad per sample): the quintic's, or the
        band limit's box (1 inside |u| < pi, 1/2 on the boundary, where the aliases +-pi meet)."""
        if self.interpolant == "quintic":
            return quintic_fourier(u)
        au = np.abs(u)
        edge = np.isclose(au, np.pi, rtol=1e-12, atol=0.0)
        return np.where(edge, 0.5, (au < np.pi).astype(float))

    def _step(self, pixel_scale):
        """PSF sample spacing in image pixels."""
        if self.sampling is not None:
            return self.sampling
        return 1.0 if self.pixel_scale is None else self.pixel_scale / pixel_scale

    def fourier(self, kx, ky, pixel_scale):
        s = self._step(pixel_scale)
        ny, nx = self.image.shape
        xs = (np.arange(nx) - (nx - 1) / 2.0) * s
        ys = (np.arange(ny) - (ny - 1) / 2.0) * s
        kx = np.asarray(kx, dtype=float)
        ky = np.asarray(ky, dtype=float)
        kxb, kyb = np.broadcast_arrays(kx, ky)
        # separable DFT on the unique wavenumbers, then gather
        ukx, ix = np.unique(kxb, return_inverse=True)
        uky, iy = np.unique(kyb, return_inverse=True)
        ex = np.exp(-1j * np.multiply.outer(ukx, xs))  # (nkx, nx)
        ey = np.exp(-1j * np.multiply.outer(uky, ys))  # (nky, ny)
        table = ey @ self.image @ ex.T  # (nky, nkx)
        iy, ix = iy.reshape(kxb.shape), ix.reshape(kxb.shape)
        # the interpolant's transform on the unique wavenumbers too (on the broadcast grid it
        # cost minutes and gigabytes for the renderer's halo kernels)
        return table[iy, ix] * self._interpolant_fourier(ukx * s)[ix] * self._interpolant_fourier(uky * s)[iy]

    def radius(self, pixel_scale, flux_fraction=1 - 1e-6):
        """Radius (image pixels) of the circle about the centre holding ``flux_fraction`` of the
        stamp's absolute flux (``|samples|``, so noisy negative wings count), plus the quintic
        kernel's reach (3 samples) for fractions that need the outermost samples; never more than
        the stamp's half-size plus 3 samples (the support of the interpolated PSF, a square)."""
        s = self._step(pixel_scale)
        ny, nx = self.image.shape
        half = 0.5 * max(nx, ny) + 3.0
        i = int(np.searchsorted(self._encircled, float(flux_fraction)))
        if i >= len(self._radii):
            return half * s
        r = self._radii[i] + (3.0 if flux_fraction > 1 - self.trim - 1e-12 and self.trim > 0 else 0.5)
        return min(r, half) * s

    #: The renderer's rule for interpolated stamps (see :mod:`bayesprof.render`): the fraction
    #: of the 1-D axis profile of ``|E(k)|`` beyond the halo's band limit that may be left out
    #: (the folding limit follows :attr:`PSF.FOLD_TAIL`, as for every PSF).
    OVERSAMPLE_TAIL = 1e-3


    def __repr__(self):
        ny, nx = self.image.shape
        step = f"sampling={self.sampling:g} px" if self.sampling is not None else f"pixel_scale={self.pixel_scale}"
        return f"PixelPSF({ny}x{nx}, {step}, includes_pixel={self.includes_pixel}, interpolant={self.interpolant!r})"


def _encircled_flux(stamp):
    """(radii, fraction): sorted distances of the samples from the stamp centre ((n-1)/2) and
    the fraction of the absolute flux inside each radius."""
    ny, nx = stamp.shape
    yy, xx = np.indices(stamp.shape, dtype=float)
    r = np.hypot(xx - (nx - 1) / 2.0, yy - (ny - 1) / 2.0).ravel()
    order = np.argsort(r, kind="stable")
    a = np.abs(stamp).ravel()[order]
    return r[order], np.cumsum(a) / a.sum()


def _trim_stamp(stamp, trim):
    """Crop ``stamp`` symmetrically about its centre to the smallest square holding the circle
    beyond which at most ``trim`` of the absolute flux lies (a trimmed stamp keeps its parity)."""
    radii, frac = _encircled_flux(stamp)
    i = int(np.searchsorted(frac, 1.0 - trim))
    r = radii[min(i, len(radii) - 1)]
    ny, nx = stamp.shape
    out = stamp
    for axis, n in ((0, ny), (1, nx)):
        # keep indices j with |j - (n-1)/2| <= r (+ 0.5 so the circle's pixels are whole)
        cut = int(np.floor((n - 1) / 2.0 - r - 0.5))
        if cut > 0:
            out = out[cut:n - cut] if axis == 0 else out[:, cut:n - cut]
    return out


def gaussian_psf(sigma, width, pixel_scale):
    """Pixel-integrated Gaussian PSF stamp (the JointModels tutorial's helper).

    Parameters: ``sigma`` in arcsec, ``width`` the stamp size in pixels, ``pixel_scale`` in
    arcsec/px.  Each stamp pixel holds the Gaussian's integral over that pixel, so the result
    is an effective PSF (``includes_pixel=True``) centred on the stamp centre.
    """
    sigma = _check_positive("sigma", sigma) / _check_positive("pixel_scale", pixel_scale)
    width = int(width)
    if width < 1:
        raise ValueError(f"width must be >= 1 pixel, got {width}")
    edges = np.arange(width + 1) - width / 2.0
    cdf = special.ndtr(edges / sigma)
    line = np.diff(cdf)
    return PixelPSF(np.outer(line, line), pixel_scale=pixel_scale, includes_pixel=True)


# ---------------------------------------------------------------------------
# PSFEx models
# ---------------------------------------------------------------------------


def _psfex_hdus(hdul):
    """Indices of the binary-table HDUs of an open FITS file that hold a PSFEx model."""
    return [k for k, h in enumerate(hdul)
            if isinstance(h, fits.BinTableHDU) and "psf_mask" in [n.lower() for n in h.columns.names]]


def is_psfex_file(path) -> bool:
    """True if ``path`` is a FITS file with a binary table holding a ``PSF_MASK`` column
    (a PSFEx model, standard or legacypipe-merged); False for anything else (images,
    missing or non-FITS files)."""
    p = pathlib.Path(str(path))
    if not p.is_file():
        return False
    try:
        with fits.open(p) as hdul:
            return bool(_psfex_hdus(hdul))
    except (OSError, ValueError):
        return False


class PSFExModel:
    """A position-dependent PSF model from PSFEx (Bertin 2011, ASP Conf. Ser. 442, 435).

    PSFEx describes the effective PSF (optics, atmosphere and pixel response, sampled on a
    grid of ``sampling`` image pixels) as a polynomial in the CCD pixel position: the stamp
    at ``(X, Y)`` is ``sum_k c_k(X, Y) B_k`` with basis images ``B_k`` (``PSF_MASK``) and
    monomials ``c_k = dx**i dy**j`` of ``dx = (X - POLZERO1) / POLSCAL1`` and
    ``dy = (Y - POLZERO2) / POLSCAL2`` in PSFEx's order (total degree <= ``POLDEG1``;
    ``j`` outer, ``i`` inner: 1, dx, dx^2, .., dy, dx dy, .., dy^2, ..).  ``X``, ``Y`` are
    SExtractor's ``X_IMAGE``/``Y_IMAGE``: **1-indexed** (the first pixel's centre is 1).

    **Positions in this class are 0-indexed** like the rest of bayesprof (the first pixel's
    centre is 0), so ``at(x, y)`` evaluates the polynomial at ``X = x + 1``, ``Y = y + 1``.
    ``origin=1`` passes ``X_IMAGE``/``Y_IMAGE`` themselves.  (legacypipe and the Tractor plug
    0-indexed positions into the polynomial unchanged, i.e. they evaluate the model one pixel
    away in x and y; ``at(x, y, origin=1)`` reproduces their stamps exactly.)

    Read models with :meth:`from_fits`; build one directly with the basis images
    ``basis`` (shape ``(nterms, ny, nx)``, PSFEx's centre at array index ``(ny//2, nx//2)``),
    ``degree``, ``zero = (POLZERO1, POLZERO2)``, ``scale = (POLSCAL1, POLSCAL2)`` and
    ``sampling`` (``PSF_SAMP``, image pixels per stamp pixel).
    """

    def __init__(self, basis, degree, zero=(0.0, 0.0), scale=(1.0, 1.0), sampling=1.0,
                 ccdname=None, source=None):
        basis = np.array(basis, dtype=float)
        if basis.ndim == 2:
            basis = basis[None]
        degree = int(degree)
        nterms = (degree + 1) * (degree + 2) // 2
        if basis.ndim != 3 or basis.shape[0] != nterms:
            raise ValueError(f"PSFEx basis must have shape ({nterms}, ny, nx) for polynomial degree {degree}, "
                             f"got {basis.shape}")
        if not np.all(np.isfinite(basis)):
            raise ValueError(f"PSFEx basis has {np.count_nonzero(~np.isfinite(basis))} non-finite values")
        self.basis = basis
        self.degree = degree
        self.zero = (float(zero[0]), float(zero[1]))
        self.scale = (_check_positive("PSFEx POLSCAL1", scale[0]), _check_positive("PSFEx POLSCAL2", scale[1]))
        self.sampling = _check_positive("PSFEx PSF_SAMP", sampling)
        self.ccdname = ccdname
        self.source = source

    # -- reading -----------------------------------------------------------------------

    @classmethod
    def from_fits(cls, path, ccdname=None, *, hdu=None):
        """Read a PSFEx model from a FITS file.

        Two layouts are read, recognised by their contents (not the file name):

        * PSFEx's own ``.psf`` files: a binary table (``EXTNAME = PSF_DATA``) with one row,
          a ``PSF_MASK`` column and the model in header keywords (``POLNAXIS``,
          ``POLNAME1/2``, ``POLZERO1/2``, ``POLSCAL1/2``, ``POLDEG1``, ``PSF_SAMP``, ...);
          such files name no CCD, so ``ccdname`` is not checked.  A file with several
          ``PSF_DATA`` tables (one per extension of a multi-extension image) needs ``hdu``.
        * legacypipe's "merged" PSFEx files: one table row per CCD, the same quantities as
          lower-case columns (``polzero1``, ``psf_mask``, ...) and a ``ccdname`` column.
          ``ccdname`` picks the row (e.g. ``"N12"``); it may be omitted when there is one row.

        Only polynomials in ``X_IMAGE``/``Y_IMAGE`` (or another ``*_IMAGE`` pixel position)
        in a single group are supported, or none (``POLNAXIS = 0``: a constant PSF).
        Errors (ValueError) name the file and list the CCDs or HDUs available.
        """
        label = f"PSFEx file {str(path)!r}"
        if not pathlib.Path(str(path)).is_file():
            raise FileNotFoundError(f"{label} does not exist")
        try:
            hdul = fits.open(str(path))
        except OSError as err:
            raise ValueError(f"{label} is not a FITS file ({err})") from None
        with hdul:
            found = _psfex_hdus(hdul)
            names = [f"{k}:{h.name}" for k, h in enumerate(hdul)]
            if hdu is None:
                if not found:
                    raise ValueError(f"{label} is not a PSFEx model: no binary table with a PSF_MASK column "
                                     f"(HDUs: {names})")
                if len(found) > 1:
                    raise ValueError(f"{label} holds {len(found)} PSFEx tables (HDUs {found}); choose one with hdu=")
                table = hdul[found[0]]
            else:
                try:
                    table = hdul[hdu]
                except (KeyError, IndexError):
                    raise ValueError(f"{label} has no HDU {hdu!r} (HDUs: {names})") from None
                if hdul.index_of(hdu) not in found:
                    raise ValueError(f"{label}, HDU {hdu!r} is not a PSFEx table (no PSF_MASK column)")
            header = table.header.copy()
            data = table.data
            columns = {n.lower(): n for n in table.columns.names}
            nrows = len(data)
            if "ccdname" in columns:
                ccds = [str(c).strip() for c in data[columns["ccdname"]]]
                if ccdname is None:
                    if nrows != 1:
                        raise ValueError(f"{label} holds {nrows} CCDs {ccds}: choose one with ccdname=")
                    row = 0
                else:
                    rows = [k for k, c in enumerate(ccds) if c == str(ccdname).strip()]
                    if len(rows) != 1:
                        what = "no row" if not rows else f"{len(rows)} rows"
                        raise ValueError(f"{label} has {what} for CCD {str(ccdname).strip()!r} "
                                         f"(CCDs in the file: {ccds})")
                    row = rows[0]
                ccd = ccds[row]
            else:
                if nrows != 1:
                    raise ValueError(f"{label}: the PSFEx table has {nrows} rows and no ccdname column")
                row, ccd = 0, None

            def lookup(key):
                if key.lower() in columns:
                    value = data[columns[key.lower()]][row]
                elif key in header:
                    value = header[key]
                else:
                    return None
                return value.strip() if isinstance(value, str) else value

            keys = ("POLNAXIS", "POLNGRP", "POLNAME1", "POLNAME2", "POLZERO1", "POLZERO2",
                    "POLSCAL1", "POLSCAL2", "POLDEG1", "PSF_SAMP")
            found_values = {k: lookup(k) for k in keys}
            basis = np.array(data[columns["psf_mask"]][row], dtype=float)

        def get(key, default=None):
            value = found_values[key]
            return default if value is None else value

        naxis = int(get("POLNAXIS", 0))
        if naxis == 0:
            degree, zero, scale = 0, (0.0, 0.0), (1.0, 1.0)
        else:
            polnames = (str(get("POLNAME1", "")).upper(), str(get("POLNAME2", "")).upper())
            ok = (naxis == 2 and int(get("POLNGRP", 1)) == 1
                  and polnames[0].startswith("X") and polnames[0].endswith("_IMAGE")
                  and polnames[1].startswith("Y") and polnames[1].endswith("_IMAGE"))
            if not ok:
                raise ValueError(f"{label}: only PSFEx polynomials in (X_IMAGE, Y_IMAGE) in one group are supported "
                                 f"(POLNAXIS={naxis}, POLNAMEs={polnames}, POLNGRP={get('POLNGRP')})")
            missing = [k for k in ("POLZERO1", "POLZERO2", "POLSCAL1", "POLSCAL2", "POLDEG1") if get(k) is None]
            if missing:
                raise ValueError(f"{label}: missing PSFEx keywords/columns {missing}")
            degree = int(get("POLDEG1"))
            zero = (float(get("POLZERO1")), float(get("POLZERO2")))
            scale = (float(get("POLSCAL1")), float(get("POLSCAL2")))
        if basis.ndim == 2:
            basis = basis[None]
        nterms = (degree + 1) * (degree + 2) // 2
        if basis.ndim != 3 or basis.shape[0] != nterms:
            raise ValueError(f"{label}: PSF_MASK has shape {basis.shape}, expected ({nterms}, ny, nx) "
                             f"for polynomial degree {degree}")
        return cls(basis, degree, zero, scale, sampling=float(get("PSF_SAMP", 1.0)), ccdname=ccd,
                   source=str(path))

    # -- evaluation --------------------------------------------------------------------

    def _terms(self, X, Y):
        dx = (X - self.zero[0]) / self.scale[0]
        dy = (Y - self.zero[1]) / self.scale[1]
        return dx, dy, np.array([dx ** i * dy ** j for j in range(self.degree + 1)
                                 for i in range(self.degree + 1 - j)])

    def stamp(self, x, y, *, origin=0, clip_negative=True):
        """The PSF image at CCD pixel ``(x, y)``, normalised to unit sum (numpy array).

        ``x``, ``y``: 0-indexed CCD pixel position (``origin=0``, bayesprof's convention) or
        PSFEx's 1-indexed ``X_IMAGE``/``Y_IMAGE`` (``origin=1``).  The stamp is sampled every
        :attr:`sampling` image pixels, with the PSF centre at array index ``(ny//2, nx//2)``.
        ``clip_negative`` sets the model's negative wing pixels (noise) to zero before
        normalising, as legacypipe does.  A position far outside the region the polynomial
        was fitted on (``|X - POLZERO| > POLSCAL``) gives a warning: check the pixel frame.
        """
        if origin not in (0, 1):
            raise ValueError(f"origin must be 0 (0-indexed pixels) or 1 (X_IMAGE/Y_IMAGE), not {origin!r}")
        X, Y = float(x) + 1 - origin, float(y) + 1 - origin
        dx, dy, terms = self._terms(X, Y)
        if self.degree > 0 and max(abs(dx), abs(dy)) > 1.0:
            warnings.warn(f"PSFEx model{' of CCD ' + repr(self.ccdname) if self.ccdname else ''}: position "
                          f"X_IMAGE={X:g}, Y_IMAGE={Y:g} is far outside the region it was fitted on "
                          f"({self.zero[0]:g} +- {self.scale[0] / 2:g}, {self.zero[1]:g} +- {self.scale[1] / 2:g}); "
                          "the polynomial is extrapolated (is the position in this CCD's pixel frame?)",
                          stacklevel=2)
        img = np.tensordot(terms, self.basis, axes=1)
        if clip_negative:
            img = np.maximum(img, 0.0)
        total = img.sum()
        if not total > 0:
            raise ValueError(f"PSFEx model at X_IMAGE={X:g}, Y_IMAGE={Y:g} has a non-positive sum {total!r}")
        return img / total

    def at(self, x, y, *, origin=0, clip_negative=True):
        """The effective PSF at CCD pixel ``(x, y)`` as a :class:`PixelPSF`.

        Arguments as in :meth:`stamp`.  The stamp is centred for :class:`PixelPSF` (an even
        size gets a row/column of zeros appended, so PSFEx's centre pixel ``n//2`` becomes the
        middle), ``includes_pixel=True`` (PSFEx models the pixel-convolved PSF), and for
        ``PSF_SAMP != 1`` its spacing is given as ``sampling`` in image pixels, so it holds at
        any pixel scale.
        """
        img = self.stamp(x, y, origin=origin, clip_negative=clip_negative)
        ny, nx = img.shape
        img = np.pad(img, ((0, 1 - ny % 2), (0, 1 - nx % 2)))
        return PixelPSF(img, includes_pixel=True, sampling=None if self.sampling == 1.0 else self.sampling)

    def __repr__(self):
        nterms, ny, nx = self.basis.shape
        ccd = f"ccd={self.ccdname!r}, " if self.ccdname else ""
        return (f"PSFExModel({ccd}{ny}x{nx}, degree={self.degree}, sampling={self.sampling:g}, "
                f"zero=({self.zero[0]:g}, {self.zero[1]:g}), scale=({self.scale[0]:g}, {self.scale[1]:g}))")
