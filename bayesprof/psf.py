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
    (GalSim's ``true_center``).  The samples are interpolated with GalSim's quintic
    interpolant (Bernstein & Gruen 2014).  ``includes_pixel=True`` (the default) means the
    stamp is an *effective* PSF that already contains the detector's pixel response, as
    PSFEx models and most survey PSF stamps do; ``False`` means samples of the optical PSF
    alone, and the renderer then integrates over pixels.  The stamp axes are the image's
    pixel axes.
``gaussian_psf(sigma, width, pixel_scale)``
    The JointModels tutorial's helper: a ``width`` x ``width`` pixel-integrated Gaussian
    stamp (sigma in arcsec) as a :class:`PixelPSF`.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["PSF", "GaussianPSF", "MoffatPSF", "PixelPSF", "gaussian_psf", "FWHM_PER_SIGMA"]

#: FWHM / sigma of a Gaussian.
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def pixel_response(kx, ky):
    """Fourier transform of the unit square pixel: sinc(kx/2) sinc(ky/2) (k in rad/px)."""
    return np.sinc(kx / (2 * np.pi)) * np.sinc(ky / (2 * np.pi))


class PSF:
    """Base class. Subclasses define :meth:`fourier` and :meth:`radius`."""

    #: whether the PSF already contains the detector pixel response
    includes_pixel: bool = False

    def fourier(self, kx, ky, pixel_scale):  # pragma: no cover - interface
        raise NotImplementedError

    def radius(self, pixel_scale, flux_fraction=1 - 1e-6):
        """Radius (image pixels) containing ``flux_fraction`` of the PSF's flux."""
        raise NotImplementedError  # pragma: no cover - interface

    def effective_fourier(self, kx, ky, pixel_scale):
        """FT of the effective PSF (PSF convolved with the pixel response) at k (rad/px)."""
        f = self.fourier(kx, ky, pixel_scale)
        return f if self.includes_pixel else f * pixel_response(kx, ky)



def _check_positive(name, value):
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


class GaussianPSF(PSF):
    """Circular Gaussian PSF with full width at half maximum ``fwhm`` (arcsec)."""

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
        val = 2.0 * np.exp(nu * np.log(xs / 2.0) - special.gammaln(nu)) * special.kv(nu, xs)
        return np.where(small, 1.0, val).astype(complex)

    def radius(self, pixel_scale, flux_fraction=1 - 1e-6):
        # fraction outside r: (1 + r^2/a^2)^(1 - beta)
        a = self.alpha_pixels(pixel_scale)
        return a * np.sqrt((1.0 - flux_fraction) ** (1.0 / (1.0 - self.beta)) - 1.0)


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
    """

    def __init__(self, image, pixel_scale=None, includes_pixel=True):
        arr = np.array(image, dtype=float)
        if arr.ndim != 2:
            raise ValueError(f"PixelPSF image must be 2-D, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"PixelPSF image has {np.count_nonzero(~np.isfinite(arr))} non-finite pixels")
        total = arr.sum()
        if not total > 0:
            raise ValueError(f"PixelPSF image must have a positive sum, got {total!r}")
        self.image = arr / total
        self.pixel_scale = None if pixel_scale is None else _check_positive("PixelPSF pixel_scale", pixel_scale)
        self.includes_pixel = bool(includes_pixel)

    def _step(self, pixel_scale):
        """PSF sample spacing in image pixels."""
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
        dft = table[iy.reshape(kxb.shape), ix.reshape(kxb.shape)]
        return dft * quintic_fourier(kxb * s) * quintic_fourier(kyb * s)

    def radius(self, pixel_scale, flux_fraction=1 - 1e-6):
        ny, nx = self.image.shape
        return 0.5 * np.hypot(nx, ny) * self._step(pixel_scale) + 3.0 * self._step(pixel_scale)


    def __repr__(self):
        ny, nx = self.image.shape
        return f"PixelPSF({ny}x{nx}, pixel_scale={self.pixel_scale}, includes_pixel={self.includes_pixel})"


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
