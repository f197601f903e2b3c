"""Wavelengths of images, and parameters that vary smoothly with wavelength.

An image's effective wavelength (:attr:`bayesprof.Image.wavelength`) comes from its filter's
response curve or is given as a length.  :func:`effective_wavelength` takes either:

* an astropy ``Quantity`` of length (``6470 * u.AA``, ``0.647 * u.um``) or a string astropy reads
  as one (``"6470 Angstrom"``);
* a filter name.  speclite's response curves (``speclite.filters``; e.g. ``"decam2014-r"``,
  ``"sdss2010-i"``, ``"hsc2017-z"``, ``"wise2010-W1"``, ``"galex-nuv"``, ``"BASS-g"``,
  ``"MzLS-z"``, ``"Euclid-VIS"``) give the photon-weighted mean wavelength
  ``int(lambda^2 R) / int(lambda R)`` (speclite's ``effective_wavelength``).  Filters speclite
  lacks are in :data:`FILTER_WAVELENGTHS`, computed with the same definition from the published
  throughput curves; a filter in neither (e.g. KiDS's OmegaCAM bands) needs its wavelength
  given as a length.

A source parameter declared ``vary={"re": Chebyshev(2)}`` (:class:`Chebyshev`) is a polynomial
in wavelength across the bands of the scene, as in GalfitM (Haussler et al. 2013, MNRAS 430,
330; Vika et al. 2013, MNRAS 435, 623): its Chebyshev coefficients are the sampled sites and
its value in each band is a derived quantity.
"""

from __future__ import annotations

import dataclasses
import functools

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["effective_wavelength", "FILTER_WAVELENGTHS", "Chebyshev", "LINKS"]

#: Effective wavelengths (Angstrom, speclite's definition: ``int(lambda^2 R) / int(lambda R)``)
#: of filters speclite does not ship, from the total-throughput curves of the HST instrument
#: teams (STScI, as distributed with sedpy: github.com/bd-j/sedpy, ``sedpy/data/filters``).
#: The same computation on sedpy's GALEX NUV curve gives 2344.9 A against speclite's 2342.7 A.
FILTER_WAVELENGTHS = {
    "hst_acs_wfc-F435W": 4357.3, "hst_acs_wfc-F475W": 4800.8, "hst_acs_wfc-F555W": 5396.8,
    "hst_acs_wfc-F606W": 6033.3, "hst_acs_wfc-F625W": 6351.7, "hst_acs_wfc-F775W": 7730.6,
    "hst_acs_wfc-F814W": 8143.4, "hst_acs_wfc-F850LP": 9085.7,
    "hst_wfc3_uvis-F336W": 3366.2, "hst_wfc3_uvis-F475W": 4829.0, "hst_wfc3_uvis-F606W": 5998.9,
    "hst_wfc3_uvis-F814W": 8117.3,
    "hst_wfc3_ir-F105W": 10652.1, "hst_wfc3_ir-F125W": 12576.2, "hst_wfc3_ir-F140W": 14061.7,
    "hst_wfc3_ir-F160W": 15435.4,
}


@functools.lru_cache(maxsize=None)
def _filter_wavelength(name: str) -> float | None:
    """Effective wavelength (Angstrom) of a named filter, or None if unknown (memoised: a pure
    function of the name, read from speclite's curve files)."""
    table = {k.lower(): v for k, v in FILTER_WAVELENGTHS.items()}
    if name.lower() in table:
        return float(table[name.lower()])
    import speclite.filters

    try:
        curve = speclite.filters.load_filter(name)
    except (ValueError, OSError):
        return None
    return float(curve.effective_wavelength.to_value(u.AA))


def effective_wavelength(spec) -> u.Quantity:
    """The effective wavelength (an astropy Quantity in Angstrom) of ``spec``: a length (Quantity
    or string such as ``"6470 Angstrom"``) or a filter name (the module docstring).  Anything else
    is a one-line ``ValueError``."""
    if isinstance(spec, u.Quantity):
        q = spec
    elif isinstance(spec, str):
        lam = _filter_wavelength(spec.strip())
        if lam is not None:
            return lam * u.AA
        try:
            q = u.Quantity(spec)
        except (TypeError, ValueError):
            raise ValueError(f"unknown filter {spec!r}: give a speclite filter name (e.g. 'decam2014-r'), one of "
                             f"{sorted(FILTER_WAVELENGTHS)} or a length such as '6470 Angstrom'") from None
    else:
        raise ValueError(f"a wavelength is an astropy Quantity of length or a filter name, not {spec!r}")
    if not q.unit.is_equivalent(u.AA):
        raise ValueError(f"a wavelength needs a unit of length (e.g. Angstrom, nm, um), not {q!r}")
    value = float(np.asarray(q.to_value(u.AA)))
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"a wavelength must be finite and positive, not {q!r}")
    return value * u.AA


# ----------------------------------------------------------------------------- polynomials
#: How each parameter that may vary as a polynomial maps to the line on which the polynomial
#: lives: ``"log"`` (natural log: re, fwhm, which stay positive), ``"logit"`` (the logit of the
#: parameter's position in the interval :data:`LOGIT_BOUNDS`: n in (0.5, 8) and q in
#: (0.15, 1), the supports of their default priors when shared, where the renderer is held to
#: GalSim), ``"mag"`` (flux as an AB magnitude ``23.9 - 2.5 log10(flux / uJy)``: a smooth SED,
#: positive fluxes), ``"identity"`` (xi, eta in arcsec).  A bounded link keeps every band's value
#: in the domain wherever the sampler goes: a faint band's n left unbounded wandered beyond 20
#: in NUTS.
LINKS = {"re": "log", "fwhm": "log", "n": "logit", "q": "logit", "flux": "mag", "xi": "identity", "eta": "identity"}

#: The interval (lower, upper) of each parameter with a ``"logit"`` link.
LOGIT_BOUNDS = {"n": (0.5, 8.0), "q": (0.15, 1.0)}

#: Integer codes of the links in compiled code.
LINK_CODES = {"identity": 0, "log": 1, "logit": 2, "mag": 3}

#: Default prior widths of the coefficients, in the link's units: (constant term, each higher
#: term).  The constant term's prior is centred on the image estimate, the others on zero (no
#: variation with wavelength).  Over the bands' span (x from -1 to 1) a first-order coefficient
#: of 0.5 in ``log`` is a factor e = 2.7 between the bluest and reddest band.
COEFFICIENT_PRIOR_WIDTHS = {"re": (1.0, 0.5), "fwhm": (1.0, 0.5), "n": (1.5, 0.5), "q": (1.5, 0.5),
                            "flux": (1.5 * 2.5 / np.log(10.0), 2.0), "xi": (None, 0.1), "eta": (None, 0.1)}


def link(param, value):
    """The parameter's value on its polynomial's line (numpy; see :data:`LINKS`)."""
    v = np.asarray(value, dtype=float)
    kind = LINKS[param]
    if kind == "log":
        return np.log(v)
    if kind == "logit":
        lo, hi = LOGIT_BOUNDS[param]
        t = np.clip((v - lo) / (hi - lo), 0.02, 0.98)
        return np.log(t) - np.log1p(-t)
    if kind == "mag":
        return 23.9 - 2.5 * np.log10(v)
    return v


def inverse_link(lin, codes, lower, upper):
    """Parameter values from their polynomial's values ``lin`` (jax), elementwise by link code
    (:data:`LINK_CODES`; ``lower``, ``upper``: the interval of a ``"logit"`` entry); every
    branch is evaluated on a safe argument, so gradients stay finite."""
    codes = jnp.asarray(codes)
    log = jnp.exp(jnp.where(codes == 1, lin, 0.0))
    logit = lower + (upper - lower) * jax.nn.sigmoid(jnp.where(codes == 2, lin, 0.0))
    mag = 10.0 ** (-0.4 * (jnp.where(codes == 3, lin, 23.9) - 23.9))
    return jnp.select([codes == 1, codes == 2, codes == 3], [log, logit, mag], lin)


@dataclasses.dataclass(frozen=True)
class Chebyshev:
    """Sharing rule: the parameter is a Chebyshev polynomial of degree ``degree`` in wavelength.

    Use it in :meth:`bayesprof.Scene.add`'s ``vary``: ``vary={"re": Chebyshev(2), "n":
    Chebyshev(1), "flux": Chebyshev(3)}``.  The parameter's value in a band of effective
    wavelength ``lambda`` (:attr:`bayesprof.Image.wavelength`) is
    ``inverse_link(sum_j c_j T_j(x))``, where ``x`` runs linearly from -1 at the bluest to +1 at
    the reddest of the source's bands (in ``log(lambda)`` with ``log_wavelength=True``) and the
    link (:data:`LINKS`) keeps it in its domain.  The coefficients ``c_0 .. c_degree`` are one
    sampled site, ``<source>.<param>_cheb``; the per-band values ``<source>.<param>[<band>]``
    are derived (in :attr:`bayesprof.MapResult.values` with propagated errors, and in the
    posterior with a ``band`` dimension).  The polynomial needs at least ``degree + 1`` bands of
    distinct wavelengths.  ``Chebyshev(0)`` is one value for all bands, as ``"shared"``; with as
    many coefficients as bands it is as free as ``"band"`` but its priors favour smoothness.
    """

    degree: int
    log_wavelength: bool = False

    def __post_init__(self):
        if isinstance(self.degree, bool) or not isinstance(self.degree, (int, np.integer)) or self.degree < 0:
            raise ValueError(f"Chebyshev: degree must be an integer >= 0, not {self.degree!r}")

    @property
    def size(self) -> int:
        return int(self.degree) + 1

    def coordinates(self, wavelengths):
        """``x`` in [-1, 1] of each wavelength (Angstrom) over the span of ``wavelengths``."""
        lam = np.asarray(wavelengths, dtype=float)
        t = np.log(lam) if self.log_wavelength else lam
        lo, hi = t.min(), t.max()
        return np.zeros_like(t) if hi == lo else 2.0 * (t - lo) / (hi - lo) - 1.0

    def basis(self, x):
        """``T_j(x)`` for j = 0..degree: shape ``(len(x), degree + 1)``."""
        return np.polynomial.chebyshev.chebvander(np.asarray(x, dtype=float), int(self.degree))

    def text(self) -> str:
        return f"Chebyshev({self.degree}{', log_wavelength=True' if self.log_wavelength else ''})"
