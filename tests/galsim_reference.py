"""Independent reference images drawn with GalSim (tight accuracy settings).

Conventions bridged here: bayesprof's ``re`` is the semi-major half-light radius and
GalSim's ``half_light_radius`` is the circularised one before an area-preserving shear,
so ``hlr = re * sqrt(q)``; bayesprof's PA is east of north on a north-up east-left image,
GalSim's ``beta`` is counter-clockwise from +x, so ``beta = pa + 90 deg``.
"""

import warnings

import galsim
import numpy as np
from scipy import special

from bayesprof.psf import GaussianPSF, MoffatPSF, PixelPSF

#: folding thresholds tried in turn: the tightest whose FFT fits in memory is used
FOLDING_THRESHOLDS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


def gsparams(folding_threshold=1e-6):
    return galsim.GSParams(folding_threshold=folding_threshold, maxk_threshold=1e-7, kvalue_accuracy=1e-8,
                           xvalue_accuracy=1e-8, maximum_fft_size=2048)


def psf_maxk(psf, pixel_scale):
    """maxk (1/arcsec) for an InterpolatedImage PSF.

    GalSim's own estimate (~pi per sample) truncates an undersampled 1x stamp by ~2%.  The
    quintic's sidelobes sit at multiples of 2 pi per sample: 6 pi per sample keeps them to
    < 1e-7 for a 1x stamp (checked against a brute-force real-space integral); an oversampled
    stamp of a well-sampled PSF has < 1e-8 of its power beyond 3 pi per image pixel.
    """
    scale = psf.pixel_scale or pixel_scale
    return 6 * np.pi / scale if scale >= pixel_scale else 3 * np.pi / pixel_scale


def galsim_psf(psf, pixel_scale, gsp):
    """The GalSim object for a bayesprof PSF, and whether it already includes the pixel."""
    if isinstance(psf, GaussianPSF):
        return galsim.Gaussian(fwhm=psf.fwhm, gsparams=gsp), False
    if isinstance(psf, MoffatPSF):
        return galsim.Moffat(beta=psf.beta, fwhm=psf.fwhm, gsparams=gsp), False
    if isinstance(psf, PixelPSF):
        if psf.interpolant != "quintic":  # GalSim's sinc InterpolatedImage crashes (GalSim 2.x)
            raise ValueError("the GalSim reference reads stamps with its quintic: give interpolant='quintic'")
        scale = psf.pixel_scale or pixel_scale
        ii = galsim.InterpolatedImage(galsim.Image(psf.image, scale=scale), x_interpolant="quintic",
                                      normalization="flux", flux=1.0,
                                      _force_maxk=psf_maxk(psf, pixel_scale), gsparams=gsp)
        return ii, psf.includes_pixel
    raise TypeError(psf)


def draw_sersic(n, re, q, pa, flux, psf, shape, pixel_scale, offset):
    """GalSim image of a Sersic (bayesprof parametrisation) convolved with ``psf``.

    The stamp is north-up east-left with the source ``offset`` = (dx, dy) pixels from the
    stamp centre.  Returns (image, folding_threshold used).
    """
    ny, nx = shape
    # Each threshold costs GalSim a new Hankel table, so start at the tightest one whose
    # (1 - ft) flux radius plausibly fits in the FFT cap (GalSim itself still decides).
    b = special.gammaincinv(2 * n, 0.5)
    maxk_px = psf_maxk(psf, pixel_scale) * pixel_scale if isinstance(psf, PixelPSF) else 2 * np.pi
    fits = [ft for ft in FOLDING_THRESHOLDS
            if 2 * maxk_px / np.pi * re / pixel_scale * (special.gammaincinv(2 * n, 1 - ft) / b) ** n <= 2048]
    start = FOLDING_THRESHOLDS.index(fits[0]) if fits else len(FOLDING_THRESHOLDS)
    for ft in FOLDING_THRESHOLDS[max(start - 1, 0):] if fits else ():
        gsp = gsparams(ft)
        gal = galsim.Sersic(n=n, half_light_radius=re * np.sqrt(q), flux=flux, gsparams=gsp)
        gal = gal.shear(q=q, beta=(pa + 90.0) * galsim.degrees)
        gpsf, has_pixel = galsim_psf(psf, pixel_scale, gsp)
        conv = galsim.Convolve(gal, gpsf, gsparams=gsp)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = conv.drawImage(nx=nx, ny=ny, scale=pixel_scale, offset=offset,
                                     method="no_pixel" if has_pixel else "auto")
            return img.array.astype(float), ft
        except (galsim.GalSimFFTSizeError, MemoryError):
            continue
    # No FFT fits: GalSim's real-space convolution (slow, ~100 s, but exact to ~1e-6)
    gsp = galsim.GSParams(realspace_relerr=1e-6, realspace_abserr=1e-9)
    gal = galsim.Sersic(n=n, half_light_radius=re * np.sqrt(q), flux=flux, gsparams=gsp)
    gal = gal.shear(q=q, beta=(pa + 90.0) * galsim.degrees)
    gpsf, has_pixel = galsim_psf(psf, pixel_scale, gsp)
    if not has_pixel:
        gpsf = galsim.Convolve(gpsf, galsim.Pixel(pixel_scale), gsparams=gsp)
    conv = galsim.Convolve(gal, gpsf, real_space=True, gsparams=gsp)
    return conv.drawImage(nx=nx, ny=ny, scale=pixel_scale, offset=offset, method="no_pixel").array.astype(float), 0.0


def pixel_psf_stamp(oversampling, pixel_scale=1.0):
    """An effective-PSF stamp (Moffat beta=3, FWHM 2 px, convolved with the pixel) sampled at
    ``pixel_scale / oversampling``, drawn by GalSim (odd size)."""
    size = 25 * oversampling + (1 - oversampling % 2)
    eff = galsim.Convolve(galsim.Moffat(beta=3.0, fwhm=2.0 * pixel_scale), galsim.Pixel(pixel_scale))
    return eff.drawImage(nx=size, ny=size, scale=pixel_scale / oversampling, method="no_pixel").array
