"""Priors: weakly informative defaults, the periodic position-angle prior, and the
least-squares form of any prior used by the Levenberg–Marquardt fitter.

Every latent site has a NumPyro distribution.  Inference works in NumPyro's
unconstrained space ``u`` (``x = biject_to(support)(u)``); the negative log density of a
site in that space, including the Jacobian of the transform, is::

    V(u) = -log p(x(u)) - log |dx/du|.

For Levenberg–Marquardt every such term is written as a residual::

    r(u) = sign(u - m) * sqrt(2 (V(u) - V(m))),        m = argmin V,

so that ``0.5 * sum(r**2)`` equals the prior part of NumPyro's potential energy up to a
constant (exactly ``(u - mu) / sigma`` for Normal and LogNormal priors).  This holds for
priors whose ``V`` has one minimum in ``u`` — all of NumPyro's usual unimodal
distributions (Normal, LogNormal, Uniform, HalfNormal, Gamma, Beta, TruncatedNormal, ...).

Default priors are declared by each component class per parameter
(:class:`bayesprof.components.Parameter`; the table is in :mod:`bayesprof.components`) and
centred on the images' moments and aperture fluxes (:mod:`bayesprof.estimate`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

__all__ = ["PeriodicUniform", "lognormal_peaked_at", "SitePrior", "PriorBlocks", "describe", "from_description"]


class PeriodicUniform(dist.Normal):
    """Uniform prior for an angle of period ``period`` (degrees), sampled unwrapped.

    A position angle is periodic (PA and PA + 180 deg are one ellipse), and a prior with
    edges (e.g. Uniform(0, 180)) splits a posterior near the edge into two pieces.  Here
    the angle lives on the whole real line with density Normal(loc, period): folded onto
    one period this is uniform to 1e-8 (a wrapped normal with sigma = period), and the
    likelihood is periodic, so the folded posterior is exact.  Results are reported folded
    about their circular mean (see :func:`bayesprof.results.wrap_angles`), so a posterior at
    PA = 179 deg stays one piece (values like 178.6 ... 180.4).
    """

    def __init__(self, period=180.0, loc=90.0, *, validate_args=None):
        self.period = float(period)
        super().__init__(loc, self.period, validate_args=validate_args)

    def __repr__(self):
        return f"PeriodicUniform(period={self.period:g})"


def lognormal_peaked_at(peak, width):
    """A LogNormal prior whose density over ``x`` peaks at ``peak``: ``LogNormal(log(peak) +
    width**2, width)``, i.e. ``p(x)`` proportional to ``exp(-ln(x / peak)**2 / (2 width**2))``.

    A LogNormal(log(peak), width) density carries a factor ``1 / x``; its gradient ``-1 / x`` at
    the peak pulls the posterior mode in physical coordinates (the reported MAP) down by
    ``sigma_x / x`` standard deviations in that parameter, and more in parameters correlated with
    it (a Sersic's re, n and flux: -0.3 to -0.5 sigma at S/N 25-90).  This one is flat at
    ``peak``: the mode moves by ``-(sigma_x / x) ln(x / peak) / width**2`` sigma, zero when the
    estimate is right.  Its median is ``peak * exp(width**2)`` and ``Phi(width)`` of its mass lies
    above ``peak``: the estimates it is centred on (aperture flux, moment size) tend to fall short.
    """
    return dist.LogNormal(jnp.log(jnp.asarray(peak, dtype=float)) + width**2, width)


class SitePrior:
    """A site's prior with its unconstrained transform and the mode of its potential (used by
    :class:`PriorBlocks` for the least-squares residual).

    ``shape``: the site's value shape (``()`` for scalars, ``(K,)`` for spline knots).
    """

    def __init__(self, name: str, prior, shape=()):
        if not isinstance(prior, dist.Distribution):
            raise TypeError(f"prior of {name!r} must be a numpyro distribution, not {type(prior).__name__}")
        if prior.event_shape != ():
            raise ValueError(f"prior of {name!r}: give an elementwise (batch) distribution, not event shape "
                             f"{prior.event_shape}")
        self.name = name
        self.shape = tuple(shape)
        self.prior = prior
        self.transform = biject_to(prior.support)
        if prior.batch_shape not in ((), self.shape):
            try:
                self.prior = prior.expand(self.shape)
            except ValueError:
                raise ValueError(f"prior of {name!r} has batch shape {prior.batch_shape}; the site has shape "
                                 f"{self.shape}") from None
        self.size = int(np.prod(self.shape, dtype=int))
        self._mode, self._v_mode, self._curv = self._find_mode()

    # -- the prior in unconstrained space
    def potential(self, u):
        """Elementwise V(u) = -log p(x(u)) - log|dx/du|."""
        return _site_potential(self.prior, jnp.asarray(u, dtype=float))

    def contains(self, x) -> bool:
        """Whether value(s) ``x`` lie strictly inside the prior's support (finite log density and a
        finite unconstrained value: a value on a closed bound, q = 1 with Uniform(0.15, 1), has
        no finite unconstrained image)."""
        return bool(_strictly_inside(self.prior, jnp.asarray(x, dtype=float)))

    def unconstrain(self, x):
        return self.transform.inv(jnp.asarray(x, dtype=float))

    def _find_mode(self):
        """argmin of V elementwise (Newton with backtracking), V there and V''."""
        shape = self.shape
        d = self.prior
        closed = None
        if type(d) in (dist.Normal, PeriodicUniform, dist.LogNormal):  # V = ((u - loc) / scale)^2 / 2 + c
            closed = d.loc, 1.0 / d.scale**2
        elif type(d) is dist.Uniform:  # sigmoid transform: V = softplus(u) + softplus(-u) + c
            closed = 0.0, 0.5
        if closed is not None:
            u = jnp.broadcast_to(jnp.asarray(closed[0], dtype=float), shape)
            return u, self.potential(u), jnp.broadcast_to(jnp.asarray(closed[1], dtype=float), shape)
        try:
            start = self.prior.mean
            start = jnp.where(jnp.isfinite(start), start, self.prior.sample(jax.random.PRNGKey(0)))
        except (NotImplementedError, AttributeError):
            start = self.prior.sample(jax.random.PRNGKey(0))
        u = jnp.broadcast_to(self.unconstrain(start), shape).astype(float)
        u = jnp.where(jnp.isfinite(u), u, 0.0)
        total = lambda v: jnp.sum(self.potential(v))  # noqa: E731
        grad = jax.grad(total)
        curv = lambda v: jax.jvp(grad, (v,), (jnp.ones_like(v),))[1]  # noqa: E731  (diagonal Hessian)
        V = self.potential(u)
        for _ in range(100):
            g, h = grad(u), curv(u)
            step = jnp.where(h > 0, -g / jnp.where(h > 0, h, 1.0), -jnp.sign(g))
            for _ in range(30):
                u_new = u + step
                V_new = self.potential(u_new)
                better = V_new <= V
                if bool(jnp.all(better | (jnp.abs(step) < 1e-14))):
                    break
                step = jnp.where(better, step, 0.5 * step)
            u, V = jnp.where(V_new <= V, u_new, u), jnp.minimum(V_new, V)
            if bool(jnp.all(jnp.abs(step) < 1e-12 * (1 + jnp.abs(u)))):
                break
        return u, V, jnp.maximum(curv(u), 0.0)


# Compiled once per distribution structure and value shape: a scene's set-up checks every site's
# prior (support, potential at the mode), and run eagerly each check is dozens of JAX dispatches.
@jax.jit
def _site_potential(prior, u):
    """Elementwise V(u) = -log p(x(u)) - log|dx/du| of a distribution at unconstrained ``u``."""
    t = biject_to(prior.support)
    x = t(u)
    return -jnp.broadcast_to(prior.log_prob(x) + t.log_abs_det_jacobian(u, x), jnp.shape(u))


@jax.jit
def _strictly_inside(prior, x):
    """Whether every entry of ``x`` lies in the support with a finite log density and a finite
    unconstrained value."""
    inside = jnp.all(prior.support(x))
    finite = jnp.all(jnp.isfinite(prior.log_prob(x))) & jnp.all(jnp.isfinite(biject_to(prior.support).inv(x)))
    return inside & finite


def _leaf_names(d, n_leaves, prefix=""):
    """Names of the pytree leaves of the distribution ``d`` in their flattened order (field
    names, nested ones dotted); positional names if its fields cannot be matched to its leaves."""
    names = []
    fields = getattr(type(d), "gather_pytree_data_fields", None)
    if fields is not None:
        for field in fields():
            value = d.__dict__.get(field)
            if isinstance(value, dist.Distribution):
                names += _leaf_names(value, len(jax.tree_util.tree_leaves(value)), f"{prefix}{field}.")
            else:
                k = len(jax.tree_util.tree_leaves(value))
                names += [f"{prefix}{field}"] if k == 1 else [f"{prefix}{field}.{j}" for j in range(k)]
    if len(names) != n_leaves or len(set(names)) != n_leaves:
        names = [f"{prefix}{j:03d}" for j in range(n_leaves)]
    return tuple(names)


@jax.tree_util.register_pytree_node_class
class PriorBlocks:
    """The priors of all latent sites as functions of the flat unconstrained vector ``u``,
    vectorised: scalar sites whose distributions have one pytree structure (type and static
    fields, e.g. every ``Normal``, every ``Uniform``) form one block whose parameters are stacked
    arrays and whose density, transform and residual are one ``vmap`` over its entries; a vector
    site (spline knots) is a block of its own, evaluated as a whole.  So the traced program grows
    with the number of prior *kinds*, not of sites.  A pytree: the distributions' parameters
    are leaves, so scenes whose priors differ only in value share compiled code.

    ``priors``: the :class:`SitePrior` of every latent site, in the order of ``u``.
    """

    def __init__(self, priors):
        starts = np.cumsum([0] + [p.size for p in priors])
        groups = {}
        self.static, self.arrays = [], []
        for p, i in zip(priors, starts[:-1]):
            leaves, treedef = jax.tree_util.tree_flatten(p.prior)
            if p.shape != ():  # a vector site: its (expanded) distribution as a whole
                self._add(treedef, False, [np.asarray(x) for x in leaves], np.arange(i, i + p.size), [p])
            else:
                groups.setdefault(treedef, []).append((int(i), p, leaves))
        for treedef, members in groups.items():
            leaves = [np.stack([np.asarray(m[2][j], dtype=float) for m in members])
                      for j in range(len(members[0][2]))]
            self._add(treedef, True, leaves, np.array([m[0] for m in members]), [m[1] for m in members])

    def _add(self, treedef, vmapped, leaves, index, priors):
        # the leaves by name (a dict: flattened in sorted order), so that the compiled program's
        # arguments come in the same order in every process; NumPyro flattens a distribution's
        # fields in the order of a Python set, which changes with the hash seed
        names = _leaf_names(priors[0].prior, len(leaves))
        self.static.append((treedef, vmapped, names))

        def flat(name):
            return np.concatenate([np.reshape(np.asarray(getattr(p, name), dtype=float), (-1,)) for p in priors])
        self.arrays.append({"leaves": dict(zip(names, leaves)), "index": np.asarray(index), "mode": flat("_mode"),
                            "v_mode": flat("_v_mode"), "curv": flat("_curv")})

    def tree_flatten(self):
        return (self.arrays,), tuple(self.static)

    @classmethod
    def tree_unflatten(cls, static, children):
        obj = object.__new__(cls)
        obj.static, (obj.arrays,) = list(static), children
        return obj

    def _blocks(self):
        return zip(self.static, self.arrays)

    @staticmethod
    def _each(static, block, f, *args):
        """``f(distribution, *entries)`` for the entries of a block: one vmap over a block of
        scalar sites, one call for a vector site."""
        treedef, vmapped, names = static

        def one(leaves, *xs):
            return f(jax.tree_util.tree_unflatten(treedef, [leaves[n] for n in names]), *xs)
        return jax.vmap(one)(block["leaves"], *args) if vmapped else one(block["leaves"], *args)

    @staticmethod
    def _transform(d, u):
        return biject_to(d.support)(u)

    @staticmethod
    def _potential(d, u):
        t = biject_to(d.support)
        x = t(u)
        return -jnp.broadcast_to(d.log_prob(x) + t.log_abs_det_jacobian(u, x), jnp.shape(u))

    def constrain(self, u):
        """Physical values (flat, the order of ``u``) of the flat unconstrained vector ``u``."""
        x = jnp.zeros_like(u)
        for st, b in self._blocks():
            x = x.at[b["index"]].set(self._each(st, b, self._transform, u[b["index"]]))
        return x

    def unconstrain(self, x):
        """Inverse of :meth:`constrain`."""
        u = jnp.zeros_like(x)
        for st, b in self._blocks():
            u = u.at[b["index"]].set(self._each(st, b, lambda d, xx: biject_to(d.support).inv(xx), x[b["index"]]))
        return u

    def inside(self, x):
        """Per entry of the flat physical vector ``x``: strictly inside its prior's support (finite
        log density and a finite unconstrained value), as :meth:`SitePrior.contains`."""
        ok = jnp.ones(x.shape, bool)

        def check(d, xx):
            return d.support(xx) & jnp.isfinite(d.log_prob(xx)) & jnp.isfinite(biject_to(d.support).inv(xx))
        for st, b in self._blocks():
            ok = ok.at[b["index"]].set(self._each(st, b, check, x[b["index"]]))
        return ok

    def potential(self, u):
        """Sum over latent entries of V(u) = -log p(x(u)) - log|dx/du| (NumPyro's prior potential)."""
        total = 0.0
        for st, b in self._blocks():
            total = total + jnp.sum(self._each(st, b, self._potential, u[b["index"]]))
        return total

    def residuals(self, u):
        """The least-squares prior residuals ``sign(u - m) sqrt(2 (V(u) - V(m)))`` (the module
        docstring), entry ``i`` a function of ``u[i]`` only; where ``V - V(m)`` underflows,
        the quadratic limit ``(u - m) sqrt(V''(m))``."""
        r = jnp.zeros_like(u)
        for st, b in self._blocks():
            uu = u[b["index"]]
            d = uu - b["mode"]
            excess = self._each(st, b, self._potential, uu) - b["v_mode"]
            pos = excess > 1e-12
            root = jnp.sqrt(2.0 * jnp.where(pos, excess, 1.0))
            r = r.at[b["index"]].set(jnp.where(pos, jnp.sign(d) * root, d * jnp.sqrt(b["curv"])))
        return r


# ----------------------------------------------------------------------------- (de)serialising
_DISTRIBUTIONS = {name: getattr(dist, name) for name in (
    "Normal", "LogNormal", "Uniform", "HalfNormal", "HalfCauchy", "Cauchy", "StudentT", "Gamma", "Beta",
    "TruncatedNormal", "Exponential", "Laplace", "LogUniform", "InverseGamma", "ImproperUniform")}


def describe(prior) -> dict:
    """A JSON/YAML-ready description ``{"dist": name, **parameters}`` of a prior."""
    if isinstance(prior, PeriodicUniform):
        return {"dist": "PeriodicUniform", "period": prior.period, "loc": _plain(prior.loc)}
    name = type(prior).__name__
    if name.startswith("TwoSidedTruncatedDistribution") or name.startswith("LeftTruncated"):
        base = prior.base_dist
        return {"dist": "TruncatedNormal", "loc": _plain(base.loc), "scale": _plain(base.scale),
                "low": _plain(getattr(prior, "low", None)), "high": _plain(getattr(prior, "high", None))}
    if name not in _DISTRIBUTIONS:
        raise ValueError(f"cannot save a {name} prior in a scene file; use one of {sorted(_DISTRIBUTIONS)}")
    params = {k: _plain(getattr(prior, k)) for k in prior.arg_constraints if hasattr(prior, k)}
    if name == "Normal":
        params = {"loc": params["loc"], "scale": params["scale"]}
    return {"dist": name, **params}


def from_description(desc: dict):
    """The prior described by :func:`describe`."""
    desc = dict(desc)
    try:
        name = desc.pop("dist")
    except KeyError:
        raise ValueError(f"prior {desc!r} has no 'dist' key") from None
    if name == "PeriodicUniform":
        return PeriodicUniform(**desc)
    if name not in _DISTRIBUTIONS:
        raise ValueError(f"unknown prior distribution {name!r}; known: {sorted(_DISTRIBUTIONS) + ['PeriodicUniform']}")
    try:
        return _DISTRIBUTIONS[name](**{k: jnp.asarray(v, dtype=float) for k, v in desc.items() if v is not None})
    except TypeError as err:
        raise ValueError(f"bad parameters for prior {name}: {desc} ({err})") from None


def _plain(v):
    if v is None:
        return None
    a = np.asarray(v, dtype=float)
    return float(a) if a.ndim == 0 else a.tolist()


def prior_text(prior) -> str:
    """E.g. ``Uniform(low=8, high=3)``: the distribution and its arguments, for messages."""
    try:
        d = describe(prior)
    except ValueError:
        return type(prior).__name__
    name = d.pop("dist")
    return f"{name}({', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}' for k, v in d.items())})"


def support_text(prior) -> str:
    s = prior.support
    if isinstance(s, constraints._Interval):
        return f"[{float(np.min(s.lower_bound)):g}, {float(np.max(s.upper_bound)):g}]"
    if hasattr(s, "lower_bound") and not hasattr(s, "upper_bound"):
        return f"> {float(np.min(s.lower_bound)):g}"
    if s is constraints.real or isinstance(s, type(constraints.real)):
        return "the real line"
    return str(s)
