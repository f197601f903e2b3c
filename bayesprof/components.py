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
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from . import profiles

__all__ = ["Sersic", "Exponential", "DeVaucouleurs", "Gaussian", "Moffat", "PointSource", "Component"]


def _pytree(cls):
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    return jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])


class Component:
    """Base class: a centred, elliptical, unit-flux radial profile scaled by ``flux``."""

    #: True for components whose light is the PSF itself (no extended profile)
    is_point = False

    def log_density(self, rho):
        """log of the circular unit-flux profile p(rho) [1/arcsec^2] at elliptical radius rho."""
        raise NotImplementedError  # pragma: no cover - interface

    def enclosed(self, rho):
        """Fraction of the flux inside elliptical radius rho (arcsec)."""
        raise NotImplementedError  # pragma: no cover - interface

    def replace(self, **changes):
        """A copy with some parameters changed."""
        return dataclasses.replace(self, **changes)


@_pytree
class Sersic(Component):
    """Sersic profile I(rho) = Ie exp(-b_n [(rho/re)^(1/n) - 1])."""

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


class _FixedIndexSersic(Component):
    """A Sersic profile whose index is fixed by the class (``sersic_n``)."""

    sersic_n = 1.0

    def log_density(self, rho):
        return profiles.sersic_log_density(rho, self.re, self.sersic_n)

    def enclosed(self, rho):
        return profiles.sersic_enclosed(rho, self.re, self.sersic_n)


@_pytree
class Exponential(_FixedIndexSersic):
    """Exponential disc: a Sersic profile with n = 1."""

    xi: float = 0.0
    eta: float = 0.0
    flux: float = 1.0
    re: float = 1.0
    q: float = 1.0
    pa: float = 0.0

    sersic_n = 1.0


@_pytree
class DeVaucouleurs(_FixedIndexSersic):
    """de Vaucouleurs r^(1/4) profile: a Sersic profile with n = 4."""

    xi: float = 0.0
    eta: float = 0.0
    flux: float = 1.0
    re: float = 1.0
    q: float = 1.0
    pa: float = 0.0

    sersic_n = 4.0


@_pytree
class Gaussian(Component):
    """Elliptical Gaussian with major-axis FWHM ``fwhm`` (arcsec)."""

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
