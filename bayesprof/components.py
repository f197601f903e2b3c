"""Light components of a scene: small immutable pytrees of explicit parameters.

Every component is a frozen dataclass registered as a JAX pytree, so a component
(or a list of them) can be passed through ``jax.jit``, ``jax.grad`` and ``jax.vmap``.

Parameters and units (the conventions of :mod:`bayesprof`):

``xi, eta``  centre, tangent-plane offsets (arcsec) east and north of the scene reference
``flux``     total flux in microjansky (AB magnitude 23.9 - 2.5 log10 flux); may be negative
``re``       half-light radius along the major axis (arcsec)
``n``        Sersic index
``q``        axis ratio b/a (0 < q <= 1)
``pa``       position angle of the major axis, degrees east of north
``fwhm``     full width at half maximum along the major axis (arcsec)
``beta``     Moffat power-law index (> 1)
``log_i``    spline log-intensities at the knots, relative to the centre (natural log)
``level``    sky level in counts per pixel of one image (``gx``, ``gy``: per pixel)
``dxi, deta`` astrometric offset of one image (arcsec east, north; :class:`AstrometricOffset`)
``dzp``      zeropoint correction of one image (mag; :class:`PhotometricOffset`)

Each component class declares its parameters in one place, ``PARAMETERS``: per parameter a
:class:`Parameter` with its unit, its domain (the values it can take: a fixed value, an initial
value or a prior's support outside it is refused when a scene is built), its default sharing
across a scene's images and its default prior, centred on the image estimate:

==============  ====================================================================
``xi, eta``     Normal(estimate, max(2 * re estimate, 3 pixels of the finest image)) arcsec
``flux``        LogNormal(log(aperture flux) + 1.5**2, 1.5), uJy: the density over the flux is
                exp(-ln(flux / aperture flux)**2 / (2 * 1.5**2)), peaked at the aperture flux
                (:func:`~bayesprof.priors.lognormal_peaked_at`), so the reported (physical)
                mode is not pulled there; per band
point flux      (:class:`PointSource`, given per image: a supernova per epoch) Normal(0,
per image       max(100 * aperture error, 10 * abs(aperture flux))) uJy, on the real line: a flux
                may be negative (a baseline epoch scatters about 0), and the MAP is not pulled:
                it moves by -f (sigma_f / width)^2, at most 1e-4 of the flux and 0.01 sigma_f per
                100 of S/N
``re``          LogNormal(log(estimate) + 1, 1.0) arcsec: peaked at the estimate, as ``flux``
``n``           Uniform(0.5, 8)
``q``           Uniform(0.15, 1)
``pa``          :class:`~bayesprof.priors.PeriodicUniform` (180 deg)
``fwhm``        LogNormal(log(estimate) + 1, 1.0) arcsec: peaked at the estimate
``beta``        Uniform(1.1, 10)
``log_i``       Normal(estimate, 3) per knot (an exponential profile through the estimate)
``level``       Normal(estimate, 10 sigma_pix) counts/pixel (median of the image border); per image
``gx, gy``      Normal(0, sigma_pix / 10) counts/pixel per pixel; per image
``dxi, deta``   Normal(0, 0.1) arcsec (astrometric offset of an image); per image
``dzp``         Normal(0, 0.1) mag (zeropoint correction of an image); per image
==============  ====================================================================

Structure is shared by default and fluxes are per band.  A new profile declares its
``PARAMETERS`` (reusing these declarations or its own) next to its ``log_density`` and
``enclosed``; ``tests/test_profiles.py`` checks every class's declaration.
:data:`PARAMETER_DOMAINS` and :data:`PARAMETER_UNITS` list the declarations by name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from . import profiles
from .priors import PeriodicUniform, lognormal_peaked_at

__all__ = ["Domain", "Parameter", "PARAMETER_DOMAINS", "PARAMETER_UNITS", "Sersic", "Exponential", "DeVaucouleurs", "Gaussian", "Moffat", "PointSource", "Spline", "FlatSky",
           "PlaneSky", "SkyComponent", "AstrometricOffset", "PhotometricOffset", "Component"]


@dataclasses.dataclass(frozen=True)
class Domain:
    """The values a parameter can take: ``lower`` and ``upper`` bounds (infinite: unbounded),
    each included or not (``lower_closed``, ``upper_closed``)."""

    lower: float = -math.inf
    upper: float = math.inf
    lower_closed: bool = False
    upper_closed: bool = False

    def contains(self, value) -> bool:
        """True if every element of ``value`` is finite and inside the domain."""
        v = np.asarray(value, dtype=float)
        above = v >= self.lower if self.lower_closed else v > self.lower
        below = v <= self.upper if self.upper_closed else v < self.upper
        return bool(np.all(np.isfinite(v) & above & below))

    def covers(self, lower, upper) -> bool:
        """True if the interval [lower, upper] (a prior's support; its end points are never
        reached by the sampler, so they may be the domain's open bounds) lies in the domain."""
        return bool(np.all(np.asarray(lower, float) >= self.lower) and np.all(np.asarray(upper, float) <= self.upper))

    def text(self, name) -> str:
        """E.g. ``0 < q <= 1``, ``re > 0``, ``xi real``."""
        lo = None if self.lower == -math.inf else f"{self.lower:g} {'<=' if self.lower_closed else '<'} "
        hi = None if self.upper == math.inf else f" {'<=' if self.upper_closed else '<'} {self.upper:g}"
        if lo is None and hi is None:
            return f"{name} finite"
        if lo is None:
            return f"{name}{hi}"
        if hi is None:
            return f"{name} {'>=' if self.lower_closed else '>'} {self.lower:g}"
        return f"{lo}{name}{hi}"


SHARING = ("shared", "band", "image")


@dataclasses.dataclass(frozen=True)
class Parameter:
    """What a component declares about one of its parameters.

    unit : str
        For labels and tables (``""``: dimensionless).
    domain : Domain
        The values it can take.
    prior : callable
        ``prior(estimate, scale)``: the default NumPyro prior from the image estimate and a
        scale (arcsec for positions, the pixel noise in counts/pixel for skies).
    sharing : {"shared", "band", "image"}
        Its default sharing across a scene's images.
    per_image_prior : callable, optional
        The default prior when the parameter is given per image (``vary={p: "image"}``), from
        the per-image estimate and its error; default: ``prior``.
    estimate : callable, optional
        ``estimate(moments)``: the initial value from a source's image moments, a dict with
        ``xi``, ``eta`` (arcsec), ``re`` (half-light radius, arcsec), ``q``, ``pa`` (deg),
        ``finest`` (the finest pixel scale, arcsec) and, for a profile with knots, ``knots``;
        default: the moment of the parameter's name.  Fluxes are measured by aperture
        photometry in each image and skies on the image border, whatever is declared here.
    """

    unit: str
    domain: Domain
    prior: Callable
    sharing: str = "shared"
    per_image_prior: Callable | None = None
    estimate: Callable | None = None

    def __post_init__(self):
        if self.sharing not in SHARING:
            raise ValueError(f"Parameter.sharing must be one of {SHARING}, not {self.sharing!r}")

    def default_prior(self, estimate, scale=None, *, per_image=False):
        """The default prior centred on ``estimate`` (module docstring's table)."""
        make = self.per_image_prior if per_image and self.per_image_prior is not None else self.prior
        return make(jnp.asarray(estimate, dtype=float), scale)

    def initial(self, moments, name):
        """The initial value of parameter ``name`` from a source's image ``moments``."""
        return moments[name] if self.estimate is None else self.estimate(moments)


POSITION = Parameter("arcsec", Domain(), lambda e, s: dist.Normal(e, s))
FLUX = Parameter("uJy", Domain(), lambda e, s: lognormal_peaked_at(e, 1.5), sharing="band")
POINT_FLUX = dataclasses.replace(
    FLUX, per_image_prior=lambda e, s: dist.Normal(0.0, jnp.maximum(100.0 * s, 10.0 * jnp.abs(e))))
SIZE = Parameter("arcsec", Domain(0.0), lambda e, s: lognormal_peaked_at(e, 1.0))
FWHM = dataclasses.replace(SIZE, estimate=lambda m: 2.0 * m["re"])
#: the domain of n: where the Sersic b_n is accurate to 1e-12
SERSIC_INDEX = Parameter("", Domain(0.2, 20.0, True, True), lambda e, s: dist.Uniform(0.5, 8.0),
                         estimate=lambda m: 2.0)
AXIS_RATIO = Parameter("", Domain(0.0, 1.0, False, True), lambda e, s: dist.Uniform(0.15, 1.0))
POSITION_ANGLE = Parameter("deg", Domain(), lambda e, s: PeriodicUniform(180.0))
MOFFAT_BETA = Parameter("", Domain(1.0), lambda e, s: dist.Uniform(1.1, 10.0), estimate=lambda m: 3.0)
#: an exponential profile of the moments' half-light radius through the knots
LOG_INTENSITY = Parameter("", Domain(), lambda e, s: dist.Normal(e, 3.0),
                          estimate=lambda m: -1.678 * np.asarray(m["knots"][1:]) / max(m["re"], m["finest"]))
SKY_LEVEL = Parameter("counts/px", Domain(), lambda e, s: dist.Normal(e, 10.0 * s), sharing="image")
SKY_GRADIENT = Parameter("counts/px^2", Domain(), lambda e, s: dist.Normal(0.0, s / 10.0), sharing="image",
                         estimate=lambda m: 0.0)
WCS_SHIFT = Parameter("arcsec", Domain(), lambda e, s: dist.Normal(0.0, 0.1), sharing="image", estimate=lambda m: 0.0)
ZEROPOINT_SHIFT = Parameter("mag", Domain(), lambda e, s: dist.Normal(0.0, 0.1), sharing="image",
                            estimate=lambda m: 0.0)
_ELLIPSE = {"q": AXIS_RATIO, "pa": POSITION_ANGLE}


def _pytree(cls):
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    return jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])


def _pytree_with_meta(*meta):
    """Like :func:`_pytree`, with the named fields static (hashable, not traced)."""

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        names = [f.name for f in dataclasses.fields(cls) if f.name not in meta]
        return jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=list(meta))

    return wrap


class Component:
    """Base class: a centred, elliptical, unit-flux radial profile scaled by ``flux``."""

    #: True for components whose light is the PSF itself (no extended profile)
    is_point = False
    #: True for backgrounds in image units (see :class:`SkyComponent`)
    is_sky = False
    #: True for per-image astrometric offsets (see :class:`AstrometricOffset`), which emit no light
    is_offset = False
    #: True for per-image zeropoint corrections (see :class:`PhotometricOffset`), which emit no light
    is_calibration = False

    @classmethod
    def is_nuisance(cls):
        """True for per-image nuisances (astrometric or photometric offsets) that emit no light."""
        return cls.is_offset or cls.is_calibration

    def log_density(self, rho):
        """log of the circular unit-flux profile p(rho) [1/arcsec^2] at elliptical radius rho."""
        raise NotImplementedError  # pragma: no cover - interface

    def enclosed(self, rho):
        """Fraction of the flux inside elliptical radius rho (arcsec)."""
        raise NotImplementedError  # pragma: no cover - interface

    #: the parameters (a subset of the dataclass fields, in field order) and their declarations
    PARAMETERS = {}

    @classmethod
    def parameter(cls, param) -> Parameter:
        """The declaration of ``param`` (KeyError naming the class's parameters otherwise)."""
        try:
            return cls.PARAMETERS[param]
        except KeyError:
            raise KeyError(f"{cls.__name__} has no parameter {param!r}; it has {list(cls.PARAMETERS)}") from None

    def replace(self, **changes):
        """A copy with some parameters changed."""
        return dataclasses.replace(self, **changes)


@_pytree
class Sersic(Component):
    """Sersic profile I(rho) = Ie exp(-b_n [(rho/re)^(1/n) - 1])."""

    PARAMETERS = {"xi": POSITION, "eta": POSITION, "flux": FLUX, "re": SIZE, "n": SERSIC_INDEX,
                  **_ELLIPSE}

    xi: float = 0.0
    eta: float = 0.0
    flux: float = 1.0
    re: float = 1.0
    n: float = 1.0
    q: float = 1.0
    pa: float = 0.0

    def log_density(self, rho):
        return profiles.sersic_log_density(rho, self.re, self.n)

    def enclosed(self, rho):
        return profiles.sersic_enclosed(rho, self.re, self.n)


@dataclasses.dataclass(frozen=True)
class _FixedIndexSersic(Component):
    """A Sersic profile whose index is fixed by the class (``sersic_n``); the fields are shared
    by its subclasses."""

    xi: float = 0.0
    eta: float = 0.0
    flux: float = 1.0
    re: float = 1.0
    q: float = 1.0
    pa: float = 0.0

    sersic_n = 1.0
    PARAMETERS = {"xi": POSITION, "eta": POSITION, "flux": FLUX, "re": SIZE, **_ELLIPSE}

    def log_density(self, rho):
        return profiles.sersic_log_density(rho, self.re, self.sersic_n)

    def enclosed(self, rho):
        return profiles.sersic_enclosed(rho, self.re, self.sersic_n)


@_pytree
class Exponential(_FixedIndexSersic):
    """Exponential disc: a Sersic profile with n = 1."""

    sersic_n = 1.0


@_pytree
class DeVaucouleurs(_FixedIndexSersic):
    """de Vaucouleurs r^(1/4) profile: a Sersic profile with n = 4."""

    sersic_n = 4.0


@_pytree
class Gaussian(Component):
    """Elliptical Gaussian with major-axis FWHM ``fwhm`` (arcsec)."""

    PARAMETERS = {"xi": POSITION, "eta": POSITION, "flux": FLUX, "fwhm": FWHM, **_ELLIPSE}

    xi: float = 0.0
    eta: float = 0.0
    flux: float = 1.0
    fwhm: float = 1.0
    q: float = 1.0
    pa: float = 0.0

    def log_density(self, rho):
        sigma = self.fwhm / (2.0 * jnp.sqrt(2.0 * jnp.log(2.0)))
        return -0.5 * jnp.square(rho / sigma) - jnp.log(2.0 * jnp.pi * sigma**2)

    def enclosed(self, rho):
        sigma = self.fwhm / (2.0 * jnp.sqrt(2.0 * jnp.log(2.0)))
        return -jnp.expm1(-0.5 * jnp.square(rho / sigma))


@_pytree
class Moffat(Component):
    """Elliptical Moffat profile (1 + rho^2/alpha^2)^-beta with major-axis ``fwhm``."""

    PARAMETERS = {"xi": POSITION, "eta": POSITION, "flux": FLUX, "fwhm": FWHM, "beta": MOFFAT_BETA,
                  **_ELLIPSE}

    xi: float = 0.0
    eta: float = 0.0
    flux: float = 1.0
    fwhm: float = 1.0
    beta: float = 2.5
    q: float = 1.0
    pa: float = 0.0

    def log_density(self, rho):
        return profiles.moffat_log_density(rho, self.fwhm, self.beta)

    def enclosed(self, rho):
        return profiles.moffat_enclosed(rho, self.fwhm, self.beta)


@_pytree
class PointSource(Component):
    """An unresolved source: the image's PSF scaled by ``flux`` at (xi, eta)."""

    PARAMETERS = {"xi": POSITION, "eta": POSITION, "flux": POINT_FLUX}

    xi: float = 0.0
    eta: float = 0.0
    flux: float = 1.0

    is_point = True
    q = 1.0
    pa = 0.0

    def log_density(self, rho):
        return jnp.full(jnp.shape(rho), -jnp.inf)

    def enclosed(self, rho):
        return jnp.ones(jnp.shape(rho))


# ----------------------------------------------------------------------------- spline
def _natural_spline_matrix(knots):
    """Matrix M with s''(knots) = M @ s for the natural cubic spline through (knots, s)."""
    import numpy as np

    t = np.asarray(knots, float)
    K = t.size
    h = np.diff(t)
    A = np.zeros((K, K))
    B = np.zeros((K, K))
    A[0, 0] = A[-1, -1] = 1.0  # natural ends: s'' = 0
    for i in range(1, K - 1):
        A[i, i - 1], A[i, i], A[i, i + 1] = h[i - 1] / 6, (h[i - 1] + h[i]) / 3, h[i] / 6
        B[i, i - 1], B[i, i], B[i, i + 1] = 1 / h[i - 1], -1 / h[i - 1] - 1 / h[i], 1 / h[i]
    return np.linalg.solve(A, B)


@_pytree_with_meta("knots")
class Spline(Component):
    """Nonparametric radial profile: a natural cubic spline of log-intensity in radius.

    ``knots`` (static, arcsec along the major axis) are increasing and start at 0;
    ``log_i`` holds the natural log of the surface brightness at knots 1, 2, ... relative
    to the centre (knot 0 is fixed at log I = 0: the overall level is ``flux``).  The
    profile is ``exp(s(rho))`` for ``rho <= knots[-1]`` and zero beyond, normalised to unit
    flux; choose the last knot where the galaxy has faded into the noise.  ``flux`` is the
    total flux inside the last knot (uJy), well defined whatever the knot values.
    """

    xi: float = 0.0
    eta: float = 0.0
    flux: float = 1.0
    log_i: tuple = ()
    q: float = 1.0
    pa: float = 0.0
    knots: tuple = (0.0, 1.0)

    PARAMETERS = {"xi": POSITION, "eta": POSITION, "flux": FLUX, "log_i": LOG_INTENSITY,
                  **_ELLIPSE}

    @staticmethod
    def default_knots(re, finest):
        """Knots (arcsec) when none are declared: 0, then 8 spaced geometrically from the
        finest pixel scale ``finest`` to 4 times the half-light radius ``re`` (at least 8
        pixels)."""
        return tuple([0.0] + [float(k) for k in np.geomspace(finest, 4 * max(re, 2 * finest), 8)])

    #: radial quadrature points (spaced quadratically: dense near the centre) for the
    #: normalisation and the enclosed flux
    n_quadrature = 1024

    def _s(self, rho):
        import numpy as np

        t = np.asarray(self.knots, float)
        s = jnp.concatenate([jnp.zeros(1), jnp.atleast_1d(jnp.asarray(self.log_i))])
        m = jnp.asarray(_natural_spline_matrix(t)) @ s
        r = jnp.clip(rho, 0.0, t[-1])
        i = jnp.clip(jnp.searchsorted(jnp.asarray(t), r, side="right") - 1, 0, t.size - 2)
        t0, t1 = jnp.asarray(t[:-1])[i], jnp.asarray(t[1:])[i]
        h = t1 - t0
        a, b = (t1 - r) / h, (r - t0) / h
        return a * s[i] + b * s[i + 1] + ((a**3 - a) * m[i] + (b**3 - b) * m[i + 1]) * h * h / 6.0

    def _cumulative(self):
        """(radii, cumulative unnormalised flux 2 pi int_0^r r' I dr') on a fine grid."""
        import numpy as np

        r = jnp.asarray(float(self.knots[-1]) * np.linspace(0.0, 1.0, self.n_quadrature + 1) ** 2)
        f = 2 * jnp.pi * r * jnp.exp(self._s(r))
        steps = 0.5 * (f[1:] + f[:-1]) * (r[1:] - r[:-1])
        return r, jnp.concatenate([jnp.zeros(1), jnp.cumsum(steps)])

    def log_density(self, rho):
        _, cum = self._cumulative()
        inside = rho <= self.knots[-1]
        return jnp.where(inside, self._s(rho) - jnp.log(cum[-1]), -jnp.inf)

    def enclosed(self, rho):
        r, cum = self._cumulative()
        return jnp.interp(rho, r, cum / cum[-1])


# ----------------------------------------------------------------------------- sky
class SkyComponent(Component):
    """A background in image units (counts per pixel), not convolved with the PSF."""

    is_sky = True

    def evaluate(self, shape):
        """Background (counts/pixel) on an image of ``shape`` = (ny, nx)."""
        raise NotImplementedError  # pragma: no cover - interface


@_pytree
class FlatSky(SkyComponent):
    """Constant sky ``level`` in counts per pixel of the image it is fitted in."""

    PARAMETERS = {"level": SKY_LEVEL}

    level: float = 0.0

    def evaluate(self, shape):
        return jnp.full(shape, 1.0) * self.level


@_pytree
class PlaneSky(SkyComponent):
    """Tilted sky: ``level + gx (x - xc) + gy (y - yc)`` counts/pixel about the image centre.

    ``gx``, ``gy``: gradients in counts/pixel per pixel along +x and +y.
    """

    PARAMETERS = {"level": SKY_LEVEL, "gx": SKY_GRADIENT, "gy": SKY_GRADIENT}

    level: float = 0.0
    gx: float = 0.0
    gy: float = 0.0

    def evaluate(self, shape):
        ny, nx = shape
        y = jnp.arange(ny)[:, None] - (ny - 1) / 2.0
        x = jnp.arange(nx)[None, :] - (nx - 1) / 2.0
        return self.level + self.gx * x + self.gy * y


# ----------------------------------------------------------------------------- astrometry
@_pytree
class AstrometricOffset(Component):
    """A small shift of an image's world coordinate system, in arcsec on the sky.

    Added to a scene (:meth:`bayesprof.Scene.add_astrometric_offsets`), it moves every source
    of the images it is in: a source whose true centre is ``(xi, eta)`` is rendered in image
    ``k`` at the position that image's WCS assigns to ``(xi + dxi_k, eta + deta_k)``.  So
    ``dxi, deta`` are the WCS errors of image ``k`` (east and north, arcsec): positive ``dxi``
    means the image's WCS puts sources too far east.  It emits no light and is sampled like any
    other site (one pair per image), with a tight prior; one image (the astrometric reference)
    usually has none, which fixes the frame.
    """

    is_offset = True
    PARAMETERS = {"dxi": WCS_SHIFT, "deta": WCS_SHIFT}
    dxi: float = 0.0
    deta: float = 0.0


# ----------------------------------------------------------------------------- photometry
@_pytree
class PhotometricOffset(Component):
    """A correction ``dzp`` (mag) to one image's zeropoint.

    Added to a scene (:meth:`bayesprof.Scene.add_photometric_offsets`), it scales the light of
    every source in the images it is in (not the sky): an image whose nominal zeropoint is
    ``zp`` is modelled with zeropoint ``zp + dzp``, so a source of flux ``f`` gives
    ``10**(0.4 dzp)`` times the counts that ``zp`` alone predicts.  Clouds make ``dzp``
    negative.  Use it for single exposures calibrated only nominally (e.g. a zeropoint from
    the exposure time): one image per band (the photometric reference) has none, which fixes
    the flux scale of that band; the others get a sampled ``dzp`` with a prior of the expected
    calibration error.
    """

    is_calibration = True
    PARAMETERS = {"dzp": ZEROPOINT_SHIFT}
    dzp: float = 0.0

    @property
    def scale(self):
        """Factor on the counts of every source in the image: ``10**(0.4 dzp)``."""
        return 10.0 ** (0.4 * self.dzp)


_DECLARED = [Sersic, Exponential, DeVaucouleurs, Gaussian, Moffat, PointSource, Spline, FlatSky, PlaneSky,
             AstrometricOffset, PhotometricOffset]

#: Every declared parameter's domain, by name (the classes' ``PARAMETERS``).
PARAMETER_DOMAINS = {name: p.domain for cls in _DECLARED for name, p in cls.PARAMETERS.items()}

#: Every declared parameter's unit, by name, for labels and tables (``""``: dimensionless), and
#: ``mag`` (AB magnitudes derived from fluxes).
PARAMETER_UNITS = {**{name: p.unit for cls in _DECLARED for name, p in cls.PARAMETERS.items()}, "mag": "AB mag"}
