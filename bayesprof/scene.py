"""Scenes: sources in images, parameter sharing, priors, and the NumPyro model.

A :class:`Scene` holds images and *declared* sources.  Each source has a component
type (:class:`~bayesprof.Sersic`, :class:`~bayesprof.Spline`, :class:`~bayesprof.FlatSky`,
...) and, for every parameter of that type, a sharing rule:

``"shared"``
    one latent site used by every image (default for structure:
    centre, re, n, q, pa, spline knots)
``"band"``
    one site per photometric band (default for ``flux``)
``"image"``
    one site per image, e.g. per epoch (default for sky parameters and
    astrometric offsets)
:class:`~bayesprof.Chebyshev` ``(degree)``
    a polynomial in wavelength across the bands (re, n, q, fwhm, flux, xi, eta): its
    coefficients are one site, ``gal.re_cheb``, and the value per band, ``gal.re[r]``, is
    derived (:mod:`bayesprof.wavelength`)

Explicit ties (:meth:`Scene.tie`) make a parameter of one source use another source's
site, so one object can be a spline in one image and a Sersic in others with a common
centre, q and PA (the seed tutorial's ``add_equality_constraint``).  Sources can be limited
to some images and to a window per image (:class:`Window` in pixels, :class:`SkyWindow`
in arcsec); a group of objects is simply a scene with many sources.
:meth:`Scene.add_astrometric_offsets` gives every image but a reference one a small,
sampled WCS shift (:class:`~bayesprof.AstrometricOffset`) that moves all its sources, so
imperfect alignment between images does not bias the shared structure;
:meth:`Scene.add_photometric_offsets` likewise gives images a sampled zeropoint correction
(:class:`~bayesprof.PhotometricOffset`) for exposures calibrated only nominally.

Site names say what they are: ``gal.n``, ``gal.flux[r]`` (band r), ``sky.level[img2]``
(image img2).  They are the NumPyro site names and the arviz variable names (with a
``band`` or ``image`` dimension).

:meth:`Scene.build` freezes the declaration into a :class:`SceneModel`: the pure,
jit-able functions of explicit site values that the inference uses (render every image,
log-likelihood, whitened residuals, the NumPyro model).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from . import components as comps
from .estimate import scene_estimates
from .image import Image, ImageList
from .likelihood import Likelihood, Normal, StudentT, as_likelihood
from .priors import PriorBlocks, SitePrior, prior_text, support_text
from .render import Renderer
from .wavelength import COEFFICIENT_PRIOR_WIDTHS, LINK_CODES, LINKS, LOGIT_BOUNDS, Chebyshev, inverse_link, link

__all__ = ["Scene", "SceneModel", "Source", "Window", "SkyWindow", "Site", "VARY_MODES"]

VARY_MODES = comps.SHARING  # the sharing rules a parameter may declare (components.Parameter)


@dataclass(frozen=True)
class Window:
    """A pixel box of one image: columns ``x0:x1``, rows ``y0:y1`` (0-indexed, half-open)."""

    x0: int
    x1: int
    y0: int
    y1: int

    def pixel_box(self, image, reference):
        return int(self.x0), int(self.x1), int(self.y0), int(self.y1)


@dataclass(frozen=True)
class SkyWindow:
    """A box on the sky: ``xi_min..xi_max`` east, ``eta_min..eta_max`` north (arcsec about the
    scene reference); in each image it becomes the pixel box enclosing its corners."""

    xi_min: float
    xi_max: float
    eta_min: float
    eta_max: float

    def pixel_box(self, image, reference):
        pm = image.pixel_map(reference)
        xi = np.array([self.xi_min, self.xi_max, self.xi_min, self.xi_max], dtype=float)
        eta = np.array([self.eta_min, self.eta_min, self.eta_max, self.eta_max], dtype=float)
        x, y = (np.asarray(v) for v in pm(xi, eta))
        return (int(np.floor(x.min() + 0.5)), int(np.floor(x.max() + 0.5)) + 1,
                int(np.floor(y.min() + 0.5)), int(np.floor(y.max() + 0.5)) + 1)


def _as_window(w, label):
    if isinstance(w, (Window, SkyWindow)):
        return w
    try:
        x0, x1, y0, y1 = (int(v) for v in w)
    except (TypeError, ValueError):
        raise ValueError(f"{label}: a window is Window(x0, x1, y0, y1), SkyWindow(...) or a tuple "
                         f"(x0, x1, y0, y1) of pixels, not {w!r}") from None
    return Window(x0, x1, y0, y1)


@dataclass
class Source:
    """A declared source: a component type with sharing rules, images and windows."""

    name: str
    kind: type
    vary: dict
    images: list | None = None
    windows: dict = field(default_factory=dict)
    knots: tuple | None = None

    @property
    def params(self) -> list[str]:
        return parameter_names(self.kind)

    def mode(self, param):
        """The sharing rule of ``param``: ``"shared"``, ``"band"``, ``"image"`` or a
        :class:`~bayesprof.Chebyshev`."""
        if param in self.vary:
            return self.vary[param]
        return self.kind.parameter(param).sharing

    def __getitem__(self, param) -> str:
        if param not in self.params:
            raise KeyError(f"{self.name}: {self.kind.__name__} has no parameter {param!r}; it has {self.params}")
        return f"{self.name}.{param}"


def parameter_names(kind) -> list[str]:
    """Free parameters of a component type: its declared ``PARAMETERS``, in field order."""
    return [f.name for f in dataclasses.fields(kind) if f.name in kind.PARAMETERS]


@dataclass
class Site:
    """One latent (or fixed) parameter of the model."""

    name: str  # e.g. "gal.flux[r]"
    base: str  # e.g. "gal.flux"
    source: str
    param: str
    dim: str | None  # "band", "image" or None
    label: str | None  # the band or image name
    shape: tuple
    prior: SitePrior | None = None
    fixed: object = None
    init: object = None
    #: for the coefficients of a parameter that varies with wavelength: its :class:`~bayesprof.Chebyshev`
    poly: object = None

    @property
    def is_angle(self):
        return self.param == "pa" and self.poly is None


@dataclass
class Derived:
    """A value computed from the sites, not sampled: a polynomial parameter's value in one band
    (``coefficients``: the site of its Chebyshev coefficients; ``basis``: ``T_j(x)`` of the
    band), or a bulge-to-total flux ratio (``parts``: the bulge's and the disk's flux entries in
    that band).  In the MAP's values (with propagated errors) and in the posterior."""

    name: str  # e.g. "gal.re[r]"
    base: str  # e.g. "gal.re"
    source: str
    param: str
    dim: str | None
    label: str | None
    shape: tuple = ()
    coefficients: str | None = None
    basis: object = None
    wavelength: float | None = None  # the band's effective wavelength (Angstrom)
    parts: tuple | None = None


class Scene:
    """Images plus declared sources: build one with images, then :meth:`add` sources.

    Parameters
    ----------
    images : list of :class:`~bayesprof.Image` or an :class:`~bayesprof.ImageList`
        Any sizes, pixel scales, PSFs, bands, WCSs.
    reference : SkyCoord, optional
        Tangent point of the (xi, eta) frame; default: the first image's centre.
    likelihood : {"normal", "student_t", "poisson"}, a :class:`~bayesprof.likelihood.Likelihood`, or a dict
        Pixel likelihood (:mod:`bayesprof.likelihood`): Gaussian with the images' variance
        (default); Student-t with ``dof`` degrees of freedom and the same scale (robust to
        outliers); or Poisson in the images' counts (data must be counts, e.g. electrons;
        variance ignored).  A dict ``{image name: likelihood}`` gives images their own
        (instruments with different noise); images it does not name are normal.
    dof : float
        Degrees of freedom of the Student-t likelihood when given by name.
    """

    def __init__(self, images, *, reference=None, likelihood="normal", dof=5.0):
        images = images if isinstance(images, ImageList) else ImageList(list(images))
        if reference is not None:
            images.reference = reference
        if len(images) == 0:
            raise ValueError("a Scene needs at least one image")
        self.images = images
        if isinstance(likelihood, dict) and not (len(likelihood) == 1 and StudentT.name in likelihood):
            unknown = [k for k in likelihood if k not in images]
            if unknown:
                raise ValueError(f"likelihood: no image(s) named {unknown} in the scene ({images.names})")
            per_image = {im.name: as_likelihood(likelihood.get(im.name, Normal()), dof) for im in images}
        else:
            common = as_likelihood(likelihood, dof)
            per_image = {im.name: common for im in images}
        self.likelihoods: dict[str, Likelihood] = per_image
        self.sources: list[Source] = []
        self._priors: dict[str, object] = {}
        self._inits: dict[str, object] = {}
        self._fixed: dict[str, object] = {}
        self._ties: dict[tuple, tuple] = {}
        self._bulge_disks: dict[str, tuple] = {}  # galaxy name -> (bulge source, disk source)
        self._built = None

    # ------------------------------------------------------------------ declaring
    def add(self, name, kind, *, vary=None, images=None, windows=None, init=None, knots=None) -> Source:
        """Declare a source and return it.

        name : str
            Unique source name (no dots or brackets): site names start with it.
        kind : component class
            :class:`~bayesprof.Sersic`, :class:`~bayesprof.Exponential`, ..., :class:`~bayesprof.Spline`,
            :class:`~bayesprof.PointSource`, :class:`~bayesprof.FlatSky`, :class:`~bayesprof.PlaneSky`.
        vary : dict, optional
            ``{param: "shared" | "band" | "image" | Chebyshev(degree)}`` overriding the defaults
            (structure shared, flux per band, sky per image); :class:`~bayesprof.Chebyshev`: a
            polynomial in wavelength across the bands (the images need a ``wavelength``).
        images : list of image names, optional
            Limit the source to these images (default: every image).
        windows : dict, optional
            ``{image name: Window | SkyWindow | (x0, x1, y0, y1)}``: render and fit the source
            only inside this box of that image.
        init : dict, optional
            Initial values ``{param: value}`` (e.g. ``{"xi": 1.5, "eta": -0.3}``), used instead of
            the image estimates; a value is used for every site of that parameter.
        knots : sequence of float, optional
            Spline knots in arcsec (first 0), for :class:`~bayesprof.Spline` only; default: 0 and
            8 radii spaced logarithmically from one pixel to 4 estimated half-light radii.
        """
        if not isinstance(name, str) or not name or any(c in name for c in ".[] "):
            raise ValueError(f"source name must be a non-empty string without '.', '[', ']' or spaces: {name!r}")
        if any(s.name == name for s in self.sources):
            raise ValueError(f"a source named {name!r} exists already")
        if not (isinstance(kind, type) and issubclass(kind, comps.Component)):
            raise TypeError(f"{name}: kind must be a component class such as bayesprof.Sersic, not {kind!r}")
        params = parameter_names(kind)
        vary = dict(vary or {})
        for p, mode in vary.items():
            if p not in params:
                raise ValueError(f"{name}: {kind.__name__} has no parameter {p!r} (vary); it has {params}")
            if isinstance(mode, Chebyshev):
                if p not in LINKS or kind.is_sky or kind.is_nuisance():
                    what = [q for q in params if q in LINKS] if not (kind.is_sky or kind.is_nuisance()) else []
                    raise ValueError(f"{name}.{p}: a {kind.__name__}'s {p!r} cannot vary as a polynomial in "
                                     f"wavelength; parameters that can: {what}")
            elif not isinstance(mode, str) or mode not in VARY_MODES:
                raise ValueError(f"{name}.{p}: vary must be one of {VARY_MODES} or a bayesprof.Chebyshev, "
                                 f"not {mode!r}")
        if images is not None:
            images = [im.name if isinstance(im, Image) else im for im in images]
            for im in images:
                if im not in self.images:
                    raise ValueError(f"{name}: no image named {im!r}; images are {self.images.names}")
        wins = {}
        for im, w in (windows or {}).items():
            im = im.name if isinstance(im, Image) else im
            if im not in self.images:
                raise ValueError(f"{name}: window for unknown image {im!r}; images are {self.images.names}")
            if images is not None and im not in images:
                raise ValueError(f"{name}: window for image {im!r}, which the source is not in ({images})")
            wins[im] = _as_window(w, f"{name}, image {im}")
        if knots is not None:
            if kind is not comps.Spline:
                raise ValueError(f"{name}: knots only apply to Spline sources")
            knots = tuple(float(k) for k in knots)
            if knots[0] != 0.0 or len(knots) < 3 or np.any(np.diff(knots) <= 0):
                raise ValueError(f"{name}: knots must start at 0, increase strictly and number >= 3: {knots}")
        if kind.is_nuisance() and wins:
            raise ValueError(f"{name}: a {kind.__name__} applies to whole images; it takes no windows")
        if kind.is_nuisance():
            taken = {im for s in self.sources if s.kind is kind
                     for im in (s.images if s.images is not None else self.images.names)}
            clash = sorted(taken & set(images if images is not None else self.images.names))
            if clash:
                what = "an astrometric offset" if kind.is_offset else "a zeropoint correction"
                raise ValueError(f"{name}: images {clash} have {what} already ({kind.__name__})")
        src = Source(name, kind, vary, images, wins, knots)
        self.sources.append(src)
        for p, v in (init or {}).items():
            if p not in params:
                raise ValueError(f"{name}: {kind.__name__} has no parameter {p!r} (init); it has {params}")
            self._inits[f"{name}.{p}"] = v
        self._built = None
        return src

    def add_bulge_disk(self, name, *, bulge=comps.Sersic, disk=comps.Exponential, vary_bulge=None, vary_disk=None,
                       images=None, windows=None, init=None) -> tuple:
        """Declare a galaxy as a bulge plus a disk with one centre; returns their two sources.

        The sources are ``<name>_bulge`` (``bulge``: a Sersic by default, or e.g.
        :class:`~bayesprof.DeVaucouleurs`) and ``<name>_disk`` (``disk``: an
        :class:`~bayesprof.Exponential` by default).  The disk's centre is tied to the bulge's;
        each has its own structure (q, pa, re, a Sersic bulge's n) and its own flux per band,
        with sharing rules ``vary_bulge`` and ``vary_disk`` as :meth:`add`'s ``vary`` (e.g.
        ``{"re": Chebyshev(1)}``: a size that changes with wavelength).  The bulge-to-total flux
        ratio of each band, ``<name>.bt[<band>]``, is derived: in the MAP's values (with its
        linearised error) and in the posterior.

        What keeps the two apart: both start from one estimate of the whole galaxy, the bulge
        with 0.4 of its flux, 0.5 of its half-light radius and n = 3, the disk with 0.6 of the
        flux and 1.5 times the radius; a Sersic bulge's n has the prior Uniform(1.5, 8), above
        the disk's n = 1 (a Sersic disk's: Uniform(0.3, 1.5)), so the two profiles cannot trade
        places (a bulge that wants n < 1.5 ends at that bound and the fit says so).

        ``images``, ``windows``: as :meth:`add`, for both; ``init``: ``{"xi": ..., "eta": ...}``,
        the centre to start from (other starts: :meth:`set_init` on either source).
        """
        for kind, what in ((bulge, "bulge"), (disk, "disk")):
            if not (isinstance(kind, type) and issubclass(kind, comps.Component)) or kind.is_sky or \
                    kind.is_nuisance() or kind.is_point or not {"xi", "eta", "flux", "q", "pa"} <= set(parameter_names(kind)):
                raise ValueError(f"{name}: the {what} must be an extended profile class such as bayesprof.Sersic, "
                                 f"not {kind!r}")
        init = dict(init or {})
        extra = sorted(set(init) - {"xi", "eta"})
        if extra:
            raise ValueError(f"{name}: add_bulge_disk's init takes the centre (xi, eta) only, not {extra}; start "
                             f"other parameters with set_init on {name}_bulge or {name}_disk")
        b = self.add(f"{name}_bulge", bulge, vary=vary_bulge, images=images, windows=windows, init=init)
        d = self.add(f"{name}_disk", disk, vary=vary_disk, images=images, windows=windows)
        self.tie(d.name, b.name, params=["xi", "eta"])
        if "n" in b.params and not isinstance(b.mode("n"), Chebyshev):
            self.set_prior(f"{b.name}.n", dist.Uniform(1.5, 8.0))
        if "n" in d.params and not isinstance(d.mode("n"), Chebyshev):
            self.set_prior(f"{d.name}.n", dist.Uniform(0.3, 1.5))
        self._pair_bulge_disk(name, b.name, d.name)
        return b, d

    def _pair_bulge_disk(self, name, bulge, disk):
        """Record that sources ``bulge`` and ``disk`` (declared in that order) are one galaxy
        ``name``: joint start, derived B/T (:meth:`add_bulge_disk`; scene files)."""
        if not isinstance(name, str) or not name or any(c in name for c in ".[] "):
            raise ValueError(f"a galaxy name must be a non-empty string without '.', '[', ']' or spaces: {name!r}")
        names = [s.name for s in self.sources]
        for src in (bulge, disk):
            self.source(src)
        if names.index(bulge) > names.index(disk):
            raise ValueError(f"{name}: the bulge {bulge!r} must be declared before the disk {disk!r}")
        if name in self._bulge_disks or any({bulge, disk} & set(p) for p in self._bulge_disks.values()):
            raise ValueError(f"{name}: a bulge + disk of that name, or with these sources, exists already")
        self._bulge_disks[name] = (bulge, disk)
        self._built = None

    def add_astrometric_offsets(self, sigma=0.1, *, reference_image=None, images=None,
                                name="astrometry") -> Source:
        """Give images a sampled astrometric offset (a WCS shift, arcsec) with prior Normal(0, sigma).

        sigma : float
            Prior width of each offset component in arcsec (the expected WCS misalignment,
            e.g. 0.03-0.1" for survey CCDs, ~0.3" for unWISE).
        reference_image : str, optional
            The image whose WCS defines the frame (no offset); default: the first image.
            ``False`` gives every image an offset (the prior alone fixes the frame).
        images : list of str, optional
            Images with offsets (default: every image but the reference).

        Sites ``<name>.dxi[<image>]`` and ``<name>.deta[<image>]`` (see
        :class:`~bayesprof.AstrometricOffset` for the sign convention).
        """
        sigma = float(sigma)
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"add_astrometric_offsets: sigma must be a positive number of arcsec, not {sigma}")
        if reference_image is None:
            reference_image = self.images.names[0]
        if reference_image is not False and reference_image not in self.images:
            raise ValueError(f"add_astrometric_offsets: no image named {reference_image!r}; "
                             f"images are {self.images.names}")
        if images is None:
            images = [n for n in self.images.names if n != reference_image]
        elif reference_image in images:
            raise ValueError(f"add_astrometric_offsets: the reference image {reference_image!r} cannot have an offset")
        if not images:
            raise ValueError("add_astrometric_offsets: no image left to give an offset")
        src = self.add(name, comps.AstrometricOffset, images=images)
        self.set_prior(f"{name}.dxi", dist.Normal(0.0, sigma))
        self.set_prior(f"{name}.deta", dist.Normal(0.0, sigma))
        return src

    def add_photometric_offsets(self, sigma=0.1, *, reference_images=None, images=None,
                                name="photometry") -> Source:
        """Give images a sampled zeropoint correction ``dzp`` (mag) with prior Normal(0, sigma).

        For single exposures whose zeropoints are nominal (exposure time and a standard
        zeropoint, no photometric calibration): clouds and calibration errors of a few tenths
        of a magnitude would otherwise bias a flux shared by the exposures of a band, and leave
        residuals at the centre of every bright source.

        sigma : float
            Prior width in mag (the expected calibration error, e.g. 0.02 for calibrated survey
            exposures, 0.1-0.3 for nominal zeropoints under possible cloud).
        reference_images : list of str, optional
            Images without a correction; their zeropoints define the flux scale.  Default: the
            first image of each band, so every band's flux is in the calibration of its first
            image.  ``[]`` gives every image a correction (the prior alone fixes the scale).
        images : list of str, optional
            Images with a correction (default: every image but the references).

        Sites ``<name>.dzp[<image>]`` (see :class:`~bayesprof.PhotometricOffset`).
        """
        sigma = float(sigma)
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"add_photometric_offsets: sigma must be a positive number of mag, not {sigma}")
        if reference_images is None:
            first = {}
            for im in self.images:
                first.setdefault(im.band, im.name)
            reference_images = list(first.values())
        reference_images = [im.name if isinstance(im, Image) else im for im in reference_images]
        for r in reference_images:
            if r not in self.images:
                raise ValueError(f"add_photometric_offsets: no image named {r!r}; images are {self.images.names}")
        if images is None:
            images = [n for n in self.images.names if n not in reference_images]
        else:
            images = [im.name if isinstance(im, Image) else im for im in images]
            both = sorted(set(images) & set(reference_images))
            if both:
                raise ValueError(f"add_photometric_offsets: the reference images {both} cannot have a correction")
        if not images:
            raise ValueError("add_photometric_offsets: no image left to give a correction (each band has one "
                             "image, its reference); pass reference_images=[] to correct them all")
        src = self.add(name, comps.PhotometricOffset, images=images)
        self.set_prior(f"{name}.dzp", dist.Normal(0.0, sigma))
        return src

    def source(self, name) -> Source:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(f"no source named {name!r}; sources are {[s.name for s in self.sources]}")

    def _check_param_ref(self, ref, what):
        if "[" in ref:
            ref = ref[: ref.index("[")]
        try:
            src, p = ref.split(".")
        except ValueError:
            raise ValueError(f"{what}: {ref!r} is not 'source.parameter'") from None
        s = self.source(src)
        if what != "tie" and p.endswith("_cheb") and p[:-5] in s.params and isinstance(s.mode(p[:-5]), Chebyshev):
            return s, p
        if p not in s.params:
            raise ValueError(f"{what}: {s.kind.__name__} {src!r} has no parameter {p!r}; it has {s.params}")
        if isinstance(s.mode(p), Chebyshev) and what in ("set_prior", "fix"):
            raise ValueError(f"{what}: {src}.{p} varies as a {s.mode(p).text()} in wavelength; its site is the "
                             f"coefficients {src}.{p}_cheb ({s.mode(p).size} values)")
        return s, p

    def set_prior(self, site, prior):
        """Prior of a site (``"gal.flux[r]"``) or of all sites of a parameter (``"gal.flux"``):
        any NumPyro distribution (elementwise for vector parameters such as spline knots)."""
        self._check_param_ref(site, "set_prior")
        if not isinstance(prior, dist.Distribution):
            raise TypeError(f"set_prior({site!r}): the prior must be a numpyro distribution, not {prior!r}")
        self._priors[site] = prior
        self._built = None

    def set_init(self, site, value):
        """Initial value of a site or of all sites of a parameter (overrides the image estimate)."""
        self._check_param_ref(site, "set_init")
        self._inits[site] = value
        self._built = None

    def has_init(self, site) -> bool:
        """Whether an initial value was given under ``site`` (a site or parameter name, as for
        :meth:`set_init` or ``add(..., init=...)``)."""
        return site in self._inits

    def fix(self, site, value):
        """Hold a site (or all sites of a parameter) at ``value``: it is not fitted."""
        self._check_param_ref(site, "fix")
        self._fixed[site] = value
        self._built = None

    def tie(self, param, to, params=None):
        """Make ``param`` use the site(s) of ``to``.

        ``tie("gal_r.xi", "gal.xi")`` ties one parameter; ``tie("gal_r", "gal", params=["xi", "eta",
        "q", "pa"])`` ties several parameters of two sources.  The target's sharing rule applies.
        """
        if params is not None:
            for p in params:
                self.tie(f"{param}.{p}", f"{to}.{p}")
            return
        s1, p1 = self._check_param_ref(param, "tie")
        s2, p2 = self._check_param_ref(to, "tie")
        if (p1 == "log_i") != (p2 == "log_i"):
            raise ValueError(f"tie: {param} and {to} have different shapes")
        target = (s2.name, p2)
        seen = {(s1.name, p1)}
        while target in self._ties:
            target = self._ties[target]
            if target in seen:
                raise ValueError(f"tie: {param} -> {to} makes a cycle")
        if target == (s1.name, p1):
            raise ValueError(f"tie: {param} -> {to} makes a cycle")
        self._ties[(s1.name, p1)] = (s2.name, p2)
        self._built = None

    # ------------------------------------------------------------------ building
    def build(self) -> "SceneModel":
        """Freeze the declaration into a :class:`SceneModel` (cached until the scene changes)."""
        if self._built is None:
            self._built = SceneModel(self)
        return self._built

    @property
    def sites(self) -> list[Site]:
        return self.build().sites

    def numpyro_model(self):
        """A plain NumPyro model function of no arguments (see :meth:`SceneModel.numpyro_model`)."""
        return self.build().numpyro_model

    def initial_values(self) -> dict:
        return dict(self.build().init_values)

    def render(self, values) -> list:
        """Model images (counts/pixel) for site ``values`` (a dict, e.g. ``fit.values``)."""
        return [np.asarray(m) for m in self.build().render_all(values)]

    def __repr__(self):
        srcs = ", ".join(f"{s.name}:{s.kind.__name__}" for s in self.sources)
        return f"Scene(images={self.images.names}, sources=[{srcs}], likelihood={self.likelihood!r})"

    @property
    def likelihood(self):
        """The images' pixel likelihood: its name when all images share one (``"normal"``,
        ``"student_t"``, ``"poisson"``), else ``{image name: name}``; the objects are in
        :attr:`likelihoods`."""
        names = {im: lk.name for im, lk in self.likelihoods.items()}
        return next(iter(names.values())) if len(set(names.values())) == 1 else names


# ====================================================================== the frozen model
@jax.jit
def _derived_of(model, values):
    """``model.derived_values`` of the complete site ``values``, as one compiled call."""
    return model.derived_values(model.flat(values))


@jax.jit
def _model_images(model, values):
    """Every image's model (counts/pixel) at the site ``values`` (fixed sites added), one compiled call."""
    return tuple(model._models(model.flat(model.complete(values))))


@jax.jit
def _image_log_likelihoods(model, values, data):
    """Each image's log-likelihood at the site ``values`` (fixed sites added), one compiled call
    (run op by op, a scene's took seconds)."""
    return tuple(model._log_likelihoods(model.flat(model.complete(values)), data))


@jax.jit
def _draw_model_images(model, draws):
    """:func:`_model_images` of every draw of the stacked latent site values ``draws``."""
    return jax.lax.map(lambda d: _model_images(model, d), draws, batch_size=8)


def _show(value):
    """A value for a message: a number as given, an array as a list."""
    v = np.asarray(value)
    return f"{float(v):g}" if v.ndim == 0 and np.issubdtype(v.dtype, np.number) else repr(np.asarray(v).tolist())


def _check_prior(site, prior, domain):
    """A user's prior must be valid (arguments inside their constraints, an interval's bounds
    in order) and its support inside the parameter's domain; else a one-line ValueError."""
    name = f"the prior {prior_text(prior)} of {site.name}"
    try:
        prior.validate_args(strict=False)
    except ValueError as err:
        raise ValueError(f"{name} is invalid: {err}") from None
    support = prior.support
    lo = np.asarray(getattr(support, "lower_bound", -np.inf), dtype=float)
    hi = np.asarray(getattr(support, "upper_bound", np.inf), dtype=float)
    if np.any(np.isnan(lo) | np.isnan(hi) | (lo >= hi)):
        raise ValueError(f"{name} has an empty support: lower bound {_show(lo)} >= upper bound {_show(hi)}")
    if not domain.covers(lo, hi):
        raise ValueError(f"{name} has support {support_text(prior)}, beyond the domain {domain.text(site.param)}; "
                         f"use a prior inside it (e.g. Uniform, LogNormal or TruncatedNormal)")


def _resolve(scene, src_name, param):
    key = (src_name, param)
    while key in scene._ties:
        key = scene._ties[key]
    return key


class _Structure:
    """The static part of a :class:`SceneModel` pytree: a hashable key of everything that shapes
    the computation (site names and shapes, image names and shapes, windows, the component kinds
    of each render stack, which images have offsets, the likelihood), and the model it came from,
    whose arrays are replaced by the pytree's leaves.  Two models with equal keys share compiled
    programs."""

    def __init__(self, key, model):
        self.key, self.model, self._hash = key, model, hash(key)

    def __eq__(self, other):
        return isinstance(other, _Structure) and self._hash == other._hash and self.key == other.key

    def __hash__(self):
        return self._hash


@jax.tree_util.register_pytree_node_class
class SceneModel:
    """The pure model of a scene: sites, renderers and likelihood, as jit-able functions.

    Attributes: ``sites`` (all, in order), ``latent`` (the sampled ones), ``init_values``
    (physical values of every site), ``images``.

    A SceneModel is a JAX pytree whose leaves are its arrays (pixel data and weights, the
    renderers' tables, prior parameters, fixed values, index maps) and whose static part is its
    structure (:class:`_Structure`), so jitted functions taking it as an argument compile once
    per structure: a new scene of the same structure (other data, positions, PSFs of the same
    kind and sampling, priors of the same families) reuses them.
    """

    def __init__(self, scene: Scene):
        self.scene = scene
        self.images = scene.images
        self.reference = scene.images.reference
        self.likelihoods = tuple(scene.likelihoods[im.name] for im in scene.images)  # in image order
        if not scene.sources:
            raise ValueError("the scene has no sources: add some with Scene.add")
        empty = [im.name for im in scene.images if im.mask.all()]
        if empty:
            raise ValueError(f"image(s) {empty} have no unmasked pixels: nothing to fit (drop them from the scene)")
        self._check_psfs()
        self._pixel_maps = {}  # set-up only (see _pixel_map), dropped below
        members = self._memberships()
        self._boxes = self._windows(members)
        # spline knots (arcsec) per Spline source: declared or chosen from the estimates
        estimates, self.knots = scene_estimates(scene, members, self._boxes, self._pixel_map)
        self.sites = self._make_sites(members, estimates)
        self.site = {s.name: s for s in self.sites}
        self.latent = [s for s in self.sites if s.fixed is None]
        self.init_values = {s.name: (s.fixed if s.fixed is not None else s.init) for s in self.sites}
        self._layout()
        self.priors = PriorBlocks([s.prior for s in self.latent])
        self._latent_entries = np.concatenate([self._phys[s.name] for s in self.latent] or [np.zeros(0, int)])
        self._fixed_values = self._entries({s.name: (s.fixed if s.fixed is not None else jnp.zeros(s.shape))
                                            for s in self.sites})
        self._plan_list = self._template_plans = self._plan(members)
        self._batches = self._batch()
        self._stacked = self._stack_plans()
        # the fitted pixels in the concatenation of the raveled images (whitened_residuals)
        starts = np.cumsum([0] + [p["good"].size for p in self._plans])
        self._fitted = np.concatenate([start + p["index"] for start, p in zip(starts, self._plans)])
        self.n_data = int(sum(np.count_nonzero(p["good"]) for p in self._plans))  # unmasked fitted pixels
        self.n_fitted = int(self._fitted.size)  # rows of pixel residuals (masked ones are zero)
        self._structure = _Structure(self._structure_key(), self)
        #: each image's PixelMap where set-up made one (numpy coefficients, in image order; None
        #: for an image seen only through windows, whose whole frame may be too large for one
        #: polynomial): checks on the result (:func:`~bayesprof.diagnostics.check_map`) use it
        #: instead of astropy's WCS per point
        self.image_maps = tuple(self._pixel_maps[id(im)][1] if id(im) in self._pixel_maps else None
                                for im in self.images)
        del self._pixel_maps

    def _pixel_map(self, image):
        """``image.pixel_map(self.reference)``, made once per image (or window stamp) while the
        model is set up: estimation and the renderers use it several times."""
        if id(image) not in self._pixel_maps:  # the image is kept with its map, so its id stays its own
            self._pixel_maps[id(image)] = (image, image.pixel_map(self.reference))
        return self._pixel_maps[id(image)][1]

    # -- checks and structure
    def _check_psfs(self):
        for im in self.images:
            if im.psf is None:
                raise ValueError(f"image {im.name!r} has no PSF: give psf=GaussianPSF(...), MoffatPSF(...) or "
                                 "PixelPSF(...)")
            half = 2 * float(im.psf.radius(im.pixel_scale, 0.5))
            if half > min(im.shape):
                raise ValueError(f"image {im.name!r}: the PSF (half-light diameter {half:.1f} px) is larger than "
                                 f"the image ({im.ny} x {im.nx} px); use a larger cut-out")

    def _memberships(self):
        """{source name: [image names]} for every non-empty source."""
        out = {}
        for s in self.scene.sources:
            out[s.name] = list(s.images) if s.images is not None else list(self.images.names)
        return out

    def _windows(self, members):
        boxes = {}
        for s in self.scene.sources:
            for im_name, w in s.windows.items():
                im = self.images[im_name]
                x0, x1, y0, y1 = w.pixel_box(im, self.reference)
                if min(x1, im.nx) <= max(x0, 0) or min(y1, im.ny) <= max(y0, 0):
                    raise ValueError(f"{s.name}: window {w} does not overlap image {im_name!r} "
                                     f"({im.nx} x {im.ny} px)")
                boxes[(s.name, im_name)] = (max(x0, 0), min(x1, im.nx), max(y0, 0), min(y1, im.ny))
        return boxes

    # -- sites
    def _make_sites(self, members, est):
        scene = self.scene
        sites: dict[str, Site] = {}
        derived: dict[str, Derived] = {}
        self._usage = {}  # (source, image) -> {param: site name (or derived value's name)}
        for s in scene.sources:
            for im_name in members[s.name]:
                im = self.images[im_name]
                use = {}
                for p in s.params:
                    name, base, tsrc, tp, dim, label = self._site_of(s.name, p, im)
                    use[p] = name
                    mode = scene.source(tsrc).mode(tp)
                    if isinstance(mode, Chebyshev):  # the coefficients are the site; the band's value is derived
                        if name not in derived:
                            derived[name] = Derived(name, base, tsrc, tp, "band", label, coefficients=f"{base}_cheb")
                            derived[name]._images = []
                        derived[name]._images.append(im_name)
                        name, base, dim, label = f"{base}_cheb", f"{base}_cheb", None, None
                    if name not in sites:
                        shape = ((len(self.knots[tsrc]) - 1,) if tp == "log_i"
                                 else (mode.size,) if isinstance(mode, Chebyshev) else ())
                        sites[name] = Site(name, base, tsrc, tp, dim, label, shape,
                                           poly=mode if isinstance(mode, Chebyshev) else None)
                        sites[name]._images = []
                    sites[name]._images.append(im_name)
                self._usage[(s.name, im_name)] = use
        self.derived = self._wavelength_bases(sites, derived)
        for galaxy, (bulge, disk) in scene._bulge_disks.items():  # B/T per band (per image if a flux is)
            per_image = "image" in (scene.source(bulge).mode("flux"), scene.source(disk).mode("flux"))
            for im_name in members[bulge]:
                if im_name not in members[disk]:
                    continue
                label = im_name if per_image else self.images[im_name].band
                name = f"{galaxy}.bt[{label}]"
                parts = (self._usage[(bulge, im_name)]["flux"], self._usage[(disk, im_name)]["flux"])
                self.derived.setdefault(name, Derived(name, f"{galaxy}.bt", bulge, "bt", "image" if per_image
                                                      else "band", label, parts=parts))
        out = []
        for site in sites.values():
            self._finish_site(site, est)
            out.append(site)
        return out

    def _wavelength_bases(self, sites, derived):
        """Set each band value's Chebyshev basis row from the bands' effective wavelengths; a
        one-line ValueError where an image has no wavelength, a band has two, or a polynomial
        has fewer bands than coefficients."""
        for site in sites.values():
            if site.poly is None:
                continue
            values = [d for d in derived.values() if d.coefficients == site.name]
            lams = []
            for d in values:
                lam = set()
                for im_name in d._images:
                    w = self.images[im_name].wavelength
                    if w is None:
                        raise ValueError(f"{d.base} varies as a {site.poly.text()} in wavelength, but image "
                                         f"{im_name!r} has no wavelength: give Image(wavelength=...) (a length or a "
                                         f"filter name)")
                    lam.add(round(float(w.value), 6))
                if len(lam) > 1:
                    raise ValueError(f"band {d.label!r} has images of different wavelengths {sorted(lam)} Angstrom: "
                                     f"give them different bands to vary {d.base} with wavelength")
                lams.append(lam.pop())
            if len(set(lams)) < site.poly.size:
                raise ValueError(f"{d.base}: a {site.poly.text()} has {site.poly.size} coefficients but the source's "
                                 f"images have {len(set(lams))} distinct wavelength(s); lower the degree")
            basis = site.poly.basis(site.poly.coordinates(lams))
            for d, row, lam in zip(values, basis, lams):
                d.basis, d.wavelength = row, lam
        return derived

    def _site_of(self, source, param, image):
        """(name, base, source, parameter, dim, label) of the site that holds ``source``'s
        ``param`` in ``image``, ties followed."""
        tsrc, tp = _resolve(self.scene, source, param)
        mode = self.scene.source(tsrc).mode(tp)
        base = f"{tsrc}.{tp}"
        if mode == "shared":
            return base, base, tsrc, tp, None, None
        if mode == "band":
            return f"{base}[{image.band}]", base, tsrc, tp, "band", image.band
        return f"{base}[{image.name}]", base, tsrc, tp, "image", image.name

    def parameter_sites(self, source, image):
        """``{parameter: site name}`` of ``source``'s parameters in ``image``, which may be an
        image the scene was not fitted to (e.g. a new epoch): a parameter shared by all images,
        or one per band, resolves through the image's band; a ``ValueError`` names any site the
        scene lacks (a band it has no image of, a parameter per image)."""
        out = {}
        for p in self.scene.source(source).params:
            name = self._site_of(source, p, image)[0]
            if name not in self.site and name not in self.derived:
                raise ValueError(f"{source}.{p} has no value for image {image.name!r} (band {image.band!r}): the "
                                 f"scene has no site {name!r}")
            out[p] = name
        return out

    def _lookup(self, table, site):
        for key in (site.name, site.base):
            if key in table:
                return key, table[key]
        return None, None

    def _finish_site(self, site, est):
        if site.poly is not None:
            return self._finish_polynomial_site(site, est)
        scene = self.scene
        e = est[site.source]
        _, fixed = self._lookup(scene._fixed, site)
        init_key, user_init = self._lookup(scene._inits, site)
        _, user_prior = self._lookup(scene._priors, site)
        # the estimate for this site
        if scene.source(site.source).kind.is_sky:
            per = [e[n] for n in site._images]
            estimate = float(np.mean([d[site.param] for d in per]))
            hint = float(np.mean([d["_sigma"] for d in per]))
        else:
            v = e[site.param]
            if isinstance(v, dict):  # flux: mean over this site's images
                estimate = float(np.mean([v[n] for n in site._images]))
            else:
                estimate = v
            hint = e.get("_pos_scale")
        declared = scene.source(site.source).kind.parameter(site.param)
        transient = site.param == "flux" and site.dim == "image" and declared.per_image_prior is not None
        if transient:  # a point source's flux per image (epoch): the aperture value, of either sign
            estimate = float(np.mean([e["_aperture"][n][0] for n in site._images]))
            hint = float(np.mean([e["_aperture"][n][1] for n in site._images]))
        domain = declared.domain
        if fixed is not None:
            if not domain.contains(fixed):
                raise ValueError(f"{site.name} is fixed at {_show(fixed)}, outside its domain "
                                 f"{domain.text(site.param)}")
            site.fixed = jnp.broadcast_to(jnp.asarray(fixed, dtype=float), site.shape)
            return
        if user_init is not None and not domain.contains(user_init):
            raise ValueError(f"the initial value {_show(user_init)} of {site.name} lies outside its domain "
                             f"{domain.text(site.param)}")
        if user_prior is not None:
            _check_prior(site, user_prior, domain)
        prior = user_prior if user_prior is not None else declared.default_prior(estimate, hint, per_image=transient)
        site.prior = SitePrior(site.name, prior, site.shape)
        value = jnp.broadcast_to(jnp.asarray(user_init if user_init is not None else estimate, dtype=float),
                                 site.shape)
        if not site.prior.contains(value):
            if user_init is not None:
                raise ValueError(f"the initial value {np.asarray(value)} of {site.name} (set for {init_key!r}) lies "
                                 f"outside the support {support_text(site.prior.prior)} of its prior "
                                 f"{site.prior.prior}; change the prior or the initial value")
            value = self._inside(site.prior, value)
            if user_prior is None or not site.prior.contains(value):
                raise ValueError(f"the image estimate {np.asarray(value)} of {site.name} lies outside the support "
                                 f"{support_text(site.prior.prior)} of its prior {site.prior.prior}; set an initial "
                                 f"value with Scene.set_init or widen the prior")
        site.init = value

    def _finish_polynomial_site(self, site, est):
        """Prior and initial value of a polynomial's coefficients: the least-squares polynomial
        through the per-band image estimates (on the link's line, :data:`~bayesprof.wavelength.LINKS`)
        starts the fit; the default prior is Normal, centred there for the constant term and on
        zero for the others (:data:`~bayesprof.wavelength.COEFFICIENT_PRIOR_WIDTHS`)."""
        scene = self.scene
        e = est[site.source]
        _, fixed = self._lookup(scene._fixed, site)
        _, user_init = self._lookup(scene._inits, site)
        _, user_prior = self._lookup(scene._priors, site)
        values = [d for d in self.derived.values() if d.coefficients == site.name]
        per_band = []
        for d in values:
            v = e[site.param]
            per_band.append(float(np.mean([v[n] for n in d._images])) if isinstance(v, dict) else float(v))
        per_band = np.asarray(per_band)
        basis = np.stack([d.basis for d in values])
        estimate = np.linalg.lstsq(basis, link(site.param, per_band), rcond=None)[0]
        for label, given in (("fixed at", fixed), ("initial value", user_init)):
            if given is not None and (np.shape(given) not in ((), site.shape)
                                      or not np.all(np.isfinite(np.asarray(given, float)))):
                raise ValueError(f"{site.name}: the {label} {_show(given)} is not {site.shape[0]} finite coefficients")
        if fixed is not None:
            site.fixed = jnp.broadcast_to(jnp.asarray(fixed, dtype=float), site.shape)
            return
        if user_prior is not None:
            _check_prior(site, user_prior, comps.Domain())
            prior = user_prior
        else:
            w0, w1 = COEFFICIENT_PRIOR_WIDTHS[site.param]
            loc = np.zeros(site.shape)
            loc[0] = estimate[0]
            scale = np.full(site.shape, w1)
            scale[0] = e["_pos_scale"] if w0 is None else w0
            prior = dist.Normal(jnp.asarray(loc), jnp.asarray(scale))
        site.prior = SitePrior(site.name, prior, site.shape)
        value = jnp.broadcast_to(jnp.asarray(user_init if user_init is not None else estimate, dtype=float),
                                 site.shape)
        if not site.prior.contains(value):
            raise ValueError(f"the initial value {np.asarray(value)} of {site.name} lies outside the support "
                             f"{support_text(site.prior.prior)} of its prior {site.prior.prior}")
        site.init = value

    @staticmethod
    def _inside(prior, value):
        """Move an estimate into the support: clip to an interval's interior, else the prior median."""
        support = prior.prior.support
        lo = getattr(support, "lower_bound", None)
        hi = getattr(support, "upper_bound", None)
        if lo is not None and hi is not None:
            width = hi - lo
            return jnp.clip(value, lo + 0.02 * width, hi - 0.02 * width)
        return prior.transform(prior._mode)

    # -- rendering plan
    def _layout(self):
        """Where each site's physical value sits in the flat vector of all sites (fixed ones
        included, in site order), and each entry's column in the unconstrained vector (``size``,
        one past the last, for fixed entries)."""
        self._phys = {}
        cols, i, c = [], 0, 0
        for s in self.sites:
            k = int(np.prod(s.shape, dtype=int))
            self._phys[s.name] = np.arange(i, i + k)
            i += k
            if s.fixed is None:
                cols.append(np.arange(c, c + k))
                c += k
            else:
                cols.append(np.full(k, -1))
        col = np.concatenate(cols)
        # the values of polynomial parameters per band follow the sites in the flat vector; in an
        # image's (transposed) Jacobian those it uses have rows of their own after the dummy one,
        # folded into the coefficients' rows by residuals_and_jacobian (each image's own map of
        # entries to rows, plan["column"], is made from this one by _plan)
        poly = [d for d in self.derived.values() if d.coefficients is not None]
        matrix = np.zeros((len(poly), i))
        for j, d in enumerate(poly):
            self._phys[d.name] = np.array([i + j])
            matrix[j, self._phys[d.coefficients]] = d.basis
        self._n_poly = len(poly)
        self._poly_matrix = jnp.asarray(matrix)
        self._poly_codes = np.array([LINK_CODES[LINKS[d.param]] for d in poly], dtype=int)
        bounds = [LOGIT_BOUNDS.get(d.param, (0.0, 1.0)) for d in poly]
        self._poly_lower = np.array([b[0] for b in bounds], dtype=float)
        self._poly_upper = np.array([b[1] for b in bounds], dtype=float)
        # the column of each flat entry; fixed -> the dummy column c
        self._column = np.concatenate([np.where(col < 0, c, col), c + 1 + np.arange(len(poly), dtype=int)])

    def _stack(self, sources, im_name):
        """The render stack of ``sources`` (one component kind, same static fields) in one image:
        per source, the indices of its parameters in the flat site vector."""
        kind = sources[0].kind
        layout, rows = [], []
        for s in sources:
            use = self._usage[(s.name, im_name)]
            rows.append(np.concatenate([self._phys[use[p]] for p in s.params]))
        for p in sources[0].params:
            layout.append((p, len(self._phys[self._usage[(sources[0].name, im_name)][p]])))
        names = [p for p, _ in layout]
        starts = np.cumsum([0] + [k for _, k in layout])
        where = {p: int(starts[j]) for j, p in enumerate(names)}
        return {"kind": kind, "index": np.stack(rows), "layout": tuple(layout),
                "knots": self.knots.get(sources[0].name), "flux": where.get("flux"), "xi": where.get("xi"),
                "eta": where.get("eta")}

    def _plan(self, members):
        plans = []
        for im in self.images:
            groups = {}  # box -> {(kind, knots): [source]}
            skies = []
            sources = [s for s in self.scene.sources if im.name in members[s.name] and not s.kind.is_nuisance()]
            offsets = [s for s in self.scene.sources if im.name in members[s.name] and s.kind.is_offset]
            calibrations = [s for s in self.scene.sources if im.name in members[s.name] and s.kind.is_calibration]
            for s in sources:
                if s.kind.is_sky:
                    skies.append(self._stack([s], im.name))
                    continue
                box = self._boxes.get((s.name, im.name))
                groups.setdefault(box, {}).setdefault((s.kind, self.knots.get(s.name)), []).append(s)
            # the fitted pixels are the windows' (or the whole image's), masked ones included with
            # zero weight: the residual vector's length, hence the structure, does not depend on the
            # mask, so cut-outs with different masks (neighbours, frame edges) share compiled programs
            fitted = np.ones(im.shape, bool)
            if sources and all(((s.name, im.name) in self._boxes) or s.kind.is_sky for s in sources) and groups:
                fitted = np.zeros(im.shape, bool)
                for box in groups:
                    x0, x1, y0, y1 = box
                    fitted[y0:y1, x0:x1] = True
            if not sources:
                fitted = np.zeros(im.shape, bool)
            good = fitted & ~im.mask
            index = np.flatnonzero(fitted.ravel())
            position = np.full(good.size, -1)  # pixel -> its row among the image's fitted pixels
            position[index] = np.arange(index.size)
            render_groups = []
            for box, kinds in groups.items():
                x0, x1, y0, y1 = (0, im.nx, 0, im.ny) if box is None else box
                target = im if box is None else im.cutout(*box)
                pixels = (np.arange(y0, y1)[:, None] * im.nx + np.arange(x0, x1)[None, :]).ravel()
                rows = position[pixels]
                render_groups.append({"target": target, "box": box, "origin": np.array([y0, x0]),
                                      "size": (y1 - y0, x1 - x0),
                                      "stacks": [self._stack(srcs, im.name) for srcs in kinds.values()],
                                      "rows": rows[rows >= 0], "pixels": np.flatnonzero(rows >= 0)})
            w = np.where(good, 1.0 / im.variance, 0.0)
            # the entries of the image's astrometric offset and zeropoint correction in the flat
            # site vector, and 1.0 where it has them; in a scene where some images have them, those
            # without point at entry 0 with 0.0 (no shift, a factor of 1), so that all images keep
            # one structure (None: no image has them)
            offset, calibration = np.zeros(2, int), np.zeros((), int)
            if offsets:
                use = self._usage[(offsets[0].name, im.name)]
                offset = np.array([self._phys[use["dxi"]][0], self._phys[use["deta"]][0]])
            if calibrations:
                calibration = np.asarray(self._phys[self._usage[(calibrations[0].name, im.name)]["dzp"]][0])
            # the polynomial parameters' per-band values this image uses (those of its band): in
            # its Jacobian each has a row of its own after the dummy one (_predict); the others
            # share the dummy row, so an image's Jacobian does not grow with the number of bands
            entries = self._column.size - self._n_poly
            used = np.concatenate([st["index"].ravel() for g in render_groups for st in g["stacks"]]
                                  + [st["index"].ravel() for st in skies] + [np.zeros(0, int)])
            poly_rows = np.unique(used[used >= entries]) - entries
            column = self._column.copy()
            column[entries:] = self.size
            column[entries + poly_rows] = self.size + 1 + np.arange(poly_rows.size)
            plans.append({"image": im, "groups": render_groups, "skies": skies, "column": column,
                          "poly_rows": poly_rows,
                          "offset": offset, "offset_on": np.asarray(float(bool(offsets))),
                          "calibration": calibration, "calibration_on": np.asarray(float(bool(calibrations))),
                          "good": good, "index": index,
                          "data": jnp.asarray(np.where(good, im.data, 0.0)), "sqrt_w": jnp.asarray(np.sqrt(w)),
                          "sigma": jnp.asarray(np.sqrt(im.variance))})
        for what in ("offset", "calibration"):
            if not any(plan[f"{what}_on"] for plan in plans):
                for plan in plans:
                    plan[what] = plan[f"{what}_on"] = None
        # render targets of one shape and PSF kind get common PSF sampling (the largest truncation
        # radius, folding and oversampling any of them needs): one renderer structure, so that
        # images alike (dithered exposures, epochs, bands of one size) render in one batch
        groups = [g for plan in plans for g in plan["groups"]]
        keys = [(g["target"].shape, type(g["target"].psf)) for g in groups]
        common = {}
        for g, key in zip(groups, keys):
            auto = Renderer.sampling(g["target"])
            c = common.setdefault(key, auto)
            common[key] = {k: max(c[k], auto[k]) for k in c}
        for g, key in zip(groups, keys):
            target = g.pop("target")
            g["renderer"] = Renderer(target, self.reference, pixel_map=self._pixel_map(target), **common[key])
        return plans

    # ------------------------------------------------------------------ batches and pytree
    # An image's plan is its static part (the image, windows' sizes, the stacks' kinds and
    # layouts) and its arrays (:meth:`_plan_arrays`).  Images whose plans have one structure
    # form a batch, rendered by one ``vmap`` (:meth:`_predict_all`): the compiled program does
    # not grow with the number of images alike.  The pytree's leaves are the batches' arrays,
    # stacked along a leading axis; an unflattened model's plans are slices of them.
    _PLAN_LEAVES = ("good", "index", "data", "sqrt_w", "sigma", "offset", "offset_on", "calibration",
                    "calibration_on", "column", "poly_rows")

    @staticmethod
    def _stack_key(st):
        return st["kind"], st["layout"], st["knots"], st["index"].shape

    @classmethod
    def _plan_key(cls, plan):
        """What shapes the computation of an image's plan, its arrays aside."""
        return (plan["image"].shape,
                tuple((g["box"] is None, g["size"], tuple(cls._stack_key(st) for st in g["stacks"]))
                      for g in plan["groups"]),
                tuple(cls._stack_key(st) for st in plan["skies"]))

    @classmethod
    def _plan_arrays(cls, plan):
        """The arrays of an image's plan (a pytree): pixel data and weights, fitted pixels,
        renderers, windows' origins and rows, the stacks' entries in the flat site vector."""
        return {"leaves": {k: plan[k] for k in cls._PLAN_LEAVES},
                "groups": [{"renderer": g["renderer"], "rows": g["rows"], "pixels": g["pixels"], "origin": g["origin"],
                            "index": [st["index"] for st in g["stacks"]]} for g in plan["groups"]],
                "skies": [st["index"] for st in plan["skies"]]}

    @staticmethod
    def _plan_with(plan, arrays):
        """``plan`` with its arrays replaced by ``arrays`` (:meth:`_plan_arrays`)."""
        groups = [{**g, "renderer": c["renderer"], "rows": c["rows"], "pixels": c["pixels"], "origin": c["origin"],
                   "stacks": [{**st, "index": i} for st, i in zip(g["stacks"], c["index"])]}
                  for g, c in zip(plan["groups"], arrays["groups"])]
        skies = [{**st, "index": i} for st, i in zip(plan["skies"], arrays["skies"])]
        return {**plan, **arrays["leaves"], "groups": groups, "skies": skies}

    def _batch(self):
        """The images in batches of one structure (equal :meth:`_plan_key`, array shapes and
        dtypes): tuples of image indices, in order of first appearance."""
        batches = {}
        for k, plan in enumerate(self._plans):
            leaves, treedef = jax.tree_util.tree_flatten(self._plan_arrays(plan))
            key = self._plan_key(plan), treedef, tuple((np.shape(a), np.asarray(a).dtype) for a in leaves)
            batches.setdefault(key, []).append(k)
        return [tuple(b) for b in batches.values()]

    def _stack_plans(self):
        """Per batch, the arrays of its plans, stacked along a new leading axis (a batch of
        several images) or as they are (a lone image)."""
        out = []
        for batch in self._batches:
            arrays = [self._plan_arrays(self._plans[k]) for k in batch]
            out.append(arrays[0] if len(batch) == 1 else
                       jax.tree_util.tree_map(lambda *a: np.stack([np.asarray(x) for x in a]), *arrays))
        return out

    @property
    def _plans(self):
        """The image plans (dicts), in image order.  A model rebuilt from its pytree leaves (under
        ``jit``, ``vmap``) makes them from the batches' arrays at each use, not kept: they may be
        tracers of a transformation nested inside the one that rebuilt the model."""
        plans = self.__dict__.get("_plan_list")
        if plans is None:
            plans = [None] * len(self._template_plans)
            for batch, arrays in zip(self._batches, self._stacked):
                for i, k in enumerate(batch):
                    a = arrays if len(batch) == 1 else jax.tree_util.tree_map(lambda x, i=i: x[i], arrays)
                    plans[k] = self._plan_with(self._template_plans[k], a)
        return plans

    def _structure_key(self):
        images = tuple((p["image"].name, self._plan_key(p), p["offset"] is None, p["calibration"] is None,
                        tuple(g["rows"].shape for g in p["groups"])) for p in self._plans)
        sites = tuple((s.name, s.shape, s.fixed is None) for s in self.sites)
        derived = tuple((d.name, d.param, d.coefficients, d.parts) for d in self.derived.values())
        return sites, derived, images, tuple(self._batches), self.likelihoods, self.n_fitted

    def tree_flatten(self):
        children = (self._stacked, self.priors, self._fixed_values, self._latent_entries, self._fitted, self._poly_matrix)
        return children, self._structure

    @classmethod
    def tree_unflatten(cls, structure, children):
        obj = object.__new__(cls)
        obj.__dict__.update(structure.model.__dict__)
        del obj.__dict__["_plan_list"]  # made from the leaves at each use (_plans)
        obj._stacked, obj.priors, obj._fixed_values, obj._latent_entries, obj._fitted, obj._poly_matrix = children
        return obj

    # ------------------------------------------------------------------ pure functions
    def flat(self, values):
        """The physical values of every site (a complete dict) as one flat vector, in site order,
        followed by the polynomial parameters' values per band (computed from their coefficients;
        any such values in ``values`` are ignored)."""
        return self._extend(self._entries(values))

    def _entries(self, values):
        """The sites' entries of :meth:`flat`."""
        return jnp.concatenate([jnp.reshape(jnp.asarray(values[s.name], dtype=float), (-1,)) for s in self.sites])

    def _extend(self, v):
        """The sites' entries ``v`` followed by the per-band values of the polynomial parameters."""
        if not self._n_poly:
            return v
        return jnp.concatenate([v, inverse_link(self._poly_matrix @ v, self._poly_codes, self._poly_lower,
                                                self._poly_upper)])

    def derived_values(self, v):
        """``{name: value}`` of the derived quantities (:class:`Derived`) at the flat vector ``v``
        (:meth:`flat`, :meth:`site_vector`)."""
        out = {}
        for d in self.derived.values():
            if d.parts is None:
                out[d.name] = v[self._phys[d.name][0]]
            else:
                bulge, disk = (v[self._phys[p][0]] for p in d.parts)
                out[d.name] = bulge / (bulge + disk)
        return out

    @staticmethod
    def _make(stack, P):
        """The component of ``stack`` whose parameters are the last axis of ``P`` (any leading axes)."""
        kw, i = {}, 0
        for p, k in stack["layout"]:
            kw[p] = P[..., i:i + k] if p == "log_i" else P[..., i]
            i += k
        if stack["knots"] is not None:
            kw["knots"] = stack["knots"]
        return stack["kind"](**kw)

    @staticmethod
    def _shifted(plan, stack, P, v):
        """Parameters ``P`` of a stack with the image's astrometric offset added to the centres."""
        if plan["offset"] is None or stack["xi"] is None:
            return P
        dxi, deta = plan["offset_on"] * v[plan["offset"][0]], plan["offset_on"] * v[plan["offset"][1]]
        return P.at[..., stack["xi"]].add(dxi).at[..., stack["eta"]].add(deta)

    def components(self, values, image_index):
        """The component pytrees of image ``image_index`` for site ``values`` (centres include the
        image's astrometric offset; fluxes are intrinsic: an image's zeropoint correction,
        :class:`~bayesprof.PhotometricOffset`, scales their counts in :meth:`render_image`)."""
        plan = self._plans[image_index]
        v = self.flat(self.complete(values))
        out = []
        for g in plan["groups"]:
            for st in g["stacks"]:
                P = self._shifted(plan, st, v[st["index"]], v)
                out += [self._make(st, P[i]) for i in range(P.shape[0])]
        return out

    def image_components(self, values, image, exclude=None):
        """The light of the scene in ``image``, which may be one it was not fitted to (a new
        epoch): ``(components, offset, scale)``.  ``components``: ``{name: component}`` of every
        light-emitting source but ``exclude`` at site ``values`` (a new image takes the values of its band,
        :meth:`parameter_sites`; skies and nuisances are left out); ``offset``: the image's
        astrometric offset (arcsec, added to the centres; zero for a new image); ``scale``: its
        zeropoint correction's factor on the counts (1 for a new image)."""
        values = self.complete(values)
        nuisance = self.image_nuisance_sites(image)
        offset, scale = (0.0, 0.0), 1.0
        if "dxi" in nuisance:
            offset = (float(values[nuisance["dxi"]]), float(values[nuisance["deta"]]))
        if "dzp" in nuisance:
            scale = 10.0 ** (0.4 * float(values[nuisance["dzp"]]))
        fitted = image.name in self.images.names
        comps = {}
        for s in self.scene.sources:
            if s.name == exclude or s.kind.is_sky or s.kind.is_nuisance():
                continue
            if fitted and (s.name, image.name) not in self._usage:
                continue  # a source the scene limits to other images
            kw = {p: np.asarray(values[site], dtype=float) for p, site in self.parameter_sites(s.name, image).items()}
            if "xi" in kw:
                kw["xi"], kw["eta"] = kw["xi"] + offset[0], kw["eta"] + offset[1]
            if s.name in self.knots:
                kw["knots"] = self.knots[s.name]
            comps[s.name] = s.kind(**kw)
        return comps, offset, scale

    def image_nuisance_sites(self, image):
        """``{"dxi": site, "deta": site, "dzp": site}``: the sites of ``image``'s astrometric offset
        and zeropoint correction, those it has (none for an image the scene was not fitted to)."""
        out = {}
        for s in self.scene.sources:
            use = self._usage.get((s.name, image.name))
            if use is not None and (s.kind.is_offset or s.kind.is_calibration):
                out.update(use)
        return out

    def _render_flat(self, v, k):
        """Model of image ``k`` (counts/pixel) for the flat site vector ``v``."""
        return self._predict(self._plans[k], v)[0]

    def _predict_all(self, v, dv=None):
        """:meth:`_predict` of every image, a list in image order; the images of a batch
        (:meth:`_batch`) in one ``vmap``."""
        out = [None] * len(self._template_plans)
        for batch, arrays in zip(self._batches, self._stacked):
            plan = self._template_plans[batch[0]]
            if len(batch) == 1:
                out[batch[0]] = self._predict(self._plan_with(plan, arrays), v, dv)
                continue
            model, Jt = jax.vmap(lambda a: self._predict(self._plan_with(plan, a), v, dv, batched=True))(arrays)
            for i, k in enumerate(batch):
                out[k] = model[i], None if Jt is None else Jt[i]
        return out

    def _models(self, v):
        """Model of every image (counts/pixel), a list in image order."""
        return [model for model, _ in self._predict_all(v)]

    def _predict(self, plan, v, dv=None, batched=False):
        """Model of an image (its ``plan``; counts/pixel) for the flat site vector ``v``; with ``dv`` (the
        derivative of ``v`` by the unconstrained vector, diagonal: every transform is elementwise)
        also the model's Jacobian at the image's fitted pixels, transposed: ``(size + 1 + k,
        pixels)``, row ``size`` collecting the fixed sites (and other bands' polynomial values),
        then one row per polynomial value the image uses (``plan["poly_rows"]``, ``k`` of them).
        The one place where an image is predicted: the render groups (sources, centres moved by
        the image's astrometric offset), the zeropoint correction, the skies.

        With ``dv``, each source's image is differentiated by its own parameters
        (:meth:`_stack_jacobian`, on its window's fitted pixels only) and scattered into the
        columns of the sites those parameters use; an astrometric offset collects the centre
        columns of every source, a zeropoint correction scales the light.  ``batched``: the call
        is inside :meth:`_predict_all`'s ``vmap`` over images."""
        im, index, column = plan["image"], plan["index"], jnp.asarray(plan["column"])
        # every pixel fitted (no windows): the fitted pixels are the raveled image, no gather needed
        every = index.size == im.shape[0] * im.shape[1]
        Jt = None if dv is None else jnp.zeros((self.size + 1 + plan["poly_rows"].size, index.size), v.dtype)
        model = jnp.zeros(im.shape)
        for g in plan["groups"]:
            params = [self._shifted(plan, st, v[st["index"]], v) for st in g["stacks"]]
            if dv is None:
                part = g["renderer"].render_stacks([self._make(st, P) for st, P in zip(g["stacks"], params)],
                                                   barrier=batched)
            else:
                part = 0.0
                for st, P in zip(g["stacks"], params):
                    m, D = self._stack_jacobian(g["renderer"], st, P)
                    part = part + jnp.sum(m, axis=0)
                    N, L = P.shape
                    D = D.reshape(N, -1, L)  # (N, fitted pixels of the window, L)
                    if g["box"] is not None:
                        D = D[:, g["pixels"], :]
                    idx = st["index"].ravel()
                    Dt = jnp.moveaxis(D, 1, 2).reshape(N * L, -1) * dv[idx][:, None]
                    # a whole-image group's rows are all the image's fitted pixels, in order: whole rows of Jt
                    if g["box"] is None:
                        rows = slice(None)
                        Jt = Jt.at[column[idx]].add(Dt)
                    else:
                        rows = g["rows"]
                        Jt = Jt.at[column[idx][:, None], rows[None, :]].add(Dt)
                    if plan["offset"] is not None and st["xi"] is not None:
                        for j, off in ((st["xi"], plan["offset"][0]), (st["eta"], plan["offset"][1])):
                            Jt = Jt.at[column[off], rows].add(jnp.sum(D[:, :, j], axis=0)
                                                              * (plan["offset_on"] * dv[off]))
            if g["box"] is None:
                model = model + part
            else:  # the window's origin is an array: windows of one size anywhere share the program
                y0, x0 = g["origin"][0], g["origin"][1]
                window = jax.lax.dynamic_slice(model, (y0, x0), g["size"])
                model = jax.lax.dynamic_update_slice(model, window + part, (y0, x0))
        if batched:  # the sources' light materialised before the sky is added (Renderer.render_stacks)
            model = jax.lax.optimization_barrier(model)
        if plan["calibration"] is not None:
            c, on = plan["calibration"], plan["calibration_on"]
            scale = 10.0 ** (0.4 * on * v[c])
            if dv is not None:
                fitted = model.ravel() if every else model.ravel()[index]
                Jt = (Jt * scale).at[column[c]].add(fitted * scale * 0.4 * jnp.log(10.0) * on * dv[c])
            model = model * scale
        for st in plan["skies"]:
            idx = st["index"][0]
            sky = lambda row, st=st: self._make(st, row).evaluate(im.shape)  # noqa: E731
            model = model + sky(v[idx])
            if dv is not None:
                Db = jax.jacfwd(sky)(v[idx]).reshape(-1, idx.size)
                Db = Db if every else Db[index]
                Jt = Jt.at[column[idx]].add(Db.T * dv[idx][:, None])
        return model, Jt

    def image_renderer(self, k):
        """A :class:`~bayesprof.render.Renderer` of the whole of image ``k`` at the scene's tangent
        point (its sources' own when they cover the image): to render other light into it, e.g.
        fitted neighbours (:func:`bayesprof.fit_catalog`)."""
        for g in self._plans[k]["groups"]:
            if g["box"] is None:
                return g["renderer"]
        return Renderer(self._plans[k]["image"], self.reference)

    def render_image(self, values, k):
        """Model of image ``k`` (counts/pixel) for site ``values`` (physical units, every site)."""
        return self._render_flat(self.flat(values), k)

    def render_all(self, values):
        """Model of every image (counts/pixel, a list in image order) for the latent site
        ``values`` (physical units; fixed sites are added), as one compiled call."""
        return list(_model_images(self, values))

    def render_draws(self, draws):
        """Model of every image for each of a stack of site values: ``draws`` maps each latent
        site to its values with a leading draw axis.  A list in image order of arrays
        ``(draws, ny, nx)`` (counts/pixel); one compiled call, 8 draws rendered at a time."""
        return list(_draw_model_images(self, draws))

    def complete(self, values):
        """Add the fixed sites to a dict of latent values."""
        out = {s.name: jnp.reshape(self._fixed_values[self._phys[s.name]], s.shape) for s in self.sites
               if s.fixed is not None}
        out.update({k: jnp.asarray(v) for k, v in values.items()})
        missing = [s.name for s in self.sites if s.name not in out]
        if missing:
            raise KeyError(f"values missing for sites {missing}")
        if self.derived:
            out.update(_derived_of(self, {s.name: out[s.name] for s in self.sites}))
        return out

    @property
    def data(self):
        """The fitted pixels of every image (a tuple of arrays; 0 where not fitted)."""
        return tuple(plan["data"] for plan in self._plans)

    def with_data(self, data):
        """A copy of this model with other pixel values (same images, sites, priors and
        initial values): for simulation studies.  The data are leaves of the model's pytree, so the
        fitters' compiled programs are reused."""
        data = tuple(data)
        if len(data) != len(self._plans):
            raise ValueError(f"with_data: {len(data)} arrays for {len(self._plans)} images")
        new = object.__new__(SceneModel)
        new.__dict__.update(self.__dict__)
        plans = []
        for plan, d in zip(self._plans, data):
            d = np.asarray(d, dtype=float)
            if d.shape != plan["image"].shape:
                raise ValueError(f"with_data: image {plan['image'].name!r} has shape {plan['image'].shape}, the "
                                 f"new data {d.shape}")
            if not np.all(np.isfinite(d[plan["good"]])):
                raise ValueError(f"with_data: non-finite values in the fitted pixels of {plan['image'].name!r}")
            plans.append({**plan, "data": jnp.asarray(np.where(plan["good"], d, 0.0))})
        new._plan_list = plans
        new._stacked = new._stack_plans()
        return new

    def _data(self, data):
        return self.data if data is None else tuple(data)

    def whitened_residuals(self, values, data=None):
        """(data - model) / sigma over the fitted pixels of every image, concatenated (0 elsewhere)."""
        return self._whitened(self.flat(self.complete(values)), data)

    def _whitened(self, v, data=None):
        return jnp.concatenate([((d - m) * plan["sqrt_w"]).ravel()
                                for plan, d, m in zip(self._plans, self._data(data), self._models(v))])

    @property
    def least_squares(self):
        """Whether every image's likelihood is normal: the negative log posterior is then half a
        sum of squares (:meth:`residuals`), for Levenberg–Marquardt."""
        return all(lk.least_squares for lk in self.likelihoods)

    def fisher_residuals(self, u, data=None):
        """Residuals whose Jacobian J gives the expected (Fisher) information J^T J of the images'
        likelihoods plus the prior's Gauss–Newton term: ``(d - m)`` times each image's
        :meth:`~bayesprof.likelihood.Likelihood.fisher_weight` at its fitted pixels."""
        v = self.site_vector(u)
        out = []
        for plan, lk, d, m in zip(self._plans, self.likelihoods, self._data(data), self._models(v)):
            w = jnp.where(plan["good"], lk.fisher_weight(m, plan["sigma"]), 0.0)
            out.append(((d - m) * w).ravel())
        return jnp.concatenate(out + [self.prior_residuals(u)])

    def image_log_likelihoods(self, values, data=None):
        """Log-likelihood of each image (a list of scalars) for its pixel likelihood, at the site
        ``values`` (physical units; fixed sites are added); one compiled call."""
        return list(_image_log_likelihoods(self, values, self.data if data is None else tuple(data)))

    def _log_likelihoods(self, v, data=None):
        return [jnp.sum(jnp.where(plan["good"], lk.log_prob(d, m, plan["sigma"]), 0.0))
                for plan, lk, d, m in zip(self._plans, self.likelihoods, self._data(data), self._models(v))]

    def numpyro_model(self):
        """The scene as a plain NumPyro model (no arguments).

        One ``numpyro.sample`` per latent site (named as the site, with its prior) and one
        observed site per image, ``obs[<image name>]``, masked to the fitted pixels.
        """
        values = {}
        for s in self.sites:
            if s.fixed is not None:
                values[s.name] = s.fixed
            else:
                d = s.prior.prior
                values[s.name] = numpyro.sample(s.name, d.to_event(len(s.shape)) if s.shape else d)
        v = self.flat(values)
        for name, value in self.derived_values(v).items():
            numpyro.deterministic(name, value)
        for plan, lk, model in zip(self._plans, self.likelihoods, self._models(v)):
            lk.observe(f"obs[{plan['image'].name}]", model, plan["sigma"], jnp.asarray(plan["good"]), plan["data"])

    # -- the unconstrained parameter vector
    @property
    def size(self):
        return int(sum(s.prior.size for s in self.latent))

    def unpack(self, u):
        """Flat unconstrained vector -> {site: unconstrained value} (numpy in, numpy out: no
        device dispatch on the host)."""
        out, i = {}, 0
        for s in self.latent:
            out[s.name] = u[i:i + s.prior.size].reshape(s.shape)
            i += s.prior.size
        return out

    def pack(self, u_dict):
        return jnp.concatenate([jnp.reshape(jnp.asarray(u_dict[s.name], dtype=float), (-1,)) for s in self.latent])

    def constrain(self, u):
        """Flat unconstrained vector -> {site: physical value} (latent sites)."""
        return self.unpack(self.priors.constrain(u))

    def unconstrain(self, values):
        """{site: physical value} (latent sites at least) -> the flat unconstrained vector."""
        return self.priors.unconstrain(self.pack(values))

    def site_vector(self, u):
        """The flat vector of every site's physical value (:meth:`flat`) at unconstrained ``u``."""
        return self._extend(self._site_entries(u))

    def _site_entries(self, u):
        return self._fixed_values.at[self._latent_entries].set(self.priors.constrain(u))

    def prior_residuals(self, u):
        """The prior's least-squares residuals (:meth:`~bayesprof.priors.PriorBlocks.residuals`),
        one per entry of ``u``."""
        return self.priors.residuals(u)

    def residuals(self, u, data=None):
        """Least-squares residuals at unconstrained ``u``: the whitened fitted pixels (image after
        image, ``n_fitted`` of them, zero at masked pixels) then the prior terms.

        ``0.5 * sum(residuals(u)**2)`` is the potential energy (negative log posterior in the
        unconstrained space, with Jacobians) up to a constant, for the normal likelihood.
        """
        pixels = self._whitened(self.site_vector(u), data)[self._fitted]
        return jnp.concatenate([pixels, self.prior_residuals(u)])

    # -- the residuals' Jacobian, source by source
    def _stack_jacobian(self, renderer, stack, P):
        """Per source of a stack: its model image and the derivative of that image by each of
        its parameters (shapes ``(N, ny, nx)`` and ``(N, ny, nx, L)``), one ``vmap`` over the
        sources of forward-mode derivatives.  The image is linear in the flux, so the flux column
        is the unit-flux image and the other parameters are differentiated at unit flux."""
        L = P.shape[1]
        fcol = stack["flux"]
        others = np.array([i for i in range(L) if i != fcol])

        def one(row):
            if fcol is not None:
                row = row.at[fcol].set(1.0)
            return renderer.render_one(self._make(stack, row))

        def value_and_jacobian(row):
            f = lambda sub: one(row.at[others].set(sub))  # noqa: E731
            tangents = jnp.eye(others.size, dtype=row.dtype)
            m, D = jax.vmap(lambda t: jax.jvp(f, (row[others],), (t,)), out_axes=(None, -1))(tangents)
            if fcol is None:
                return m, D
            flux = row[fcol]
            full = jnp.zeros(m.shape + (L,), m.dtype).at[..., others].set(flux * D).at[..., fcol].set(m)
            return flux * m, full

        return jax.vmap(value_and_jacobian)(P)

    def residuals_and_jacobian(self, u, data=None):
        """``(residuals(u, data), J)`` with ``J = d residuals / du``, built source by source
        (:meth:`_predict`): one vmapped forward-mode pass per stack of sources of one kind, its
        window's pixels only, scattered into the site columns.  The cost
        is linear in the number of sources (about one render per source parameter), and the result
        equals ``jax.jacfwd(self.residuals)`` to rounding.  Used by the Levenberg–Marquardt MAP;
        dense, shape ``(n_fitted + prior terms, size)``.
        """
        u = jnp.asarray(u)
        ones = jnp.ones_like(u)
        v, dv = jax.jvp(self._site_entries, (u,), (ones,))
        v = self._extend(v)
        size = self.size
        if self._n_poly:  # the per-band values' columns, then their derivatives by the coefficients
            dv = jnp.concatenate([dv, jnp.ones(self._n_poly, dv.dtype)])
            G = jax.jacfwd(lambda w: self.site_vector(w)[-self._n_poly:])(u)
        res, jac = [], []
        for plan, d, (model, Jt) in zip(self._plans, self._data(data), self._predict_all(v, dv)):
            index = plan["index"]
            if index.size == model.size:  # every pixel fitted: no gather
                w, r = plan["sqrt_w"].ravel(), (d - model).ravel()
            else:
                w, r = plan["sqrt_w"].ravel()[index], (d - model).ravel()[index]
            res.append(r * w)
            Ju = Jt[:size] if not plan["poly_rows"].size else Jt[:size] + G[plan["poly_rows"]].T @ Jt[size + 1:]
            jac.append((-Ju * w).T)
        pr, dpr = jax.jvp(self.prior_residuals, (u,), (ones,))  # each prior term depends on its own entry of u
        res.append(pr)
        jac.append(jnp.diag(dpr))
        return jnp.concatenate(res), jnp.concatenate(jac, axis=0)

    def potential(self, u, data=None):
        """Negative log posterior density at unconstrained ``u`` (any likelihood), up to a constant."""
        return self.priors.potential(u) - sum(self._log_likelihoods(self.site_vector(u), data))

    def init_vector(self):
        return self.unconstrain(self.init_values)

    def describe_sites(self) -> str:
        lines = []
        for s in self.sites:
            what = f"fixed at {np.asarray(s.fixed)}" if s.fixed is not None else f"prior {s.prior.prior}"
            lines.append(f"{s.name:<24} {what}; init {np.asarray(s.init) if s.init is not None else ''}")
        return "\n".join(lines)

