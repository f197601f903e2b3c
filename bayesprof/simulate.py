"""Simulated images drawn with GalSim, the independent reference renderer.

Used by the demo, the tests and the benchmarks: the fitted model (bayesprof's renderer)
never draws the data it is tested on.  GalSim is imported lazily; it is installed with the
``test`` extra (``pip install bayesprof[test]``, done by ``make install``).

Conventions bridged here: bayesprof's ``re`` is the semi-major half-light radius and
GalSim's ``half_light_radius`` is the circularised one before an area-preserving shear, so
``hlr = re * sqrt(q)``; bayesprof's PA is east of north on a north-up east-left image, and
GalSim's ``beta`` is counter-clockwise from +x, so ``beta = pa + 90 deg``.  Positions (xi, eta)
in arcsec become GalSim offsets of ``(-xi, eta) / pixel_scale`` pixels from the image centre.
"""

from __future__ import annotations

import copy

import numpy as np

from .components import Sersic
from .image import Image, ImageList
from .profiles import flux_to_counts
from .psf import GaussianPSF, MoffatPSF
from .scenes import SEED_IMAGES, seed_benchmark_galaxy

__all__ = ["galsim_sersic", "draw_galaxies", "simulate_seed_scene", "simulate_group_scene", "point_source_snr",
           "inject_point_source", "simulate_transient", "add_noise", "simulate_field", "FIELD_BANDS", "COLOUR_BANDS",
           "simulate_colour_gradient", "simulate_bulge_disk", "simulate_blend_scene"]


def _galsim():
    try:
        import galsim
    except ImportError as err:  # pragma: no cover - galsim is a test dependency
        raise ImportError("bayesprof.simulate needs GalSim: pip install galsim (or bayesprof[test])") from err
    return galsim


def galsim_sersic(gal: Sersic, counts: float):
    """The GalSim profile of a bayesprof :class:`Sersic` carrying ``counts`` in total."""
    galsim = _galsim()
    gsp = galsim.GSParams(folding_threshold=1e-5, maxk_threshold=1e-6, kvalue_accuracy=1e-7)
    prof = galsim.Sersic(n=float(gal.n), half_light_radius=float(gal.re) * np.sqrt(float(gal.q)), flux=counts,
                         gsparams=gsp)
    return prof.shear(q=float(gal.q), beta=(float(gal.pa) + 90.0) * galsim.degrees)


def _galsim_psf(psf):
    galsim = _galsim()
    if isinstance(psf, GaussianPSF):
        return galsim.Gaussian(fwhm=psf.fwhm)
    if isinstance(psf, MoffatPSF):
        return galsim.Moffat(beta=psf.beta, fwhm=psf.fwhm)
    raise TypeError(f"simulate supports Gaussian and Moffat PSFs, not {type(psf).__name__}")


def draw_galaxies(galaxies, image: Image, fluxes=None) -> np.ndarray:
    """Noiseless GalSim image of Sersic ``galaxies`` in a north-up, east-left ``image``.

    The image must have its default WCS (reference point at the array centre); positions
    are the galaxies' (xi, eta) in arcsec from that centre.  ``fluxes``: optional total
    fluxes (uJy) replacing each galaxy's ``flux`` (e.g. per band).  Returns counts/pixel.
    """
    galsim = _galsim()
    if isinstance(galaxies, Sersic):
        galaxies = [galaxies]
    ny, nx = image.shape
    scale = float(image.pixel_scale)
    psf = _galsim_psf(image.psf)
    out = np.zeros((ny, nx))
    for k, gal in enumerate(galaxies):
        flux = float(gal.flux if fluxes is None else fluxes[k])
        prof = galsim.Convolve(galsim_sersic(gal, float(flux_to_counts(flux, image.zeropoint))), psf)
        # galsim's offset is from the true centre ((n-1)/2 in 0-indexed pixels) = our reference point
        offset = (-float(gal.xi) / scale, float(gal.eta) / scale)
        out += prof.drawImage(nx=nx, ny=ny, scale=scale, offset=offset).array
    return out


def simulate_seed_scene(seed: int = 0, snr=(50.0, 20.0, 8.0), galaxy: Sersic | None = None,
                        colours=(0.0, 0.0, 0.0)):
    """The seed tutorial's first example, simulated: one Sersic in r, W1 and NUV.

    Images as in :data:`bayesprof.scenes.SEED_IMAGES` (r 0.262"/px 240x240, W1 2.75"/px 26x26,
    NUV 1.5"/px 44x44, Gaussian PSFs).  Gaussian noise of constant sigma per image gives the
    peak signal-to-noise ``snr`` (r, W1, NUV).  ``colours``: magnitude offsets per band added
    to the galaxy's magnitude.

    Returns ``(images, truth)`` where ``truth`` maps bayesprof site names (``gal.n``,
    ``gal.flux[r]``, ...) to the true values.
    """
    rng = np.random.default_rng(seed)
    gal = seed_benchmark_galaxy() if galaxy is None else galaxy
    images = []
    truth = {"gal.xi": float(gal.xi), "gal.eta": float(gal.eta), "gal.re": float(gal.re), "gal.n": float(gal.n),
             "gal.q": float(gal.q), "gal.pa": float(gal.pa)}
    for (name, scale, size, fwhm, zp), snr_k, dm in zip(SEED_IMAGES, snr, colours):
        flux = float(gal.flux) * 10 ** (-0.4 * dm)
        blank = Image(np.zeros((size, size)), sigma=1.0, pixel_scale=scale, psf=GaussianPSF(fwhm), zeropoint=zp,
                      band=name, name=name)
        model = draw_galaxies(gal, blank, [flux])
        sigma = model.max() / snr_k
        data = model + rng.normal(0.0, sigma, model.shape)
        images.append(Image(data, sigma=sigma, pixel_scale=scale, psf=GaussianPSF(fwhm), zeropoint=zp, band=name,
                            name=name))
        truth[f"gal.flux[{name}]"] = flux
    return ImageList(images), truth


#: the four overlapping galaxies of :func:`simulate_group_scene`: (xi, eta, r mag, re, n, q, pa),
#: and their colours (mag in W1 and NUV minus mag in r)
GROUP_GALAXIES = (
    (-4.0, 2.5, 16.5, 2.0, 1.0, 0.55, 30.0),
    (3.5, 3.5, 17.0, 1.5, 2.5, 0.8, 110.0),
    (-1.5, -4.0, 17.3, 2.5, 1.5, 0.45, 160.0),
    (5.0, -2.5, 17.8, 1.2, 4.0, 0.7, 75.0),
)
GROUP_COLOURS = ((-0.5, 1.5), (-0.8, 2.0), (-0.3, 1.0), (-1.0, 2.5))


def simulate_group_scene(seed: int = 0, snr=(50.0, 20.0, 8.0), size_r: int = 128, galaxies=GROUP_GALAXIES,
                         colours=GROUP_COLOURS):
    """The seed tutorial's second example, simulated: four overlapping galaxies in r, W1, NUV.

    Images as :func:`simulate_seed_scene` but r is ``size_r`` px (0.262"/px); noise gives peak
    S/N ``snr`` on the brightest pixel of each image.  ``galaxies``: tuples (xi, eta arcsec,
    r AB mag, re arcsec, n, q, pa deg east of north), default :data:`GROUP_GALAXIES`;
    ``colours``: per galaxy the AB magnitude offsets (W1 - r, NUV - r).  Returns
    ``(images, galaxies)``: ``galaxies`` is a list of dicts with xi, eta, re, n, q, pa and
    ``flux`` per band (uJy).
    """
    from .profiles import mag_to_flux

    if len(galaxies) != len(colours):
        raise ValueError(f"simulate_group_scene: {len(galaxies)} galaxies but {len(colours)} colours")
    rng = np.random.default_rng(seed)
    gals = []
    for (xi, eta, mag, re, n, q, pa), (c_w1, c_nuv) in zip(galaxies, colours):
        flux = {"r": float(mag_to_flux(mag)), "W1": float(mag_to_flux(mag + c_w1)),
                "NUV": float(mag_to_flux(mag + c_nuv))}
        gals.append({"xi": xi, "eta": eta, "re": re, "n": n, "q": q, "pa": pa, "flux": flux})
    images = []
    for (name, scale, size, fwhm, zp), snr_k in zip(SEED_IMAGES, snr):
        size = size_r if name == "r" else size
        blank = Image(np.zeros((size, size)), sigma=1.0, pixel_scale=scale, psf=GaussianPSF(fwhm), zeropoint=zp)
        sersics = [Sersic(xi=g["xi"], eta=g["eta"], flux=g["flux"][name], re=g["re"], n=g["n"], q=g["q"], pa=g["pa"])
                   for g in gals]
        model = draw_galaxies(sersics, blank)
        sigma = model.max() / snr_k
        data = model + rng.normal(0.0, sigma, model.shape)
        images.append(Image(data, sigma=sigma, pixel_scale=scale, psf=GaussianPSF(fwhm), zeropoint=zp, band=name,
                            name=name))
    return ImageList(images), gals


def _draw_psf_at(image: Image, x: float, y: float, counts: float) -> np.ndarray:
    """``counts`` drawn in the image's pixelized PSF stamp centred at pixel (x, y).

    The stamp (an effective PSF, pixel response included) is interpolated as the PSF says
    (:attr:`~bayesprof.psf.PixelPSF.interpolant`) and sampled at the pixel centres, in real
    space, independently of bayesprof's Fourier renderer: a band-limited stamp by the
    Whittaker-Shannon sum over its samples (separable sincs), a quintic one by GalSim
    (``method="no_pixel"``)."""
    from .psf import PixelPSF

    psf = image.psf
    if not isinstance(psf, PixelPSF) or psf.pixel_scale is not None or psf.sampling not in (None, 1.0):
        raise TypeError("inject_point_source needs a PixelPSF sampled at the image's pixels")
    ny, nx = image.shape
    if psf.interpolant == "sinc":
        sy, sx = psf.image.shape
        wx = np.sinc(np.arange(nx)[:, None] - x - (np.arange(sx)[None, :] - (sx - 1) / 2.0))
        wy = np.sinc(np.arange(ny)[:, None] - y - (np.arange(sy)[None, :] - (sy - 1) / 2.0))
        return counts * (wy @ np.asarray(psf.image, dtype=float) @ wx.T)
    galsim = _galsim()
    prof = galsim.InterpolatedImage(galsim.Image(np.asarray(psf.image, dtype=float), scale=1.0),
                                    x_interpolant="quintic", normalization="flux") * counts
    offset = (x - (nx - 1) / 2.0, y - (ny - 1) / 2.0)
    return prof.drawImage(nx=nx, ny=ny, scale=1.0, offset=offset, method="no_pixel").array


def point_source_snr(image: Image, position, flux: float) -> float:
    """Optimal (PSF-weighted) signal-to-noise of a point source of ``flux`` uJy at sky ``position``
    (SkyCoord) in ``image``: ``counts * sqrt(sum(P**2 / variance))`` over unmasked pixels."""
    x, y = image.wcs.world_to_pixel(position)
    p = _draw_psf_at(image, float(x), float(y), 1.0)
    good = ~image.mask
    return float(flux_to_counts(flux, image.zeropoint)) * float(np.sqrt(np.sum(p[good] ** 2 / image.variance[good])))


def inject_point_source(images, position, fluxes, *, gain=4.0, seed=0):
    """Images with a point source (e.g. a supernova) added, with its photon noise.

    Parameters
    ----------
    images : sequence of :class:`Image`
        With a :class:`~bayesprof.PixelPSF` at image pixels.
    position : astropy SkyCoord
        Where it lands in each image is decided by that image's WCS (``world_to_pixel``).
    fluxes : dict
        ``{image name: flux in uJy}`` (images not named get none).
    gain : float
        Detector gain (electrons per data unit) for the photon noise of the injected light:
        Gaussian noise of variance ``model / gain`` is added to the data and the same is added to
        the image's variance, as a pipeline that includes source noise would.

    Returns
    -------
    ImageList
        New images; the input images are unchanged.
    """
    rng = np.random.default_rng(seed)
    out = []
    for im in images:
        new = copy.copy(im)
        flux = fluxes.get(im.name, 0.0)
        if flux:
            x, y = im.wcs.world_to_pixel(position)
            model = _draw_psf_at(im, float(x), float(y), float(flux_to_counts(flux, im.zeropoint)))
            extra = np.clip(model, 0.0, None) / gain
            good = ~im.mask
            new.data = np.where(good, im.data + model + rng.normal(0.0, 1.0, model.shape) * np.sqrt(extra), 0.0)
            new.variance = np.where(good, im.variance + extra, im.variance)
        out.append(new)
    return ImageList(out, reference=images.reference if isinstance(images, ImageList) else None)


def simulate_transient(host: Sersic, host_flux: dict, position, epochs, *, reference, size=64, pixel_scale=0.262,
                       zeropoint=22.5, sigma=0.03, psf_beta=3.0) -> ImageList:
    """Noiseless GalSim epochs of a Sersic host and a point source (a supernova) whose flux changes.

    host : Sersic
        Structure and centre (``xi, eta``, arcsec about ``reference``); ``host_flux``: its flux
        per band (uJy).
    position : (xi, eta)
        The point source, arcsec east and north of ``reference``.
    epochs : list of dict
        Per epoch ``band``, ``fwhm`` (arcsec, a Moffat PSF of index ``psf_beta``), ``flux`` (uJy,
        0 for none), ``dither`` ((dx, dy) pixels: the WCS reference pixel moves by it) and
        optionally ``mjd`` and ``name`` (default ``e<k>``).
    reference : SkyCoord
        The tangent point (each epoch's TAN WCS has it at pixel centre + dither).

    Returns an :class:`ImageList` (counts/pixel at ``zeropoint``, noise ``sigma`` counts/pixel
    declared but not added: see :func:`add_noise`), PSF :class:`~bayesprof.MoffatPSF`.
    """
    from astropy.wcs import WCS

    galsim = _galsim()
    out = []
    for k, e in enumerate(epochs):
        ddx, ddy = (float(v) for v in e.get("dither", (0.0, 0.0)))
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [reference.ra.deg, reference.dec.deg]
        wcs.wcs.crpix = [(size + 1) / 2 + ddx, (size + 1) / 2 + ddy]
        wcs.wcs.cdelt = [-pixel_scale / 3600, pixel_scale / 3600]
        psf = galsim.Moffat(beta=psf_beta, fwhm=float(e["fwhm"]))
        per_ujy = float(flux_to_counts(1.0, zeropoint))
        parts = [(galsim_sersic(host, float(host_flux[e["band"]]) * per_ujy), float(host.xi), float(host.eta))]
        if e.get("flux", 0.0):
            parts.append((galsim.DeltaFunction(flux=float(e["flux"]) * per_ujy), *(float(v) for v in position)))
        image = np.zeros((size, size))
        for prof, xi, eta in parts:
            # the array centre ((n-1)/2, 0-indexed) is GalSim's origin; +x is west, +y north
            offset = (ddx - xi / pixel_scale, ddy + eta / pixel_scale)
            image += galsim.Convolve(prof, psf).drawImage(nx=size, ny=size, scale=pixel_scale, offset=offset).array
        out.append(Image(image, sigma=sigma, wcs=wcs, psf=MoffatPSF(float(e["fwhm"]), psf_beta), zeropoint=zeropoint,
                         band=e["band"], time=e.get("mjd"), name=e.get("name", f"e{k}")))
    return ImageList(out, reference=reference)


def add_noise(images, rng) -> ImageList:
    """Copies of ``images`` with Gaussian noise of each image's declared variance added
    (``rng``: a numpy Generator)."""
    out = []
    for im in images:
        new = copy.copy(im)
        new.data = im.data + rng.normal(0.0, 1.0, im.shape) * np.sqrt(im.variance)
        out.append(new)
    return ImageList(out, reference=images.reference if isinstance(images, ImageList) else None)


#: the two images of :func:`simulate_field`: (name, pixel scale arcsec, PSF, AB zeropoint, noise
#: sigma in counts, colour: AB mag offset from the first band)
FIELD_BANDS = (("r", 0.2, MoffatPSF(fwhm=0.8, beta=3.0), 27.0, 1.0, 0.0),
               ("i", 0.3, GaussianPSF(fwhm=1.0), 27.0, 1.5, -0.4))


def simulate_blend_scene(n_sources: int, seed: int = 0, pixels: int = 1):
    """``n_sources`` Sersics on a jittered grid (neighbours blend) plus a flat sky of 5 counts, in
    two images: r, 96 x 96 px at 0.262"/px (Gaussian PSF 1.1"), and z, 58 x 58 px at 0.445"
    (1.3"); ``pixels`` multiplies both images' sides around the same galaxies.  r magnitudes
    19-22 (z 0.4 mag brighter), re 0.4-1.2", n 0.8-3, q 0.4-0.95; noise sigma 2 % of a 22 mag
    galaxy's counts.  The scene of ``benchmarks/scaling.py``.

    Returns ``(images, galaxies, detections)``: ``galaxies`` dicts with xi, eta, re, n, q, pa and
    ``flux`` per band (uJy); ``detections`` the (xi, eta) a catalog would give, each within 0.1"
    (1 sigma) of the truth.
    """
    from .profiles import mag_to_flux

    rng = np.random.default_rng(seed)
    specs = (("r", 0.262, 96 * pixels, 1.1, 22.5), ("z", 0.445, 58 * pixels, 1.3, 22.5))
    field = 96 * 0.262  # arcsec (the galaxies' field; ``pixels`` enlarges the images around it)
    side = int(np.ceil(np.sqrt(n_sources)))
    step = 0.8 * field / side
    cells = [(i, j) for i in range(side) for j in range(side)]
    picks = rng.permutation(len(cells))[:n_sources]
    gals = []
    for c in picks:
        i, j = cells[c]
        xi = (i - (side - 1) / 2) * step + rng.uniform(-0.15, 0.15) * step
        eta = (j - (side - 1) / 2) * step + rng.uniform(-0.15, 0.15) * step
        mag = rng.uniform(19.0, 22.0)
        gals.append({"xi": xi, "eta": eta, "re": rng.uniform(0.4, 1.2), "n": rng.uniform(0.8, 3.0),
                     "q": rng.uniform(0.4, 0.95), "pa": rng.uniform(0, 180),
                     "flux": {"r": float(mag_to_flux(mag)), "z": float(mag_to_flux(mag - 0.4))}})
    images = []
    for name, scale, size, fwhm, zp in specs:
        blank = Image(np.zeros((size, size)), sigma=1.0, pixel_scale=scale, psf=GaussianPSF(fwhm), zeropoint=zp)
        sersics = [Sersic(xi=g["xi"], eta=g["eta"], flux=g["flux"][name], re=g["re"], n=g["n"], q=g["q"],
                          pa=g["pa"]) for g in gals]
        model = draw_galaxies(sersics, blank) + 5.0
        sigma = 0.02 * float(flux_to_counts(mag_to_flux(22.0), zp))
        data = model + rng.normal(0.0, sigma, model.shape)
        images.append(Image(data, sigma=sigma, pixel_scale=scale, psf=GaussianPSF(fwhm), zeropoint=zp, band=name,
                            name=name))
    detections = [(g["xi"] + rng.normal(0, 0.1), g["eta"] + rng.normal(0, 0.1)) for g in gals]
    return ImageList(images), gals, detections


def simulate_field(seed: int = 0, n_galaxies: int = 20, size_arcsec: float = 60.0, bands=FIELD_BANDS,
                   mag_range=(20.0, 22.5), re_range=(0.4, 1.2), n_range=(0.8, 3.0), q_range=(0.4, 0.9),
                   positions=None):
    """A field of Sersic galaxies drawn by GalSim in images of different pixel scales and PSFs,
    covering the same ``size_arcsec`` square of sky (north up, east left, centres on the
    default sky reference), with Gaussian noise.

    Galaxies: uniform positions (or ``positions``, (xi, eta) arcsec about the field's centre),
    r magnitudes uniform in ``mag_range``, ``re`` (arcsec), ``n``, ``q`` uniform in their
    ranges, PA uniform; each band's magnitude is r plus the band's colour.  Each galaxy is drawn
    on its own GalSim stamp (size chosen by GalSim) added to the frame, so a field of thousands
    of galaxies costs one stamp per galaxy, not one frame.

    Returns ``(images, truth)``: an ImageList and an astropy Table with ``id``, ``ra``, ``dec``
    (deg), ``xi``, ``eta`` (arcsec), ``re``, ``n``, ``q``, ``pa`` and ``flux_<band>`` (uJy).
    """
    from astropy.table import Table

    from .image import sky_from_offsets
    from .profiles import mag_to_flux

    galsim = _galsim()
    rng = np.random.default_rng(seed)
    half = 0.5 * float(size_arcsec)
    if positions is None:
        xi, eta = rng.uniform(-0.9 * half, 0.9 * half, (2, n_galaxies))
    else:
        xi, eta = (np.asarray(a, float) for a in np.asarray(positions, float).T)
        n_galaxies = xi.size
    mag = rng.uniform(*mag_range, n_galaxies)
    truth = Table({"id": np.arange(n_galaxies), "xi": xi, "eta": eta, "re": rng.uniform(*re_range, n_galaxies),
                   "n": rng.uniform(*n_range, n_galaxies), "q": rng.uniform(*q_range, n_galaxies),
                   "pa": rng.uniform(0.0, 180.0, n_galaxies)})
    images = []
    for name, scale, psf, zp, sigma, colour in bands:
        size = int(round(size_arcsec / scale))
        frame = galsim.ImageD(size, size, scale=scale)  # galsim pixel (1, 1) is our (0, 0)
        gpsf = _galsim_psf(psf)
        flux = mag_to_flux(mag + colour)
        truth[f"flux_{name}"] = flux
        c = (size - 1) / 2.0
        for k in range(n_galaxies):
            gal = Sersic(xi=0.0, eta=0.0, flux=float(flux[k]), re=float(truth["re"][k]), n=float(truth["n"][k]),
                         q=float(truth["q"][k]), pa=float(truth["pa"][k]))
            prof = galsim.Convolve(galsim_sersic(gal, float(flux_to_counts(float(flux[k]), zp))), gpsf)
            x, y = c - xi[k] / scale, c + eta[k] / scale
            stamp = prof.drawImage(scale=scale, center=galsim.PositionD(x + 1.0, y + 1.0))
            overlap = stamp.bounds & frame.bounds
            if overlap.isDefined():
                frame[overlap] += stamp[overlap]
        data = frame.array + rng.normal(0.0, sigma, (size, size))
        images.append(Image(data, sigma=sigma, pixel_scale=scale, psf=psf, zeropoint=zp, band=name, name=name))
    pos = sky_from_offsets(xi, eta, images[0].center_sky()).icrs
    truth["ra"], truth["dec"] = pos.ra.deg, pos.dec.deg
    return ImageList(images), truth


# ----------------------------------------------------------------------------- colour gradients
#: five bands of different instruments, pixel scales and PSFs: (name, filter curve, pixel scale
#: arcsec/px, PSF, size px, peak S/N per pixel); y is the faint band
COLOUR_BANDS = (("g", "hsc2017-g", 0.168, GaussianPSF(0.75), 56, 40.0),
                ("r", "hsc2017-r", 0.168, MoffatPSF(0.7, 3.0), 56, 60.0),
                ("i", "hsc2017-i", 0.262, GaussianPSF(0.9), 40, 60.0),
                ("z", "decam2014-z", 0.262, MoffatPSF(1.0, 2.5), 40, 40.0),
                ("y", "hsc2017-y", 0.4, GaussianPSF(1.1), 28, 3.0))


def _colour_images(galaxies_per_band, rng, bands=COLOUR_BANDS):
    images = []
    for (name, filt, scale, psf, size, snr), galaxies in zip(bands, galaxies_per_band):
        blank = Image(np.zeros((size, size)), sigma=1.0, pixel_scale=scale, psf=psf, zeropoint=27.0)
        model = draw_galaxies(galaxies, blank)
        sigma = model.max() / snr
        images.append(Image(model + rng.normal(0.0, sigma, model.shape), sigma=sigma, pixel_scale=scale, psf=psf,
                            zeropoint=27.0, band=name, name=name, wavelength=filt))
    return ImageList(images)


def simulate_colour_gradient(seed: int = 0, re_coefficients=(np.log(1.2), -0.25, 0.08),
                             n_coefficients=(-1.4, 0.5, -0.15), fluxes=(20.0, 30.0, 40.0, 45.0, 60.0)):
    """One Sersic in the five :data:`COLOUR_BANDS` whose re and n are quadratics in wavelength
    on the lines of :data:`bayesprof.wavelength.LINKS`: ``log re`` (arcsec) and
    ``logit((n - 0.5) / 7.5)`` are the Chebyshev series ``re_coefficients`` and
    ``n_coefficients`` (:class:`bayesprof.Chebyshev`: x from -1 at g to +1 at y; the defaults
    give re from 1.67" to 1.01" and n from 1.36 to 2.45); q = 0.6, PA = 30 deg; fluxes in uJy
    per band.  Returns ``(images, truth)``: ``truth`` maps site names (``gal.re_cheb``,
    ``gal.re[g]``, ``gal.flux[g]``, ...) to the true values."""
    from .wavelength import LOGIT_BOUNDS, Chebyshev, effective_wavelength

    rng = np.random.default_rng(seed)
    c_re, c_n = np.asarray(re_coefficients, float), np.asarray(n_coefficients, float)
    poly = Chebyshev(max(c_re.size, c_n.size) - 1)
    x = poly.coordinates([effective_wavelength(b[1]).value for b in COLOUR_BANDS])
    re = np.exp(np.polynomial.chebyshev.chebval(x, c_re))
    lo, hi = LOGIT_BOUNDS["n"]
    n = lo + (hi - lo) / (1.0 + np.exp(-np.polynomial.chebyshev.chebval(x, c_n)))
    truth = {"gal.re_cheb": c_re, "gal.n_cheb": c_n, "gal.xi": 0.1, "gal.eta": -0.05, "gal.q": 0.6, "gal.pa": 30.0}
    galaxies = []
    for k, b in enumerate(COLOUR_BANDS):
        galaxies.append([Sersic(0.1, -0.05, fluxes[k], re[k], n[k], 0.6, 30.0)])
        truth.update({f"gal.re[{b[0]}]": re[k], f"gal.n[{b[0]}]": n[k], f"gal.flux[{b[0]}]": fluxes[k]})
    return _colour_images(galaxies, rng), truth


def simulate_bulge_disk(seed: int = 0, bulge_fluxes=(4.0, 10.0, 18.0, 24.0, 30.0),
                        disk_fluxes=(25.0, 30.0, 32.0, 30.0, 20.0)):
    """A red bulge (n = 4, re = 0.45", q = 0.8, PA 60 deg) in a blue disk (n = 1, re = 1.8",
    q = 0.4, PA 30 deg), one centre, in the five :data:`COLOUR_BANDS`; fluxes in uJy per band.
    Returns ``(images, truth)`` with the site names of :meth:`bayesprof.Scene.add_bulge_disk`
    (``gal_bulge.flux[g]``, ``gal.bt[g]``, ...)."""
    rng = np.random.default_rng(seed)
    truth = {"gal_bulge.re": 0.45, "gal_bulge.n": 4.0, "gal_disk.re": 1.8}
    galaxies = []
    for k, b in enumerate(COLOUR_BANDS):
        fb, fd = float(bulge_fluxes[k]), float(disk_fluxes[k])
        galaxies.append([Sersic(0.1, -0.05, fb, 0.45, 4.0, 0.8, 60.0), Sersic(0.1, -0.05, fd, 1.8, 1.0, 0.4, 30.0)])
        truth.update({f"gal_bulge.flux[{b[0]}]": fb, f"gal_disk.flux[{b[0]}]": fd, f"gal.bt[{b[0]}]": fb / (fb + fd)})
    return _colour_images(galaxies, rng), truth
