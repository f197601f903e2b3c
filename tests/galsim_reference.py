"""Independent reference images drawn with GalSim (tight accuracy settings).

Conventions bridged here: bayesprof's ``re`` is the semi-major half-light radius and
GalSim's ``half_light_radius`` is the circularised one before an area-preserving shear,
so ``hlr = re * sqrt(q)``; bayesprof's PA is east of north on a north-up east-left image,
GalSim's ``beta`` is counter-clockwise from +x, so ``beta = pa + 90 deg``.
"""

import galsim
import numpy as np

from bayesprof.psf import GaussianPSF, MoffatPSF, PixelPSF

GSP = galsim.GSParams(
    folding_threshold=1e-6, maxk_threshold=1e-7, kvalue_accuracy=1e-8, xvalue_accuracy=1e-8,

    maximum_fft_size=16384,
)


def galsim_psf(psf, pixel_scale):
    """The GalSim object for a bayesprof PSF, and whether it already includes the pixel."""
    if isinstance(psf, GaussianPSF):
        return galsim.Gaussian(fwhm=psf.fwhm, gsparams=GSP), False
    if isinstance(psf, MoffatPSF):
        return galsim.Moffat(beta=psf.beta, fwhm=psf.fwhm, gsparams=GSP), False
    if isinstance(psf, PixelPSF):
        scale = psf.pixel_scale or pixel_scale
        ii = galsim.InterpolatedImage(galsim.Image(psf.image, scale=scale), x_interpolant="quintic",
                                      normalization="flux", flux=1.0, gsparams=GSP)
        return ii, psf.includes_pixel
    raise TypeError(psf)


def sersic(n, re, q, pa, flux, stamp_arcsec):
    """GalSim Sersic in bayesprof's parametrisation.

    Steep, large profiles are truncated far outside the stamp (beyond the stamp's
    half-diagonal plus a margin along the minor axis) so that GalSim's FFT stays finite;
    ``flux_untruncated`` keeps the untruncated normalisation, so pixels inside the stamp
    are those of the untruncated profile.
    """
    hlr = re * np.sqrt(q)
    trunc = 1.5 * stamp_arcsec / np.sqrt(q)
    kwargs = dict(trunc=trunc, flux_untruncated=True) if trunc < 30 * hlr else {}
    gal = galsim.Sersic(n=n, half_light_radius=hlr, flux=flux, gsparams=GSP, **kwargs)
    return gal.shear(q=q, beta=(pa + 90.0) * galsim.degrees)


def draw(profile, psf, shape, pixel_scale, offset):
    """Draw profile * psf on a north-up east-left stamp; ``offset`` (dx, dy) pixels from the centre."""
    gpsf, has_pixel = galsim_psf(psf, pixel_scale)
    conv = galsim.Convolve(profile, gpsf, gsparams=GSP)
    ny, nx = shape
    method = "no_pixel" if has_pixel else "auto"
    return conv.drawImage(nx=nx, ny=ny, scale=pixel_scale, offset=offset, method=method).array
