"""Real images bundled with bayesprof, loaded as ready-to-fit :class:`~bayesprof.ImageList` s.

The files live in ``bayesprof/data/`` (see its README for sources and licences: keep the
credit lines wherever you copy them).  Every loader returns the images exactly as observed:
sky not subtracted, noise from the survey's own maps, masks from its data-quality maps.

``gama_kids_sdss()``
    GAMA galaxy G279148 in KiDS r (0.2"/px) and SDSS r (0.339"/px), with each survey's
    PSF image and 1-sigma map (ProFit's example data, LGPL-3).  The cut-outs carry no WCS:
    the galaxy sits at the cut-out centre, so each image gets a north-up TAN WCS at its
    pixel scale centred on its middle pixel; pixel values are in units with AB zeropoint 0
    (about 1e-10).  Pixels of other objects in the survey's segmentation map are masked.
``legacy_testcase3()``
    One galaxy in 8 single DECam exposures (g, r, z; 2014-2018), CP images with TPV WCS,
    inverse variance, data-quality mask and PSFEx stamp at the cut-out centre (legacypipe
    test case 3, BSD-3); ``psf="psfex"`` evaluates the bundled PSFEx files there instead.
    The CP headers hold no zeropoint: the nominal DECam zeropoints for ADU/s
    (:data:`DECAM_ZP0`) plus ``2.5 log10(EXPTIME)`` are used.
``legacy_testcase4()``
    A DECam z exposure (0.262"/px, TPV, zeropoint ``MAGZERO``) and the unWISE W1-W4 coadds
    (2.75"/px, TAN) of the same field (legacypipe test case 4, BSD-3).  unWISE has no PSF
    model here: a Gaussian of the band's FWHM (:data:`WISE_FWHM`) stands in, and the Vega
    nanomaggy zeropoint 22.5 is turned into AB with :data:`WISE_AB_OFFSET`.
"""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
from astropy.io import fits

from .image import Image, ImageList
from .psf import GaussianPSF, PixelPSF

__all__ = ["DATA_DIR", "path", "gama_kids_sdss", "legacy_testcase3", "legacy_testcase4",
           "DECAM_ZP0", "WISE_FWHM", "WISE_AB_OFFSET"]

#: Folder of the bundled data.
DATA_DIR = pathlib.Path(__file__).resolve().parent / "data"

#: Nominal DECam zeropoints (AB mag for 1 ADU/s) used by legacypipe when a CP image has none.
DECAM_ZP0 = {"g": 25.001, "r": 25.209, "z": 24.875}
#: WISE PSF FWHM in arcsec (Wright et al. 2010), W1-W4.
WISE_FWHM = {"W1": 6.1, "W2": 6.8, "W3": 7.4, "W4": 12.0}
#: AB - Vega magnitude of the WISE bands (Jarrett et al. 2011).
WISE_AB_OFFSET = {"W1": 2.699, "W2": 3.339, "W3": 5.174, "W4": 6.620}


def path(*parts: str) -> pathlib.Path:
    """Path of a bundled data file, e.g. ``path("gama-kids-sdss", "KiDS", "G279148fitim.fits")``."""
    p = DATA_DIR.joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(f"no bundled data file {p.relative_to(DATA_DIR)} (in {DATA_DIR})")
    return p


def _read(p: pathlib.Path, hdu: int = 0) -> np.ndarray:
    with fits.open(p) as f:
        return np.asarray(f[hdu].data, dtype=float)


def gama_kids_sdss(galaxy: str = "G279148", mask_neighbours: bool = True) -> ImageList:
    """KiDS r and SDSS r images of one GAMA galaxy (names ``"KiDS"``, ``"SDSS"``; bands
    ``"KiDS-r"``, ``"SDSS-r"``, zeropoint 0).

    ``mask_neighbours``: mask pixels that the survey's segmentation map (``*segim``) gives
    to another object than the one at the cut-out centre.
    """
    images = []
    for survey, scale in (("KiDS", 0.2), ("SDSS", 0.339)):
        stem = path("gama-kids-sdss", survey, f"{galaxy}fitim.fits").parent / galaxy
        data = _read(stem.with_name(galaxy + "fitim.fits"))
        sigma = _read(stem.with_name(galaxy + "sigma.fits"))
        mask = _read(stem.with_name(galaxy + "mskim.fits")) != 0
        if mask_neighbours:
            seg = _read(stem.with_name(galaxy + "segim.fits")).astype(int)
            ny, nx = seg.shape
            own = seg[ny // 2, nx // 2]
            mask |= (seg != 0) & (seg != own)
        psf = PixelPSF(_read(stem.with_name(galaxy + "psfim.fits")))
        images.append(Image(data, sigma=sigma, mask=mask, pixel_scale=scale, psf=psf, zeropoint=0.0,
                            band=f"{survey}-r", name=survey))
    return ImageList(images)


def _decam_band(header: fits.Header) -> str:
    return str(header["FILTER"]).split()[0]


def legacy_testcase3(psf: str = "stamp") -> ImageList:
    """The 8 DECam exposures of legacypipe's test case 3, in time order.

    Names ``"<band><yymmdd>"`` (e.g. ``"z140818"``), bands g/r/z, ``time`` = MJD-OBS.
    ``psf="stamp"`` uses the PSFEx model evaluated at the cut-out centre by legacypipe
    (``*.psf_at_center.fits``); ``psf="psfex"`` evaluates the bundled PSFEx files
    (``psfex/``) there with :class:`~bayesprof.psf.PSFExModel` (at SExtractor's 1-indexed
    ``X_IMAGE = x + 1``, where legacypipe plugs in ``x``: the two differ by < 1e-4 of the peak).
    """
    if psf not in ("stamp", "psfex"):
        raise ValueError(f"psf must be 'stamp' or 'psfex', not {psf!r}")
    folder = path("legacy-testcase3", "images")
    images = []
    for f in sorted(folder.glob("*_ooi_*[0-9].fits")):
        with fits.open(f) as hdul:
            primary = hdul[0].header
        band = _decam_band(primary)
        zp = DECAM_ZP0[band] + 2.5 * np.log10(float(primary["EXPTIME"]))
        date = f.name.split("_")[1]
        if psf == "psfex":
            stem, ccd = f.name.split(".")[:2]
            psf_file = str(path("legacy-testcase3", "psfex", f"{stem}-{ccd}-psfex.fits"))
        else:
            psf_file = str(f).replace(".fits", ".psf_at_center.fits")
        images.append(Image.from_fits(
            f, weight=str(f).replace("_ooi_", "_oow_"), mask=str(f).replace("_ooi_", "_ood_"),
            psf=psf_file, zeropoint=zp, band=band,
            name=f"{band}{date}"))
    images.sort(key=lambda im: im.time)
    return ImageList(images)


def legacy_testcase4(bands=("z", "W1", "W2", "W3", "W4")) -> ImageList:
    """DECam z plus unWISE W1-W4 of legacypipe's test case 4 (names = bands)."""
    images = []
    for band in bands:
        if band == "z":
            f = path("legacy-testcase4", "decam", "c4d_170316_062107_ooi_z_ls9.N2.fits")
            images.append(Image.from_fits(
                f, weight=str(f).replace("_ooi_", "_oow_"), mask=str(f).replace("_ooi_", "_ood_"),
                psf=str(f).replace(".fits", ".psf_at_center.fits"), zeropoint="MAGZERO", band="z", name="z"))
        elif band in WISE_FWHM:
            w = band.lower()
            img = path("legacy-testcase4", "unwise", f"unwise-1866p257-{w}-img-m.fits")
            ivar = path("legacy-testcase4", "unwise", f"unwise-1866p257-{w}-invvar-m.fits.gz")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                images.append(Image.from_fits(img, weight=str(ivar), psf=GaussianPSF(WISE_FWHM[band]),
                                              zeropoint=22.5 + WISE_AB_OFFSET[band], band=band, name=band,
                                              time=None))
        else:
            raise ValueError(f"unknown band {band!r}: choose from z, W1, W2, W3, W4")
    return ImageList(images)
