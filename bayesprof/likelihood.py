"""Pixel likelihoods: one object per image, so that images from different instruments can be
modelled with different noise (e.g. Gaussian sky-limited CCD images beside Poisson-limited
photon counts, or a robust Student-t for an image with artefacts).

Each likelihood gives, for an image's fitted pixels (counts/pixel, ``data[y, x]``):

* :meth:`~Likelihood.log_prob`: the log density of the data per pixel;
* :meth:`~Likelihood.fisher_weight`: ``w`` such that ``sum(w**2 * (dm/dtheta)^2)`` is the
  expected (Fisher) information of the pixels about a parameter ``theta``: the weights of the
  Gauss–Newton curvature used for the MAP's covariance;
* :meth:`~Likelihood.observe`: the image's observed site of the NumPyro model.

:class:`Normal` is the default; it is the one likelihood whose negative log density is half a
sum of squares, so only images with it can be fitted by Levenberg–Marquardt
(:attr:`~Likelihood.least_squares`); scenes with any other use optax's L-BFGS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

__all__ = ["Likelihood", "Normal", "StudentT", "Poisson", "as_likelihood", "NAMES"]


@dataclass(frozen=True)
class Likelihood:
    """Base class of the pixel likelihoods (frozen and hashable: part of a model's structure)."""

    name: ClassVar[str] = ""
    least_squares: ClassVar[bool] = False

    def log_prob(self, data, model, sigma):
        """Log density of ``data`` given ``model`` (counts/pixel) and the noise ``sigma``
        (counts/pixel), per pixel."""
        raise NotImplementedError

    def fisher_weight(self, model, sigma):
        """Per pixel, the square root of the expected information per unit change of the model
        (1 / counts)."""
        raise NotImplementedError

    def observe(self, name, model, sigma, good, data):
        """The NumPyro observed site ``name`` of an image: ``data`` at the pixels where ``good``."""
        numpyro.factor(name, jnp.sum(jnp.where(good, self.log_prob(data, model, sigma), 0.0)))

    def config(self):
        """The scene-file form (:mod:`bayesprof.scenefile`): a name, or ``{name: dof}``."""
        return self.name


@dataclass(frozen=True)
class Normal(Likelihood):
    """Gaussian noise with the image's variance map (sky- or read-noise-limited images)."""

    name: ClassVar[str] = "normal"
    least_squares: ClassVar[bool] = True

    def log_prob(self, data, model, sigma):
        return dist.Normal(model, sigma).log_prob(data)

    def fisher_weight(self, model, sigma):
        return 1.0 / sigma

    def observe(self, name, model, sigma, good, data):
        numpyro.sample(name, dist.Normal(model, sigma).mask(good), obs=data)


@dataclass(frozen=True)
class StudentT(Likelihood):
    """Student-t noise of ``dof`` degrees of freedom and scale the image's sigma: robust to
    outliers (cosmic rays, unmasked artefacts).  Its Fisher information per pixel is
    ``(dof + 1) / (dof + 3) / sigma^2``."""

    dof: float = 5.0
    name: ClassVar[str] = "student_t"

    def __post_init__(self):
        dof = float(self.dof)
        if not dof > 0 or dof == float("inf"):
            raise ValueError(f"the Student-t likelihood needs finite dof > 0, not {self.dof!r}")
        object.__setattr__(self, "dof", dof)

    def log_prob(self, data, model, sigma):
        return dist.StudentT(self.dof, model, sigma).log_prob(data)

    def fisher_weight(self, model, sigma):
        return jnp.sqrt((self.dof + 1.0) / (self.dof + 3.0)) / sigma

    def observe(self, name, model, sigma, good, data):
        numpyro.sample(name, dist.StudentT(self.dof, model, sigma).mask(good), obs=data)

    def config(self):
        return {self.name: self.dof}


@dataclass(frozen=True)
class Poisson(Likelihood):
    """Poisson counts (data in photons or electrons, e.g. X-ray or UV photon-counting images);
    the variance map is not used.  The model is clipped at 1e-30 counts."""

    name: ClassVar[str] = "poisson"

    def log_prob(self, data, model, sigma):
        m = jnp.clip(model, 1e-30)
        return data * jnp.log(m) - m - jax.scipy.special.gammaln(data + 1.0)

    def fisher_weight(self, model, sigma):
        return 1.0 / jnp.sqrt(jax.lax.stop_gradient(jnp.clip(model, 1e-30)))


NAMES = {cls.name: cls for cls in (Normal, StudentT, Poisson)}


def as_likelihood(spec, dof=5.0) -> Likelihood:
    """A :class:`Likelihood` from ``spec``: one already, a name (``"normal"``, ``"student_t"``
    with ``dof`` degrees of freedom, ``"poisson"``), or a scene file's ``{"student_t": dof}``.
    ValueError in one line otherwise."""
    if isinstance(spec, Likelihood):
        return spec
    if isinstance(spec, dict) and len(spec) == 1:
        (name, arg), = spec.items()
        if name == StudentT.name:
            return StudentT(arg)
        spec = name
    if isinstance(spec, str) and spec in NAMES:
        return StudentT(dof) if spec == StudentT.name else NAMES[spec]()
    raise ValueError(f"likelihood must be one of {tuple(NAMES)} or a bayesprof.likelihood.Likelihood, not {spec!r}")
