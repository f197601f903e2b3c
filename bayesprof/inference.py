"""Inference: the MAP by Levenberg–Marquardt and the posterior by NUTS (numpyro).

Both work in the scene's unconstrained space ``u`` (NumPyro's ``biject_to`` of each prior's
support), where the posterior density includes the transforms' Jacobians:

* :func:`fit_map` minimises ``0.5 |r(u)|^2`` with ``r`` the whitened pixel residuals and the
  prior residuals (:mod:`bayesprof.priors`), for the normal likelihood, by Levenberg–Marquardt
  with NL2SOL's secant term (:func:`_lm`; optimistix's LM has no such term, and without it
  blends and real galaxies took up to 2.5x the steps).  The parameters are standardised first
  (``u = u0 + s z``, ``s_i`` each parameter's marginal sigma at the start), so the damping
  treats every parameter alike.  The Jacobian ``J`` is assembled window by window
  (:meth:`SceneModel.residuals_and_jacobian`: each window is differentiated by its own sites
  only), once per step, and each damped step solves the normal equations by Cholesky.
  A residual that is not finite is replaced by a huge value, so such a step is always
  rejected and retried smaller: the fit never steps onto a NaN.  Other likelihoods
  (Student-t, Poisson) are minimised by optax's L-BFGS.  The covariance is the inverse
  Gauss–Newton Hessian ``(J^T J)^-1`` at the MAP (the expected Fisher information for other
  likelihoods, see :meth:`SceneModel.fisher_residuals`), propagated to physical units through
  the transforms' derivatives.
* :func:`sample` runs NUTS from the MAP in whitened coordinates ``u = u_map + L z`` (``L`` the
  Cholesky factor of the MAP covariance): the starting mass matrix is thus the MAP
  covariance, adapted further during warm-up.  The affine map has a constant Jacobian, so the
  target is unchanged.  Samples are returned as an arviz DataTree (:class:`~bayesprof.results.Posterior`).
"""

from __future__ import annotations

import itertools
import threading
import time
import warnings
from dataclasses import dataclass, field
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer.hmc import hmc

from .diagnostics import FitWarning, check_map
from .profiles import flux_to_mag
from .results import Posterior, flux_to_mag_sigma, wrap_angles

__all__ = ["MapResult", "fit_map", "fit_map_batch", "sample", "sample_batch", "load_map"]


@dataclass
class MapResult:
    """The maximum a posteriori fit.

    Attributes
    ----------
    values : dict
        Physical value of every site (fixed ones included), e.g. ``values["gal.n"]``: the
        posterior mode in physical coordinates (see :attr:`u` for the unconstrained one).
    sigmas : dict
        1-sigma uncertainties of the latent sites (Gauss–Newton covariance), physical units.
    covariance : ndarray
        Covariance of the latent sites in physical units, in the order of ``names``.
    names : list of str
        Latent parameters (vector sites expanded as ``name[i]``).
    chi2, reduced_chi2 : float
        Sum of squared whitened pixel residuals, and that divided by (pixels - parameters).
    n_data, n_params : int
    iterations : int
        Levenberg–Marquardt (or L-BFGS) steps taken.
    success : bool
    message : str
    time_s : float
        Wall time of the solve (including compilation on the first call).
    u : ndarray
        The mode in NumPyro's unconstrained coordinates (where NUTS starts); ``chi2`` is
        evaluated there.
    cov_u : ndarray
        The covariance in those coordinates.
    flags : list of :class:`~bayesprof.diagnostics.Flag`
        What :func:`bayesprof.diagnostics.check_map` found (a value at a prior's bound, a source
        mostly outside its images, an image whose chi^2/N does not match its noise map); each
        was also issued as a :class:`~bayesprof.diagnostics.FitWarning`.
    """

    values: dict
    sigmas: dict
    covariance: np.ndarray
    names: list
    chi2: float
    reduced_chi2: float
    n_data: int
    n_params: int
    iterations: int
    success: bool
    message: str
    time_s: float
    u: np.ndarray = field(repr=False)
    cov_u: np.ndarray = field(repr=False)
    model: object = field(repr=False, default=None)
    flags: list = field(default_factory=list)
    #: the scene's tangent point (SkyCoord; from the model when there is one) and each image's
    #: (chi2, n_pixels) at ``u``: computed by the fit from its last residuals, or read from the
    #: file by :func:`load_map`
    reference: object = field(repr=False, default=None)
    saved_image_chi2: dict = field(repr=False, default=None)

    def save(self, path):
        """Write the result to a JSON file, written whole or not at all (a temporary file
        renamed): values, sigmas, covariances (physical and unconstrained), the mode ``u``,
        chi^2 (total and per image), the solver's report and the flags.
        :func:`bayesprof.load_map` reads it back (without the model)."""
        import json
        import os
        import pathlib

        ref = (self.model.reference if self.model is not None else self.reference).icrs
        d = {"format": "bayesprof MAP 1", "values": {k: np.asarray(v).tolist() for k, v in self.values.items()},
             "sigmas": {k: np.asarray(v).tolist() for k, v in self.sigmas.items()}, "names": list(self.names),
             "covariance": np.asarray(self.covariance).tolist(), "u": np.asarray(self.u).tolist(),
             "cov_u": np.asarray(self.cov_u).tolist(), "chi2": self.chi2, "reduced_chi2": self.reduced_chi2,
             "n_data": self.n_data, "n_params": self.n_params, "iterations": self.iterations,
             "success": self.success, "message": self.message, "time_s": self.time_s,
             "flags": [vars(f) for f in self.flags], "image_chi2": self.image_chi2(),
             "reference": [float(ref.ra.deg), float(ref.dec.deg)]}
        path = pathlib.Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(d, indent=1))
        os.replace(tmp, path)

    def magnitudes(self) -> dict:
        """AB magnitude and 1-sigma of every flux site: ``{"gal.flux[r]": (mag, sigma), ...}``."""
        out = {}
        for name, v in self.values.items():
            if name.split("[")[0].endswith(".flux") and name in self.sigmas:
                out[name] = flux_to_mag_sigma(float(v), float(self.sigmas[name]))
        return out

    def colour(self, source, a, b, relative_to=None):
        """The AB colour ``m_a - m_b`` (mag) of ``source`` from its flux sites in bands (or
        images, for a flux per image) ``a`` and ``b``, and its 1-sigma from the fluxes'
        covariance (linearised).  With ``relative_to`` (another source with fluxes in ``a`` and
        ``b``, e.g. the disk of a bulge + disk): the difference of the two colours,
        ``(m_a - m_b)_source - (m_a - m_b)_other``, with the covariance of all four fluxes; it
        does not depend on the images' zeropoints.  Returns ``(colour, sigma)``."""
        terms = [(source, 1.0)] + ([] if relative_to is None else [(relative_to, -1.0)])
        names, signs = [], []
        for src, sign in terms:
            for band, s in ((a, sign), (b, -sign)):
                name = f"{src}.flux[{band}]"
                if name not in self.names:
                    have = sorted(k for k in self.names if k.startswith(f"{src}.flux"))
                    raise ValueError(f"colour: {name} is not a fitted flux of this result (it has {have or 'none'}; "
                                     f"a flux given as a polynomial in wavelength has no covariance entry)")
                names.append(name)
                signs.append(s)
        f = np.array([float(self.values[n]) for n in names])
        if np.any(f <= 0):
            bad = [n for n, v in zip(names, f) if v <= 0]
            raise ValueError(f"colour: the fluxes {bad} are not positive, so their magnitudes are undefined")
        signs = np.array(signs)
        idx = [self.names.index(n) for n in names]
        value = float(np.sum(signs * np.asarray(flux_to_mag(f))))  # the zeropoints cancel in the signed sum
        jac = signs * -2.5 / (np.log(10) * f)
        return value, float(np.sqrt(max(jac @ self.covariance[np.ix_(idx, idx)] @ jac, 0.0)))

    def write_images(self, folder):
        """One FITS file per image, ``<folder>/<image>_fit.fits``, each written whole or not at all:
        extensions ``MODEL`` (counts/pixel, the MAP), ``RESIDUAL`` (data - model) and ``CHI``
        ((data - model) / sigma); pixels not fitted (masked, outside the windows) are NaN in the
        last two.  Each carries the image's celestial WCS and cards ``BPCHI2`` and ``BPNPIX``
        (chi^2 and fitted pixels of the image), ``BANDNAME``, ``ZEROPT`` and the MAP's ``BPSTEPS``
        and ``BPCONV``.  Returns the paths."""
        import os
        import pathlib

        from astropy.io import fits

        if self.model is None:
            raise ValueError("write_images needs the fit's model (a result read by load_map has none)")
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model = self.model
        values = {k: v for k, v in self.values.items() if k in model.site}
        paths = []
        for k, (im, m) in enumerate(zip(model.images, model.render_all(values))):
            m = np.asarray(m, dtype=float)
            good = np.asarray(model._plans[k]["good"], bool).reshape(im.shape)
            resid = np.where(good, im.data - m, np.nan)
            chi = resid / np.sqrt(im.variance)
            header = im.wcs.to_header()
            header["BANDNAME"] = (str(im.band), "band of the image")
            header["ZEROPT"] = (float(im.zeropoint), "AB zeropoint of the counts")
            header["BPCHI2"] = (float(np.nansum(chi**2)), "chi^2 of the fitted pixels at the MAP")
            header["BPNPIX"] = (int(good.sum()), "fitted pixels")
            header["BPSTEPS"] = (int(self.iterations), "MAP solver steps")
            header["BPCONV"] = (bool(self.success), "MAP solver converged")
            hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(a.astype(np.float32), header=header, name=n) for n, a in
                                          (("MODEL", m), ("RESIDUAL", resid), ("CHI", chi))]
            path = folder / f"{im.name}_fit.fits"
            tmp = folder / f".{path.name}.tmp-{os.getpid()}"
            fits.HDUList(hdus).writeto(tmp, overwrite=True)
            os.replace(tmp, path)
            paths.append(path)
        return paths

    def sky_positions(self):
        """RA/Dec (deg) of every source's fitted centre with 1-sigma errors in arcsec (east and
        north; fixed centres have error 0): an astropy Table
        (:func:`bayesprof.results.sky_position_table`)."""
        from .results import sky_position_table

        names = [k[: -len(".xi")] for k in self.values if k.endswith(".xi") and k[:-3] + ".eta" in self.values]
        sig = lambda n: float(self.sigmas.get(n, 0.0))  # noqa: E731
        return sky_position_table(names, [float(self.values[f"{n}.xi"]) for n in names],
                                  [float(self.values[f"{n}.eta"]) for n in names], [sig(f"{n}.xi") for n in names],
                                  [sig(f"{n}.eta") for n in names],
                                  self.model.reference if self.model is not None else self.reference,
                                  method="MAP and Gauss-Newton sigma")

    def image_chi2(self) -> dict:
        """Per image, ``{name: (chi2, n_pixels)}``: the sum of squared whitened residuals
        ((data - model) / sigma) over the image's fitted pixels at the MAP, and their number;
        ``chi2 / n_pixels`` near 1 means residuals consistent with the noise."""
        model = self.model
        if self.saved_image_chi2 is not None or model is None:
            return dict(self.saved_image_chi2 or {})
        r = np.asarray(model.whitened_residuals(model.constrain(jnp.asarray(self.u))))
        return _image_chi2(model, r[model._fitted])

    def table(self) -> str:
        lines = [f"{'site':<24}{'value':>14}{'sigma':>12}"]
        for name, v in self.values.items():
            v = np.asarray(v)
            s = self.sigmas.get(name)
            if v.ndim == 0:
                lines.append(f"{name:<24}{float(v):>14.6g}{'' if s is None else f'{float(s):>12.3g}'}")
            else:
                for i in range(v.size):
                    si = "" if s is None else f"{float(np.ravel(s)[i]):>12.3g}"
                    lines.append(f"{name + f'[{i}]':<24}{float(v.ravel()[i]):>14.6g}{si}")
        lines.append(f"chi2 = {self.chi2:.1f} for {self.n_data} pixels, {self.n_params} parameters: reduced chi2 = "
                     f"{self.reduced_chi2:.4f}; {self.iterations} iterations; {self.message}")
        pos = self.sky_positions()
        lines += [f"{r['source'] + ' RA, Dec':<24}{r['ra']:>14.8f}{r['dec']:>14.8f} deg  +- {r['ra_err']:.3g}, "
                  f"{r['dec_err']:.3g} arcsec" for r in pos]
        lines += [f"WARNING: {f}" for f in self.flags]
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def load_map(path) -> MapResult:
    """A :class:`MapResult` written by :meth:`MapResult.save`; it has no ``model`` (what
    needs the model, e.g. plotting residuals, needs the scene: refit or rebuild it), but its
    values, sigmas, covariances, chi^2 per image, flags and sky positions are all there."""
    import json

    from astropy.coordinates import SkyCoord

    from .diagnostics import Flag

    d = json.loads(open(path).read())
    if d.get("format") != "bayesprof MAP 1":
        raise ValueError(f"{path}: not a bayesprof MAP file (format {d.get('format')!r})")
    return MapResult(values={k: np.asarray(v) for k, v in d["values"].items()},
                     sigmas={k: np.asarray(v) for k, v in d["sigmas"].items()},
                     covariance=np.asarray(d["covariance"]), names=d["names"], chi2=d["chi2"],
                     reduced_chi2=d["reduced_chi2"], n_data=d["n_data"], n_params=d["n_params"],
                     iterations=d["iterations"], success=d["success"], message=d["message"], time_s=d["time_s"],
                     u=np.asarray(d["u"]), cov_u=np.asarray(d["cov_u"]), flags=[Flag(**f) for f in d["flags"]],
                     reference=SkyCoord(*d["reference"], unit="deg"),
                     saved_image_chi2={k: tuple(v) for k, v in d["image_chi2"].items()})


def _big(dtype, n):
    """A finite residual so large that a step producing it is rejected (sum of squares stays finite)."""
    return float(np.sqrt(np.finfo(dtype).max) / (4.0 * np.sqrt(max(n, 1))))


#: The LM's default absolute tolerance, in units of each parameter's sigma (``fit_map``'s ``atol``).
#: With the secant term and the predicted stop the MAP lies within 0.036 sigma of the fully
#: converged one on eight simulated and real scenes (``benchmarks/RESULTS.md``).
ATOL = 0.03


def fit_map(scene, *, init=None, max_steps=200, rtol=1e-8, atol=ATOL, method="auto", verbose=False) -> MapResult:
    """Maximum a posteriori fit of a scene.

    Parameters
    ----------
    scene : :class:`~bayesprof.Scene`
    init : dict, optional
        Starting site values (physical units); default: the scene's initial values (image
        estimates, or what :meth:`Scene.set_init` gave).
    max_steps : int
        Maximum number of solver steps.
    rtol, atol : float
        Convergence tolerances (a Cauchy criterion, as optimistix's): the last accepted step
        is below ``atol + rtol |z|`` in the standardised space (units of ~1 sigma per
        parameter) and each residual changed by less than ``atol + rtol |r|``; or when the
        next step, as the local model predicts it, would be below that.  Near the
        optimum the steps converge quadratically: with the default ``atol = 0.03``
        (:data:`ATOL`) the MAP lies within 0.036 sigma of the one reached with ``atol = 1e-8``
        on eight scenes from 9 to 139 parameters.
    method : {"auto", "lm", "lbfgs"}
        Levenberg–Marquardt (normal likelihood; the default there) or optax L-BFGS
        (default for Student-t and Poisson likelihoods).
    verbose : bool
        Print the solver's progress.
    """
    model = scene.build() if hasattr(scene, "build") else scene
    if method == "auto":
        method = "lm" if model.least_squares else "lbfgs"
    if method == "lm" and not model.least_squares:
        raise ValueError("Levenberg–Marquardt needs the normal likelihood in every image; use method='lbfgs'")
    if method not in ("lm", "lbfgs"):
        raise ValueError(f"method must be 'auto', 'lm' or 'lbfgs', not {method!r}")
    start = dict(model.init_values)
    if init is not None:
        start.update({k: v for k, v in dict(init).items() if k in model.site})
    u0 = _checked_start(model, start)
    t0 = time.perf_counter()
    if method == "lm":
        u, steps, converged, hess, res = (np.asarray(a) for a in _lm(model, u0, max_steps, rtol, atol, bool(verbose)))
        pixels = res[: model.n_fitted]  # the whitened fitted pixels come first
        success = bool(converged)
        message = "converged" if success else f"Levenberg–Marquardt stopped before converging ({int(steps)} steps)"
    else:
        u, steps, ok, jac = _lbfgs(model, u0, max_steps, rtol)
        u, jac = np.asarray(u), np.asarray(jac)
        hess = jac.T @ jac  # expected (Fisher) information at the MAP
        pixels = None
        success = bool(ok)
        message = "converged" if success else "L-BFGS stopped before converging (max_steps reached)"
    elapsed = time.perf_counter() - t0
    fit = _finish(model, u, hess, int(steps), success, message, elapsed, pixels)
    for flag in fit.flags:
        warnings.warn(flag.message, FitWarning, stacklevel=2)
    return fit


@jax.jit
def _start_values(model, values):
    x = model.pack(values)
    return model.priors.unconstrain(x), model.priors.inside(x)


def _checked_start(model, values):
    """The unconstrained start vector of physical ``values``; ValueError naming the first latent
    site whose value lies outside its prior's support."""
    u0, inside = _start(model, {s.name: jnp.asarray(values[s.name], dtype=float) for s in model.latent})
    for s, ok in zip(model.latent, inside):
        if not ok:
            raise ValueError(f"the initial value {np.asarray(values[s.name])} of {s.name} lies outside the support of "
                             f"its prior {s.prior.prior}")
    return u0


def _start(model, values):
    """The unconstrained start vector, and per latent site whether its value lies strictly inside
    the prior's support (as :meth:`~bayesprof.priors.SitePrior.contains`), in one compiled call."""
    u, inside = _start_values(model, values)
    entries = np.asarray(inside)
    starts = np.cumsum([0] + [s.prior.size for s in model.latent])
    return u, [bool(entries[a:b].all()) for a, b in zip(starts[:-1], starts[1:])]


@jax.jit
def _physical(model, u):
    """The packed latent physical values at unconstrained ``u``, their derivative by ``u``
    (diagonal: the transforms are elementwise) and the gradient by them of the log-Jacobian
    ``log |dx/du|`` (``x''(u) / x'(u)^2`` per entry), in one compiled call."""
    ones = jnp.ones_like(u)
    slope = lambda w: jax.jvp(model.priors.constrain, (w,), (ones,))[1]  # noqa: E731
    x, dx = jax.jvp(model.priors.constrain, (u,), (ones,))
    d2x = jax.jvp(slope, (u,), (ones,))[1]
    safe = jnp.where(dx != 0, dx, 1.0)
    return x, jnp.diag(dx), jnp.where(dx != 0, d2x / safe**2, 0.0)


def _physical_mode(model, x, cov, grad_log_jacobian):
    """The posterior mode in physical coordinates, from the mode ``x`` of the unconstrained
    space's density: one Newton step ``x - cov @ grad log|dx/du|`` (the two densities differ by
    that log-Jacobian; exact to second order in the uncertainties), shortened (halved up to 11
    times) if it would leave a prior's support.  Returns the values and the step's fraction taken."""
    step = cov @ np.asarray(grad_log_jacobian)
    fractions = 0.5 ** np.arange(12)
    ok = np.asarray(_inside_along(model, jnp.asarray(x), jnp.asarray(step), jnp.asarray(fractions)))
    if not ok.any():
        return np.asarray(x), 0.0
    t = float(fractions[np.argmax(ok)])
    return np.asarray(x) - t * step, t


@jax.jit
def _inside_along(model, x, step, fractions):
    """Per fraction ``t``: whether ``x - t * step`` lies inside every prior's support (one compiled
    call for all of them)."""
    return jax.vmap(lambda t: jnp.all(model.priors.inside(x - t * step)))(fractions)


@jax.jit
def _linearise(model, u, data):
    """``model.residuals_and_jacobian(u, data)``, jitted: one trace per model structure."""
    return model.residuals_and_jacobian(u, data)


def _solver_scale(J):
    """Units of the solver's coordinates (``u = u0 + scale * z``): each parameter's marginal
    standard deviation at the start, ``sqrt(diag((J^T J)^-1))`` (prior terms included in
    ``J``), so that the stopping rule (steps below ``atol`` in z) reads "every parameter moved
    less than atol of its own uncertainty".  Computed on the column-normalised Jacobian and
    bounded to 1..1e3 times ``1 / |column|`` (the scale of an uncorrelated parameter; a
    degenerate direction keeps it).  On the seed scene this takes 7-8 LM steps where column
    norms alone took 8-10 (``benchmarks/RESULTS.md``)."""
    col = jnp.sqrt(jnp.sum(J * J, axis=0))
    unit = jnp.where(col > 0, 1.0 / jnp.where(col > 0, col, 1.0), 1.0)
    Js = J * unit
    marginal = jnp.sqrt(jnp.clip(jnp.diag(jnp.linalg.pinv(Js.T @ Js, hermitian=True)), 1.0, 1e6))
    return unit * marginal


def _damped_step(H, g, lam):
    """``-(H + lam I)^-1 g`` by Cholesky; NaN where ``H + lam I`` is not positive definite."""
    c = jnp.linalg.cholesky(H + lam * jnp.eye(H.shape[0], dtype=H.dtype))
    return -jax.scipy.linalg.cho_solve((c, True), g)


def _secant_update(S, s, y, y_sharp):
    """Dennis, Gay & Welsch's (1981, NL2SOL) update of ``S``, the part of the Hessian that
    Gauss–Newton's ``J^T J`` leaves out (``sum_i r_i grad^2 r_i``: the residuals' curvature, the
    transforms' and the prior's), after a step ``s`` with gradient change ``y`` and
    ``y_sharp = (J_new - J_old)^T r_new``.  ``S`` is first shrunk by ``min(1, |s.y#| / |s.S.s|)``,
    then the symmetric rank-2 update makes ``S s = y_sharp`` (the secant condition).  Unchanged
    when ``y.s`` is not positive."""
    sSs = s @ (S @ s)
    tau = jnp.where(sSs != 0, jnp.minimum(1.0, jnp.abs(s @ y_sharp) / jnp.where(sSs != 0, jnp.abs(sSs), 1.0)), 1.0)
    sized = tau * S
    w = y_sharp - sized @ s
    ys = y @ s
    ok = ys > 1e-12 * jnp.linalg.norm(y) * jnp.linalg.norm(s)
    ys = jnp.where(ok, ys, 1.0)
    new = sized + (jnp.outer(w, y) + jnp.outer(y, w)) / ys - (w @ s) * jnp.outer(y, y) / ys**2
    return jnp.where(ok, new, S)


class _LMState(eqx.Module):
    """Loop state of :func:`_lm`: the last accepted point ``z`` with its residuals, Jacobian (by ``u``),
    ``J^T J`` and gradient ``g = J^T r`` (solver units), the secant term ``S``, the trial point,
    the step size (``1 / damping``), whether the trial's step used ``S``, the units, and whether
    it has converged."""

    k: jax.Array
    z: jax.Array
    r: jax.Array
    J: jax.Array
    JtJ: jax.Array
    g: jax.Array
    S: jax.Array
    z_try: jax.Array
    step_size: jax.Array
    use_S: jax.Array
    scale: jax.Array
    done: jax.Array


#: the predicted stop (:func:`_lm`): the fraction of the tolerances below which the model's
#: predicted last step is not taken (1/3 kept the stop within 0.023 sigma of the converged MAP
#: on eight scenes; 1 keeps it within 0.036 sigma and saves one step more on five of them;
#: ``benchmarks/RESULTS.md``)
PREDICTED_STOP = 1.0


@partial(jax.jit, static_argnames=("max_steps", "rtol", "atol", "verbose"))
def _lm(model, u0, max_steps, rtol, atol, verbose):
    """The Levenberg–Marquardt solve from ``u0``; one compiled program per model structure (the
    pixel data are leaves of ``model``).  Returns ``(u, steps, converged, J^T J, r)`` at the
    MAP (``J`` by ``u``: the Gauss–Newton Hessian, without moving the large ``J`` off the device).

    Each step linearises the residuals at a trial point (:meth:`SceneModel.residuals_and_jacobian`,
    one copy in the program), accepts it if the loss fell by at least 10 % of the model's
    prediction, and solves ``(J^T J + S + lambda I) dz = -J^T r`` by Cholesky for the next one.

    * **Units.**  The first linearisation (at ``u0``) sets the solver's coordinates
      ``u = u0 + scale * z`` (:func:`_solver_scale`: ~1 sigma per unit), so the damping treats
      every parameter alike and ``atol`` reads in sigmas.
    * **Damping.**  ``lambda = 1 / step size``, first 0.01; the step size grows 8x after a step
      that achieved >= 50 % of the predicted reduction and drops 16x after a rejected one (a
      Gauss–Newton step barely shortens until the damping nears the curvature, so smaller
      decrements waste rejected steps, a Jacobian each).  Measured on six simulated scenes
      against optimistix's defaults (``benchmarks/RESULTS.md``).
    * **Secant term** (NL2SOL, Dennis, Gay & Welsch 1981).  Gauss–Newton's ``J^T J`` misses
      ``sum r_i grad^2 r_i``: large where the residuals are not noise (real galaxies' structure)
      or where a transform or prior bends (a flux near 0 on its log scale).  There LM converges
      linearly, zig-zagging across a curved valley.  ``S`` learns that term along the steps
      taken (:func:`_secant_update`); each step uses the model (with or without ``S``) that
      predicted the last step's actual reduction better.
    * **Stop** (Cauchy, as optimistix's): after an accepted step below ``atol + rtol |z|`` in
      every coordinate whose residuals each changed by less than ``atol + rtol |r|``.  Or
      **predicted**: at a point reached by a step that achieved >= 50 % of its predicted
      reduction, when the model's undamped step to its own minimum is below
      ``PREDICTED_STOP x (atol + rtol |z|)`` in every coordinate, that last step is not taken:
      the point is then within about ``atol`` of the minimum, and checking the step would cost
      a Jacobian (one of 6-12 on a single galaxy).
    * **Cost.**  Each step makes three passes over the large ``J`` (its ``J^T J`` and ``J^T r``
      at the trial, the previous point's ``J^T r`` for ``S``); ``J^T J`` and the gradient of
      the accepted point are kept, not recomputed.
    * A residual that is not finite is replaced by a huge value, so such a step is rejected and
      retried smaller: the fit never steps onto a NaN.
    """
    data = model.data
    dtype = u0.dtype
    n = u0.size
    big = _big(np.dtype(dtype), int(model.n_fitted + model.size))
    r_shape, J_shape = jax.eval_shape(lambda: _linearise(model, u0, data))

    def body(st):
        r_t, J_t = _linearise(model, u0 + st.scale * st.z_try, data)
        r_t = jnp.where(jnp.isfinite(r_t), r_t, big)
        first = st.k == 0
        scale = jax.lax.cond(first, _solver_scale, lambda J: st.scale, J_t)
        # the products with the large J (by u, not rescaled: a rescaling fused into the products
        # makes XLA's CPU dot up to 2x slower): the trial's J^T J and gradient, and the previous
        # point's J^T r_t for the secant update; everything else works on n x n matrices, in
        # the solver's units
        JtJ_t = scale[:, None] * (J_t.T @ J_t) * scale[None, :]
        g_t = scale * (J_t.T @ r_t)
        delta = st.z_try - st.z
        pred_gn = st.g @ delta + 0.5 * delta @ (st.JtJ @ delta)
        pred_S = pred_gn + 0.5 * delta @ (st.S @ delta)
        pred = jnp.where(st.use_S, pred_S, pred_gn)
        actual = 0.5 * (r_t @ r_t) - 0.5 * (st.r @ st.r)
        # a non-finite entry of J_t makes its column's diagonal entry of J^T J non-finite
        accept = first | ((actual <= 0.1 * pred) & jnp.all(jnp.isfinite(jnp.diag(JtJ_t))))
        good = ~first & (actual < 0.5 * pred) & (pred < 0)
        step_size = st.step_size * jnp.where(accept, jnp.where(good, 8.0, 1.0), 1 / 16)
        use_S = jnp.abs(actual - pred_S) < jnp.abs(actual - pred_gn)  # the better predictor
        S = jnp.where(accept & ~first, _secant_update(st.S, delta, g_t - st.g, g_t - scale * (st.J.T @ r_t)), st.S)
        y_conv = jnp.max(jnp.abs(delta) / (atol + rtol * jnp.abs(st.z_try))) < 1
        f_conv = jnp.max(jnp.abs(r_t - st.r) / (atol + rtol * jnp.abs(r_t))) < 1
        done = accept & ~first & y_conv & f_conv
        z, r, J, JtJ, grad = (jnp.where(accept, a, b) for a, b in ((st.z_try, st.z), (r_t, st.r), (J_t, st.J),
                                                                    (JtJ_t, st.JtJ), (g_t, st.g)))
        if verbose:
            jax.debug.print("LM step {k}: loss {loss:.6g}, step size {ss:.3g}, accepted {a}", k=st.k,
                            loss=0.5 * (r @ r), ss=step_size, a=accept)
        lam = jnp.where(step_size > jnp.finfo(dtype).eps, 1 / step_size, jnp.finfo(dtype).max)
        step_S = _damped_step(JtJ + S, grad, lam)
        with_S = use_S & jnp.all(jnp.isfinite(step_S))
        step = jnp.where(with_S, step_S, _damped_step(JtJ, grad, lam))
        # the predicted stop: at a point just reached by a step its model predicted well, where
        # the model's own (undamped) step to its minimum is below PREDICTED_STOP x the
        # tolerances, that step is not taken
        free = _damped_step(jnp.where(with_S, JtJ + S, JtJ), grad, 0.0)
        trusted = accept & good & jnp.all(jnp.isfinite(free))
        near = jnp.max(jnp.abs(free) / (PREDICTED_STOP * (atol + rtol * jnp.abs(z)))) < 1
        done = done | (trusted & near)
        return _LMState(st.k + 1, z, r, J, JtJ, grad, S, z + step, step_size, with_S, scale, done)

    zeros = jnp.zeros_like(u0)
    square = jnp.zeros((n, n), dtype)
    init = _LMState(jnp.zeros((), int), zeros, jnp.zeros(r_shape.shape, dtype), jnp.zeros(J_shape.shape, dtype),
                    square, zeros, square, zeros, jnp.asarray(100.0, dtype), jnp.asarray(False), jnp.ones_like(u0),
                    jnp.asarray(False))
    st = jax.lax.while_loop(lambda st: (st.k < max_steps) & ~st.done, body, init)
    return u0 + st.scale * st.z, st.k, st.done, st.JtJ / jnp.outer(st.scale, st.scale), st.r


@partial(jax.jit, static_argnames=("max_steps", "rtol", "atol"))
def _lm_batch(models, u0, max_steps, rtol, atol):
    """:func:`_lm` over a batch: ``models`` is a stack of models of one structure (every leaf with
    a leading batch axis), ``u0`` their start vectors ``(batch, size)``.  One compiled program
    per structure and batch size; each model stops at its own convergence (the loop runs until
    the last one has)."""
    def one(m, u):
        return _lm.__wrapped__(m, u, max_steps, rtol, atol, False)

    return jax.vmap(one)(models, u0)


def fit_map_batch(models, *, starts=None, max_steps=200, rtol=1e-8, atol=ATOL, batch_size=None, warn=False) -> list:
    """Levenberg–Marquardt MAP fits of many scene models of one structure (e.g. one galaxy in
    cut-outs of the same shapes), vmapped: one compiled program for all of them.

    models : list of :class:`~bayesprof.scene.SceneModel` (or scenes), same structure
        (``model._structure``; normal likelihood).  Each starts from its own initial values.
    batch_size : int, optional
        Models solved together (default: all).  A last, smaller batch is padded with copies of
        its last model (their results are dropped), so every call has the same shape.
    starts : list of dict or None, optional
        Per model, the site values (physical units) to start from (e.g. an earlier fit's
        ``values``); None or missing: the model's initial values.
    warn : bool
        Issue each result's flags as :class:`~bayesprof.diagnostics.FitWarning` (as
        :func:`fit_map` does); off by default, the flags are in each result's ``flags``.

    Returns one :class:`MapResult` per model, in order, equal to :func:`fit_map`'s to the
    solver's tolerance; ``time_s`` is the batch's wall time shared equally."""
    models = [m.build() if hasattr(m, "build") else m for m in models]
    if not models:
        return []
    first = models[0]
    for m in models:
        if not m.least_squares:
            raise ValueError("fit_map_batch: Levenberg–Marquardt needs the normal likelihood in every image")
        if m._structure != first._structure:
            raise ValueError("fit_map_batch: the models differ in structure (images' shapes, sources, sites); "
                             "group them by model._structure")
    starts = [None] * len(models) if starts is None else list(starts)
    if len(starts) != len(models):
        raise ValueError(f"fit_map_batch: {len(starts)} starts for {len(models)} models")
    starts = [_checked_start(m, m.init_values if v is None else {**m.init_values, **v}) for m, v in zip(models, starts)]
    size = len(models) if batch_size is None else max(1, min(int(batch_size), len(models)))
    out = []
    for a in range(0, len(models), size):
        chunk, u0 = models[a:a + size], starts[a:a + size]
        pad = size - len(chunk)
        # stacked on the host (one transfer per leaf when the program is called), not by a
        # jnp.stack per leaf: each would be an eager dispatch
        stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *(chunk + [chunk[-1]] * pad))
        t0 = time.perf_counter()
        u, steps, converged, hess, res = jax.block_until_ready(
            _lm_batch(stacked, jnp.stack(u0 + [u0[-1]] * pad), max_steps, rtol, atol))
        elapsed = (time.perf_counter() - t0) / len(chunk)
        u, steps, converged, hess, res = (np.asarray(x) for x in (u, steps, converged, hess, res))
        for i, m in enumerate(chunk):
            success = bool(converged[i])
            message = "converged" if success else f"Levenberg–Marquardt stopped before converging ({int(steps[i])} steps)"
            fit = _finish(m, u[i], hess[i], int(steps[i]), success, message, elapsed, res[i][: m.n_fitted])
            if warn:
                for flag in fit.flags:
                    warnings.warn(flag.message, FitWarning, stacklevel=2)
            out.append(fit)
    return out


@partial(jax.jit, static_argnames=("max_steps", "tol"))
def _lbfgs(model, u0, max_steps, tol):
    """optax L-BFGS on the potential from ``u0``; one compiled program per model structure."""
    data = model.data
    J0 = jax.jacfwd(model.fisher_residuals)(u0, data)
    h = jnp.sqrt(jnp.sum(J0 * J0, axis=0))
    scale = jnp.where(h > 0, 1.0 / jnp.where(h > 0, h, 1.0), 1.0)
    f = lambda z: model.potential(u0 + scale * z, data)  # noqa: E731
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(f)

    def step(carry):
        z, state, k, _ = carry
        value, grad = value_and_grad(z, state=state)
        updates, state = opt.update(grad, state, z, value=value, grad=grad, value_fn=f)
        return z + updates, state, k + 1, jnp.max(jnp.abs(grad))

    def cond(carry):
        _, _, k, g = carry
        return (k < max_steps) & (g > tol)

    z0 = jnp.zeros_like(u0)
    z, _, k, g = jax.lax.while_loop(cond, step, (z0, opt.init(z0), 0, jnp.inf))
    u = u0 + scale * z
    return u, k, g <= tol, jax.jacfwd(model.fisher_residuals)(u, data)


def _finish(model, u, hess, steps, success, message, elapsed, pixels=None):
    """MapResult from the solution; ``pixels``: the whitened pixel residuals there, if known."""
    p = model.size
    # covariance in u (pseudo-inverse guards a singular direction, e.g. a parameter the data ignore),
    # computed on the Hessian scaled to unit diagonal so that parameters of very different scales
    # (a sky level of 1e-12 counts next to a Sersic index) do not hide each other
    hess = 0.5 * (hess + hess.T)
    d = np.sqrt(np.maximum(np.diag(hess), 0.0))
    d = np.where(d > 0, d, 1.0)
    w, v = np.linalg.eigh(hess / np.outer(d, d))
    w_safe = np.where(w > 1e-12 * max(w.max(), 1e-300), w, np.inf)
    cov_u = ((v / w_safe) @ v.T) / np.outer(d, d)
    x, D, glj = _physical(model, jnp.asarray(u))
    D = np.asarray(D)
    cov = D @ cov_u @ D.T
    # the reported values are the mode in physical coordinates (u is the unconstrained mode)
    x, fraction = _physical_mode(model, x, cov, glj)
    if fraction < 1:
        message += f"; the physical-mode step was shortened to {fraction:g} to stay inside the priors' supports"
    complete = model.complete(model.unpack(np.asarray(x)))
    values = {name: np.asarray(complete[name]) for name in [s.name for s in model.sites] + list(model.derived)}
    for s in model.sites:
        if s.is_angle and s.fixed is None:
            values[s.name] = np.asarray(values[s.name] % 180.0)
    names, sig, i = [], {}, 0
    diag = np.sqrt(np.maximum(np.diag(cov), 0.0))
    for s in model.latent:
        k = s.prior.size
        sig[s.name] = diag[i] if s.shape == () else diag[i:i + k].reshape(s.shape)
        names += [s.name] if s.shape == () else [f"{s.name}[{j}]" for j in range(k)]
        i += k
    if model.derived:  # errors of the derived values (per-band values of polynomials, B/T): linearised
        G = np.asarray(_derived_jacobian(model, jnp.asarray(x)))
        sd = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", G, cov, G), 0.0))
        sig.update({name: sd[j] for j, name in enumerate(model.derived)})
    if pixels is None:
        pixels = np.asarray(model.whitened_residuals(model.constrain(jnp.asarray(u))))[model._fitted]
    chi2 = float(np.sum(pixels**2))
    dof = max(model.n_data - p, 1)
    fit = MapResult(values=values, sigmas=sig, covariance=cov, names=names, chi2=chi2, reduced_chi2=chi2 / dof,
                    n_data=model.n_data, n_params=p, iterations=steps, success=success, message=message,
                    time_s=elapsed, u=np.asarray(u), cov_u=cov_u, model=model,
                    saved_image_chi2=_image_chi2(model, pixels))
    fit.flags = check_map(fit, fit.saved_image_chi2)
    return fit


def _image_chi2(model, pixels):
    """``{image: (chi2, fitted pixels)}`` from the whitened residuals of the fitted pixels,
    image after image (as :meth:`SceneModel.residuals` orders them)."""
    out, i = {}, 0
    for im, plan in zip(model.images, model._plans):
        size = int(plan["index"].size)  # masked pixels among them have zero residual
        out[im.name] = (float(np.sum(pixels[i:i + size] ** 2)), int(np.count_nonzero(plan["good"])))
        i += size
    return out


@jax.jit
def _derived_jacobian(model, x):
    """The derivative of the derived values (in ``model.derived``'s order) by the packed latent
    physical values ``x``."""
    def derived(xx):
        v = model._extend(model._fixed_values.at[model._latent_entries].set(xx))
        values = model.derived_values(v)
        return jnp.stack([values[name] for name in model.derived])
    return jax.jacfwd(derived)(x)


@jax.jit
def _derived_draws(model, u):
    """The derived values (per-band values of polynomials, B/T) of every row of ``u``."""
    return jax.vmap(lambda uu: model.derived_values(model.site_vector(uu)))(u)


@jax.jit
def _constrain_draws(model, u):
    """The site values (physical units) of every row of ``u`` (draws x parameters)."""
    return jax.vmap(model.constrain)(u)


@jax.jit
def _draw_log_likelihoods(model, u):
    """Each image's log-likelihood at every row of ``u`` (draws x parameters), 8 draws at a time:
    memory bounded by 8 renders whatever the number of draws."""
    return jax.lax.map(lambda uu: jnp.stack(model._log_likelihoods(model.site_vector(uu))), u, batch_size=8)


class _PhaseProgress:
    """One progress bar per NUTS phase over all chains (``chains x steps`` transitions),
    labelled "warm-up" and then "sampling", whatever the chain method.

    The compiled sampler reports each transition through :func:`_tick` with the bar's number,
    so one compiled program serves every call; ``_BARS`` maps the numbers of the bars open now
    to their objects (parallel chains call back from several threads)."""

    def __init__(self, enabled):
        self.enabled, self.bar = enabled, None
        self.key = next(_BAR_KEYS)

    def start(self, label, total):
        if self.enabled:
            from tqdm.auto import tqdm

            self.close()
            self.bar = tqdm(total=total, desc=f"NUTS {label}", unit="step", dynamic_ncols=True)
            _BARS[self.key] = self

    def tick(self, step):
        """One transition of each chain in ``step`` (a chain's counter; under ``vmap`` the
        callback gets the vectorised chains' counters at once)."""
        if self.bar is not None:
            with _BARS_LOCK:
                self.bar.update(int(np.size(step)))

    def close(self):
        _BARS.pop(self.key, None)
        if self.bar is not None:
            self.bar.close()
            self.bar = None


_BARS: dict = {}
_BAR_KEYS = itertools.count()
_BARS_LOCK = threading.Lock()


def _tick(key, step):
    bar = _BARS.get(int(np.ravel(key)[0]))
    if bar is not None:
        bar.tick(step)


def _nuts_potential(model, u_map, L):
    """The potential of the whitened coordinates z (u = u_map + L z): numpyro's ``potential_fn_gen``."""
    return lambda z: model.potential(u_map + L @ z)


_NUTS_FIELDS = ("diverging", "num_steps", "accept_prob", "energy", "potential_energy", "step_size")


def _run(model, u_map, L, z0, key, bar, state, resume, n_steps, num_warmup, num_samples, options, progress,
         vectorized):
    """``n_steps`` NUTS transitions (numpyro's functional :func:`~numpyro.infer.hmc.hmc`) for one
    chain, or for a batch of chains in lockstep (``vectorized``: ``z0``, ``key`` and ``state``
    carry a leading chain axis, each transition is vmapped and reported once for the batch).

    One program serves both phases, so that a model's NUTS is compiled once: ``resume`` False
    starts from ``z0`` (the warm-up; ``state`` is only a placeholder of the state's shape and
    ``n_steps`` is ``num_warmup``); True continues from ``state`` (the sampling).  Returns the
    last state, and the positions and NUTS's statistics of the first ``num_samples`` transitions
    (the draws, when resuming; ignored after the warm-up).  ``hmc`` keeps its adaptation
    schedule in its closure, so it is built and initialised here, inside the compiled program,
    whose structure then depends only on the model's structure and the settings."""
    init_kernel, sample_kernel = hmc(potential_fn_gen=_nuts_potential, algo="NUTS")
    dense_mass, target_accept_prob, max_tree_depth = options
    args = (model, u_map, L)

    def init(z, k):
        return init_kernel(z, num_warmup, dense_mass=dense_mass, target_accept_prob=target_accept_prob,
                           max_tree_depth=max_tree_depth, model_args=args, rng_key=k)

    def transition(st):
        return sample_kernel(st, model_args=args)

    if vectorized:
        init, transition = jax.vmap(init), jax.vmap(transition)
    start = init(z0, key)  # also sets the adaptation schedule in hmc's closure
    st = jax.lax.cond(resume, lambda: state, lambda: start)

    def stats_of(st):
        return (st.z, (st.diverging, st.num_steps, st.accept_prob, st.energy, st.potential_energy,
                       st.adapt_state.step_size))

    buffers = jax.tree_util.tree_map(lambda a: jnp.zeros((num_samples,) + a.shape, a.dtype),
                                     jax.eval_shape(stats_of, st))

    def body(i, carry):
        st, buffers = carry
        st = transition(st)
        if progress:
            jax.debug.callback(_tick, bar, st.i)
        buffers = jax.lax.cond(resume & (i < num_samples),
                               lambda b: jax.tree_util.tree_map(lambda buf, a: buf.at[i].set(a), b, stats_of(st)),
                               lambda b: b, buffers)
        return st, buffers

    st, (z, stats) = jax.lax.fori_loop(0, n_steps, body, (st, buffers))
    if vectorized:  # (draws, chains, ...) -> (chains, draws, ...)
        z, stats = jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), (z, stats))
    return st, z, stats


_STATIC = ("num_warmup", "num_samples", "options", "progress", "batch")


@partial(jax.jit, static_argnames=_STATIC)
def _nuts_batch(model, u_map, L, z0, keys, bar, state, resume, n_steps, num_warmup, num_samples, options, progress,
                batch):
    """NUTS for all chains on one device: vmapped in lockstep (``batch="vectorized"``) or one
    after another (``"sequential"``, ``lax.map``); see :func:`_run`."""
    if batch == "vectorized":
        return _run(model, u_map, L, z0, keys, bar, state, resume, n_steps, num_warmup, num_samples, options,
                    progress, True)
    return jax.lax.map(lambda a: _run(model, u_map, L, a[0], a[1], bar, a[2], resume, n_steps, num_warmup,
                                      num_samples, options, progress, False), (z0, keys, state))


@partial(jax.jit, static_argnames=("num_warmup", "options"))
def _nuts_start(model, u_map, L, z0, keys, num_warmup, options):
    """The chains' initial NUTS states (chains first): only its shape is used (``eval_shape``),
    as the placeholder ``state`` of the warm-up call."""
    init_kernel, _ = hmc(potential_fn_gen=_nuts_potential, algo="NUTS")
    dense_mass, target_accept_prob, max_tree_depth = options
    return jax.vmap(lambda z, k: init_kernel(z, num_warmup, dense_mass=dense_mass,
                                             target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                                             model_args=(model, u_map, L), rng_key=k))(z0, keys)


def _nuts_one(model, u_map, L, z0, key, bar, state, resume, n_steps, num_warmup, num_samples, options, progress):
    return _run(model, u_map, L, z0, key, bar, state, resume, n_steps, num_warmup, num_samples, options, progress,
                False)


# one chain per device; module-level so that its compiled program is reused between calls
_nuts_parallel = jax.pmap(_nuts_one, in_axes=(None, None, None, 0, 0, None, 0, None, None),
                          static_broadcasted_argnums=(9, 10, 11, 12))


def sample(scene, init=None, *, num_warmup=500, num_samples=1000, num_chains=4, seed=0, dense_mass=False,
           target_accept_prob=0.8, max_tree_depth=10, chain_method="auto", progress_bar=True,
           log_likelihood=True, whiten=True) -> Posterior:
    """Sample the joint posterior with NUTS, starting from the MAP.

    Parameters
    ----------
    scene : :class:`~bayesprof.Scene`
    init : :class:`MapResult`, optional
        The MAP to start from and whose covariance whitens the space; default: run
        :func:`fit_map` first.
    num_warmup, num_samples, num_chains : int
        Per chain.  Chains start at the MAP plus N(0, 0.5^2) in whitened units.
    dense_mass : bool
        Adapt a dense mass matrix (default: diagonal; the MAP covariance already whitens).
    chain_method : {"auto", "vectorized", "sequential", "parallel"}
        "vectorized" batches the chains through one render (good on GPUs and on a single CPU
        device); "sequential" runs them one after another in one program (memory of one
        chain); "parallel" runs each chain on its own device.  "auto" (default):
        "parallel" when JAX has a device per chain, else "vectorized".  On a multi-core CPU,
        ``numpyro.set_host_device_count(num_chains)`` at the start of the session (before JAX
        starts) gives one CPU device per chain (the ``bayesprof`` command does this): on the
        2-core benchmark machine 2 parallel chains gave 63 ESS/s against 53 vectorised
        (``benchmarks/RESULTS.md``).
    log_likelihood : bool
        Store each image's total log-likelihood per draw (one extra render per draw).
    progress_bar : bool
        One tqdm bar per phase, "NUTS warm-up" then "NUTS sampling", counting the transitions
        of all chains together (``num_chains x num_warmup``, then ``x num_samples``).
    whiten : bool
        Sample in coordinates whitened by the MAP covariance (default), i.e. start the mass
        matrix at that covariance; False: NumPyro's unconstrained coordinates, identity start.
    """
    model = scene.build() if hasattr(scene, "build") else scene
    if init is None:
        init = fit_map(model)
    if init.model is not model:
        raise ValueError("init comes from a different scene (or the scene changed after the fit); fit it again")
    u_map, L = _whitening(init, whiten)
    d = u_map.size
    if chain_method not in ("auto", "vectorized", "sequential", "parallel"):
        raise ValueError(f"chain_method must be 'auto', 'vectorized', 'sequential' or 'parallel', not {chain_method!r}")
    if chain_method == "auto":
        chain_method = "parallel" if num_chains > 1 and jax.local_device_count() >= num_chains else "vectorized"
    if chain_method == "parallel" and jax.local_device_count() < num_chains:
        raise ValueError(f"chain_method='parallel' needs a device per chain: {num_chains} chains, "
                         f"{jax.local_device_count()} devices (numpyro.set_host_device_count before JAX starts)")
    progress = _PhaseProgress(bool(progress_bar))
    options = (bool(dense_mass), float(target_accept_prob), int(max_tree_depth))
    key = jax.random.PRNGKey(seed)
    k_init, k_run = jax.random.split(key)
    z0 = 0.5 * jax.random.normal(k_init, (num_chains, d), dtype=u_map.dtype)
    keys = jax.random.split(k_run, num_chains)
    bar = jnp.asarray([progress.key])
    static = (int(num_warmup), int(num_samples), options, progress.enabled)
    if chain_method == "parallel":
        nuts = _nuts_parallel
    else:
        nuts = partial(_nuts_batch, batch=chain_method)
    placeholder = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype),
                                         _nuts_start.eval_shape(model, u_map, L, z0, keys, int(num_warmup), options))
    t0 = time.perf_counter()
    try:
        progress.start("warm-up", num_chains * num_warmup)
        state = jax.block_until_ready(nuts(model, u_map, L, z0, keys, bar, placeholder, False, int(num_warmup),
                                           *static)[0])
        t1 = time.perf_counter()
        progress.start("sampling", num_chains * num_samples)
        _, z, stats = jax.block_until_ready(nuts(model, u_map, L, z0, keys, bar, state, True, int(num_samples),
                                                 *static))
        t2 = time.perf_counter()
    finally:
        progress.close()
    post = _posterior(model, init, u_map, L, z, stats, num_warmup, log_likelihood, t2 - t1, t1 - t0, chain_method)
    if post.num_divergences:
        warnings.warn(f"NUTS: {post.num_divergences} divergent transitions out of {post.num_draws}; the posterior may "
                      "be biased (try target_accept_prob=0.95 or check the model)", UserWarning, stacklevel=2)
    return post


@partial(jax.jit, static_argnames=("num_warmup", "num_samples", "options"))
def _nuts_objects(models, u_map, L, z0, keys, state, resume, n_steps, num_warmup, num_samples, options):
    """:func:`_run` for a batch of objects (every argument with a leading object axis, the chains
    of each vectorised): each object adapts its own step size and mass matrix."""
    bar = jnp.zeros((1,), jnp.int32)
    return jax.vmap(lambda m, u, l, z, k, st: _run(m, u, l, z, k, bar, st, resume, n_steps, num_warmup, num_samples,
                                                   options, False, True))(models, u_map, L, z0, keys, state)


def sample_batch(models, fits, *, num_warmup=500, num_samples=500, num_chains=2, seeds=None, dense_mass=False,
                 target_accept_prob=0.8, max_tree_depth=10, batch_size=None, log_likelihood=False) -> list:
    """NUTS for many scene models of one structure (e.g. one galaxy per set of cut-outs), each
    from its own MAP: one compiled program for all of them, ``batch_size`` objects per call
    (vmapped; each object's chains vectorised), every object with its own step size and mass
    matrix.  The per-object counterpart of :func:`fit_map_batch`.

    models : list of :class:`~bayesprof.scene.SceneModel`
        Models of one structure (``model._structure``).
    fits : list of :class:`MapResult`
        Each model's MAP (its ``model``): the start and the whitening (as :func:`sample`).
    seeds : list of int, optional
        One per model (default 0, 1, ...): an object's draws depend on its own seed only, not
        on the batch it is in.
    batch_size : int, optional
        Objects per call (default: all).  A last, smaller batch is padded with copies of its
        last object (dropped).
    log_likelihood : bool
        Each image's log-likelihood per draw, as :func:`sample` (default off: catalogs rarely
        need it and it costs one render per draw).

    Other arguments as :func:`sample` (chains vectorised).  Returns one :class:`Posterior` per
    model, in order; its ``sampling_time_s`` and ``warmup_time_s`` are the batch's, shared
    equally."""
    models = list(models)
    if len(fits) != len(models):
        raise ValueError(f"sample_batch: {len(fits)} MAP results for {len(models)} models")
    if not models:
        return []
    for m, fit in zip(models, fits):
        if fit.model is not m:
            raise ValueError("sample_batch: each MAP result must come from its own model (fit.model)")
        if m._structure != models[0]._structure:
            raise ValueError("sample_batch: the models differ in structure; group them by model._structure")
    seeds = list(range(len(models))) if seeds is None else [int(k) for k in seeds]
    if len(seeds) != len(models):
        raise ValueError(f"sample_batch: {len(seeds)} seeds for {len(models)} models")
    options = (bool(dense_mass), float(target_accept_prob), int(max_tree_depth))
    size = len(models) if batch_size is None else max(1, min(int(batch_size), len(models)))
    out = []
    for a in range(0, len(models), size):
        chunk = list(zip(models[a:a + size], fits[a:a + size], seeds[a:a + size]))
        chunk += [chunk[-1]] * (size - len(chunk))
        starts = []
        for m, fit, seed in chunk:
            u_map, L = _whitening(fit)
            k_init, k_run = jax.random.split(jax.random.PRNGKey(seed))
            z0 = 0.5 * jax.random.normal(k_init, (num_chains, u_map.size), dtype=u_map.dtype)
            starts.append((m, u_map, L, z0, jax.random.split(k_run, num_chains)))
        args = jax.tree.map(lambda *xs: jnp.stack(xs), *starts)
        placeholder = jax.tree.map(
            lambda a: jnp.zeros(a.shape, a.dtype),
            jax.eval_shape(jax.vmap(lambda m, u, l, z, k: _nuts_start(m, u, l, z, k, int(num_warmup), options)),
                           *args))
        static = (int(num_warmup), int(num_samples), options)
        t0 = time.perf_counter()
        state = jax.block_until_ready(_nuts_objects(*args, placeholder, False, int(num_warmup), *static)[0])
        t1 = time.perf_counter()
        _, z, stats = jax.block_until_ready(_nuts_objects(*args, state, True, int(num_samples), *static))
        t2 = time.perf_counter()
        n = len(models[a:a + size])
        z, stats = np.asarray(z), [np.asarray(x) for x in stats]
        for i, (m, fit, _) in enumerate(chunk[:n]):
            out.append(_posterior(m, fit, starts[i][1], starts[i][2], z[i], [x[i] for x in stats], num_warmup,
                                  log_likelihood, (t2 - t1) / n, (t1 - t0) / n, "vectorized"))
    return out


def _whitening(init, whiten=True):
    """``(u_map, L)``: the MAP in unconstrained coordinates and the factor of the whitened
    coordinates ``u = u_map + L z`` (the Cholesky factor of the MAP covariance; a parameter
    whose variance is not finite or not positive gets scale 1)."""
    u_map = jnp.asarray(init.u)
    cov = np.asarray(init.cov_u)
    d = u_map.size
    if not whiten:
        return u_map, jnp.eye(d)
    # Cholesky factor of the correlation matrix, rescaled per parameter: a jitter relative to
    # each parameter's own variance, so a sky level of 1e-12 counts keeps its true scale
    s = np.sqrt(np.maximum(np.diag(cov), 0.0))
    s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
    try:
        L = s[:, None] * np.linalg.cholesky(cov / np.outer(s, s) + 1e-10 * np.eye(d))
    except np.linalg.LinAlgError:
        L = np.diag(s)
    if not np.all(np.isfinite(L)):
        L = np.diag(s)
    return u_map, jnp.asarray(L)


def _posterior(model, init, u_map, L, z, stats, num_warmup, log_likelihood, sampling_time, warmup_time,
               chain_method):
    """The :class:`Posterior` of whitened draws ``z`` (chains, draws, size) and NUTS's statistics
    (``_NUTS_FIELDS``, each (chains, draws)): physical site values, derived values, each image's
    log-likelihood per draw (``log_likelihood``), timings."""
    extra = dict(zip(_NUTS_FIELDS, (np.asarray(a) for a in stats)))  # (chains, draws)
    z = np.asarray(z)
    C, S, d = z.shape
    u = np.asarray(u_map)[None, None, :] + z @ np.asarray(L).T
    flat = _constrain_draws(model, jnp.asarray(u.reshape(C * S, d)))
    posterior = {}
    for s in model.sites:
        if s.fixed is not None:
            continue
        posterior[s.name] = np.asarray(flat[s.name]).reshape((C, S) + s.shape)
        if s.is_angle:
            posterior[s.name] = wrap_angles(posterior[s.name], 180.0)
    if model.derived:
        derived = _derived_draws(model, jnp.asarray(u.reshape(C * S, d)))
        posterior.update({name: np.asarray(a).reshape(C, S) for name, a in derived.items()})
    loglik = None
    t3 = time.perf_counter()
    if log_likelihood:
        ll = np.asarray(_draw_log_likelihoods(model, jnp.asarray(u.reshape(C * S, d)))).reshape(C, S, -1)
        loglik = {f"obs[{im.name}]": ll[..., k] for k, im in enumerate(model.images)}
    loglik_time = time.perf_counter() - t3

    stats = {
        "diverging": extra["diverging"],
        "n_steps": extra["num_steps"],
        "tree_depth": np.floor(np.log2(extra["num_steps"] + 1)).astype(int),
        "acceptance_rate": extra["accept_prob"],
        "energy": extra["energy"],
        "lp": -extra["potential_energy"],
        "step_size": extra["step_size"],
    }
    post = Posterior.from_samples(model, posterior, stats, loglik, map_result=init, sampling_time_s=sampling_time,
                                  num_warmup=num_warmup)
    post.tree.attrs["warmup_time_s"] = float(warmup_time)
    post.tree.attrs["chain_method"] = chain_method
    post.tree.attrs["log_likelihood_time_s"] = float(loglik_time)
    return post
