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
``cosmos_hst_hsc()``
    A COSMOS field in HST ACS F814W (250x250, 0.03"/px) and HSC grizy (50x50, 0.168"/px)
    with PSF stamps and TAN WCSs (scarlet's example data, MIT).  No noise maps: a constant
    sigma per image from :func:`bayesprof.catalog.estimate_noise`.  The pixels were rescaled
    and carry no zeropoint, so every image gets zeropoint 23.9 (fluxes in data units).
``cosmos_hsc_field()``
    Another COSMOS field, a blend of seven sources in HSC grizy (58x48, 0.168"/px) with the
    survey's variance, mask planes and coadd PSF stamps, and a source list (scarlet's test
    data, MIT): the catalog example.
"""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
from astropy.io import fits

from .catalog import neighbour_mask
from .image import Image, ImageList
from .psf import GaussianPSF, MoffatPSF, PixelPSF

__all__ = ["DATA_DIR", "path", "gama_kids_sdss", "legacy_testcase3", "legacy_testcase4",
           "DECAM_ZP0", "WISE_FWHM", "WISE_AB_OFFSET", "cosmos_hst_hsc", "COSMOS_BANDS", "decals_grz",
           "cosmos_hsc_field", "HSC_BAD_PLANES"]

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


def gama_kids_sdss(galaxy: str = "G279148", mask_neighbours: bool = True, folder=None) -> ImageList:
    """KiDS r and SDSS r images of one GAMA galaxy (names ``"KiDS"``, ``"SDSS"``; bands
    ``"KiDS-r"``, ``"SDSS-r"``, zeropoint 0).

    ``mask_neighbours``: mask pixels that the survey's segmentation map (``*segim``) gives
    to another object than the one at the cut-out centre.

    The PSFs are the bundled stamps as they are.  The KiDS stamps have negative wings
    (-11 % to -25 % of their sum); ``MoffatPSF.fit_stamp(image.psf.image, 0.2)`` gives a
    Moffat fitted to their core instead (notebook 01 shows what that changes).  Both
    cut-outs have correlated noise: see :func:`bayesprof.catalog.noise_correlation_factor`.

    ``folder``: read the galaxy from this copy of the data set (with ``KiDS/`` and ``SDSS/``,
    e.g. the ten galaxies of ProFit's example data) instead of the bundled one (G279148 only).
    """
    images = []
    for survey, scale in (("KiDS", 0.2), ("SDSS", 0.339)):
        if folder is None:
            stem = path("gama-kids-sdss", survey, f"{galaxy}fitim.fits").parent / galaxy
        else:
            stem = pathlib.Path(folder) / survey / galaxy
            if not stem.with_name(galaxy + "fitim.fits").is_file():
                raise FileNotFoundError(f"no {survey} cut-out of {galaxy} in {folder}")
        data = _read(stem.with_name(galaxy + "fitim.fits"))
        sigma = _read(stem.with_name(galaxy + "sigma.fits"))
        mask = _read(stem.with_name(galaxy + "mskim.fits")) != 0
        if mask_neighbours:
            seg = _read(stem.with_name(galaxy + "segim.fits"))
            mask |= neighbour_mask(seg, (seg.shape[1] // 2, seg.shape[0] // 2))
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
            psf=psf_file, zeropoint=zp, band=band, wavelength=f"decam2014-{band}",
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
                psf=str(f).replace(".fits", ".psf_at_center.fits"), zeropoint="MAGZERO", band="z", name="z",
                wavelength="decam2014-z"))
        elif band in WISE_FWHM:
            w = band.lower()
            img = path("legacy-testcase4", "unwise", f"unwise-1866p257-{w}-img-m.fits")
            ivar = path("legacy-testcase4", "unwise", f"unwise-1866p257-{w}-invvar-m.fits.gz")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                images.append(Image.from_fits(img, weight=str(ivar), psf=GaussianPSF(WISE_FWHM[band]),
                                              zeropoint=22.5 + WISE_AB_OFFSET[band], band=band, name=band,
                                              time=None, wavelength=f"wise2010-{band}"))
        else:
            raise ValueError(f"unknown band {band!r}: choose from z, W1, W2, W3, W4")
    return ImageList(images)


#: Bands of the bundled COSMOS field: HST ACS F814W, then the HSC planes of ``Cut_HSC.fits``.
COSMOS_BANDS = ("F814W", "g", "r", "i", "z", "y")
#: Pixel scales (arcsec) of the bundled COSMOS PSF stamps (each at its image's scale).
COSMOS_PIXEL_SCALE = {"HST": 0.03, "HSC": 0.168}


def _bad_lines(data, sigma, nsigma=5.0):
    """Rows and columns whose median over the background pixels (outside the sources of
    :func:`bayesprof.catalog.segment`, dilated by 2 px) falls ``nsigma`` standard errors below
    that of their neighbours (two on each side): dead or over-subtracted lines of a coadd."""
    from scipy import ndimage

    from .catalog import segment

    sky = ~ndimage.binary_dilation(segment(data) > 0, iterations=2)
    bad = np.zeros(data.shape, bool)
    for axis in (1, 0):  # rows, then columns
        lines = data if axis == 1 else data.T
        use = sky if axis == 1 else sky.T
        n = use.sum(1)
        med = np.array([np.median(v[u]) if k >= 10 else np.nan for v, u, k in zip(lines, use, n)])
        for i in range(len(med)):
            near = [med[j] for j in range(max(i - 2, 0), min(i + 3, len(med))) if j != i and np.isfinite(med[j])]
            if np.isfinite(med[i]) and near:
                err = 1.2533 * sigma / np.sqrt(n[i])  # standard error of a median of n[i] pixels
                if med[i] < np.median(near) - nsigma * err:
                    (bad[i, :] if axis == 1 else bad[:, i])[...] = True
    return bad


def cosmos_hst_hsc(bands=COSMOS_BANDS, *, psf: str = "moffat", hst_psf_size: int | None = 101, mask_bad_lines: bool = True,
                   zeropoint: float = 23.9) -> ImageList:
    """The bundled COSMOS field: HST ACS F814W (250x250, 0.03"/px) and HSC g, r, i, z, y
    (50x50 each, 0.168"/px), names and bands ``"F814W"``, ``"g"``, ``"r"``, ``"i"``, ``"z"``, ``"y"``.

    WCS: the TAN WCS of each header (HST's says FK5 J2000, HSC's ICRS; astropy converts
    between them).  PSF: ``psf="moffat"`` (default) a circular :class:`MoffatPSF` fitted to
    each bundled stamp (:meth:`MoffatPSF.fit_stamp`, every positive pixel); ``psf="stamp"``
    (or ``"pixel"``) the stamps themselves as
    :class:`PixelPSF` (effective PSFs at each image's scale, wings beyond 1 - 1e-4 of the flux
    trimmed: the HSC stamps stay 31x31; the renderer folds 6x and oversamples its halo 2x;
    a renderer for a 90-px HST window builds in ~4 s, then ~0.1 s per call).  ``hst_psf_size`` (odd, default 101) crops the 179x179 HST stamp
    about its centre pixel (101 px = 3" keeps 98.6 % of its light; None keeps it whole, but a
    Scene then rejects the 250-px image as smaller than the PSF).  Noise: no maps exist, so
    each image gets the constant sigma of :func:`bayesprof.catalog.estimate_noise` (source
    Poisson noise neglected).  Photometry: the headers hold no BUNIT or zeropoint and the
    pixels were rescaled (the HST image has mean 1, every HSC plane mean 0.7996), so the
    calibration is lost; every image gets ``zeropoint`` (default 23.9, so a fitted flux is
    the source's total in data units of that image: compare fluxes within a band, not
    colours).  ``mask_bad_lines`` masks rows/columns whose median lies 5 standard errors
    below their neighbours' (one row of HSC r, row 46).
    """
    from astropy.wcs import WCS

    from .catalog import estimate_noise

    if psf not in ("moffat", "pixel", "stamp"):
        raise ValueError(f"psf must be 'moffat', 'stamp' or 'pixel', not {psf!r}")
    unknown = [b for b in bands if b not in COSMOS_BANDS]
    if unknown:
        raise ValueError(f"unknown band(s) {unknown}: choose from {COSMOS_BANDS}")
    folder = ("cosmos-hst-hsc",)
    images = []
    for band in bands:
        if band == "F814W":
            with fits.open(path(*folder, "Cut_HST.fits")) as f:
                data, header = np.asarray(f[0].data, dtype=float), f[0].header.copy()
            stamp = _read(path(*folder, "PSF_HST.fits"))
            if hst_psf_size is not None:
                if hst_psf_size % 2 != 1 or not 3 <= hst_psf_size <= stamp.shape[0]:
                    raise ValueError(f"hst_psf_size must be odd and 3..{stamp.shape[0]}, not {hst_psf_size}")
                # about the peak pixel: the bundled stamp peaks at (90, 90), one pixel off its
                # geometric centre (89, 89), which would shift every HST position by 30 mas
                cy, cx = np.unravel_index(np.argmax(stamp), stamp.shape)
                h = min(hst_psf_size // 2, cy, cx, stamp.shape[0] - 1 - cy, stamp.shape[1] - 1 - cx)
                stamp = stamp[cy - h:cy + h + 1, cx - h:cx + h + 1]
        else:
            k = COSMOS_BANDS.index(band) - 1
            with fits.open(path(*folder, "Cut_HSC.fits")) as f:
                data, header = np.asarray(f[0].data[k], dtype=float), f[0].header.copy()
            stamp = _read(path(*folder, "PSF_HSC.fits"))[k]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FITSFixedWarning about DATE-OBS/MJD-OBS
            wcs = WCS(header).celestial
        sigma = estimate_noise(data)
        mask = _bad_lines(data, sigma) if mask_bad_lines else None
        if mask is not None and mask.any():
            sigma = estimate_noise(np.where(mask, np.nan, data))
        scale = COSMOS_PIXEL_SCALE["HST" if band == "F814W" else "HSC"]
        if psf in ("pixel", "stamp"):
            model = PixelPSF(stamp, trim=1e-4)
        else:
            model = MoffatPSF.fit_stamp(stamp, scale, core_fraction=0.0)
        images.append(Image(data, sigma=sigma, mask=mask, wcs=wcs, psf=model, zeropoint=zeropoint,
                            band=band, name=band,
                            wavelength="hst_acs_wfc-F814W" if band == "F814W" else f"hsc2017-{band}"))
    return ImageList(images)


def decals_grz(psf: str = "stamp") -> ImageList:
    """A DECaLS DR9 coadd of one galaxy with a red centre and blue outskirts (g - r 0.71 within
    0.5" of the peak, 0.43 at 3-4"), in g, r and z: the central 120x120 px (0.262"/px, TAN WCS)
    of pysersic's example cut-out at (59.1067, -30.4848) deg, with inverse-variance maps
    (pixels without weight masked) and the survey's 63x63 coadd PSF stamps.  Names and bands
    ``"g"``, ``"r"``, ``"z"``; zeropoint 22.5 (nanomaggies); wavelengths from speclite's DECam
    curves.  ``psf="stamp"`` (default): :class:`PixelPSF` of the stamps; ``"moffat"``: a
    :class:`MoffatPSF` fitted to each stamp (:meth:`MoffatPSF.fit_stamp`).
    """
    from astropy.wcs import WCS

    if psf not in ("stamp", "moffat"):
        raise ValueError(f"psf must be 'stamp' or 'moffat', not {psf!r}")
    folder = ("decals-grz",)
    images = []
    with fits.open(path(*folder, "cutout_59.1067_-30.4848_120px.fits")) as cut, \
            fits.open(path(*folder, "copsf_59.1067_-30.4848.fits")) as stamps:
        for k, band in enumerate("grz"):
            sci, ivar = cut[1 + 2 * k], cut[2 + 2 * k]  # image and inverse variance, band after band
            data = np.asarray(sci.data, dtype=float)
            weight = np.asarray(ivar.data, dtype=float)
            stamp = np.asarray(stamps[k].data, dtype=float)
            model = PixelPSF(stamp) if psf == "stamp" else MoffatPSF.fit_stamp(stamp, 0.262, core_fraction=0.0)
            images.append(Image(data, weight=weight, wcs=WCS(sci.header).celestial, psf=model, zeropoint=22.5,
                                band=band, name=band, wavelength=f"decam2014-{band}"))
    return ImageList(images)


#: HSC mask planes whose pixels are not data (BAD, SAT, INTRP, CR, EDGE, NO_DATA; Bosch et al.
#: 2018, PASJ 70, S5): masked by :func:`cosmos_hsc_field`.  The other planes (DETECTED, the
#: coadd's bookkeeping) mark good pixels.
HSC_BAD_PLANES = 1 | 2 | 4 | 8 | 16 | 256


def cosmos_hsc_field(zeropoint: float = 27.0):
    """A COSMOS field of seven blended sources in HSC g, r, i, z, y (scarlet's test data
    ``hsc_cosmos_35.npz``, MIT): ``(images, sources)``.

    ``images``: an :class:`~bayesprof.ImageList` of the five 58 x 48 coadd cut-outs (0.168"/px,
    names and bands ``"g"`` ... ``"y"``) with the survey's variance maps, pixels flagged in
    :data:`HSC_BAD_PLANES` masked, and the 43 x 43 coadd PSF stamps (:class:`PixelPSF`,
    effective PSFs); wavelengths from speclite's HSC curves.  The file carries no WCS: every
    band gets the same north-up TAN WCS centred on the middle of the array (the coadds share one
    pixel grid).  Zeropoint: the HSC-SSP coadds' 27.0 AB (Aihara et al. 2018), so fluxes read
    in microjansky; the file does not state its units, so take the magnitudes as nominal.

    ``sources``: an astropy Table of the file's source list (``id``, ``x``, ``y`` in pixels,
    ``ra``, ``dec`` in degrees), for :func:`bayesprof.fit_catalog`.
    """
    from astropy.table import Table

    data = np.load(path("cosmos-hst-hsc", "hsc_cosmos_35.npz"))
    images = []
    for k, band in enumerate(str(b) for b in data["filters"]):
        stamp = np.asarray(data["psfs"][k], dtype=float)
        bad = (np.asarray(data["mask"][k]) & HSC_BAD_PLANES) != 0
        images.append(Image(np.asarray(data["images"][k], dtype=float), variance=np.asarray(data["variance"][k], float),
                            mask=bad, pixel_scale=0.168, psf=PixelPSF(stamp), zeropoint=zeropoint, band=band,
                            name=band, wavelength=f"hsc2017-{band}"))
    images = ImageList(images)
    x, y = (np.asarray(data["catalog"][c], dtype=float) for c in ("x", "y"))
    sky = images[0].pixel_to_sky(x, y)
    sources = Table({"id": np.arange(x.size), "x": x, "y": y, "ra": sky.icrs.ra.deg, "dec": sky.icrs.dec.deg})
    return images, sources
