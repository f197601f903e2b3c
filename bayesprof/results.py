"""Posterior results as arviz DataTrees: summaries, magnitudes, corner plots, NetCDF.

A :class:`Posterior` wraps an arviz (>= 1.0) ``DataTree`` with the groups

``posterior``
    one variable per parameter, named as its site without the bracket
    (``gal.n``, ``gal.flux``, ``sky.level``), with a ``band``, ``image`` or
    ``knot`` dimension where the site varies; plus derived AB magnitudes
    ``<source>.mag`` (``23.9 - 2.5 log10(flux / uJy)``; NaN where a flux is <= 0)
``sample_stats``
    NUTS diagnostics: ``diverging``, ``tree_depth``, ``n_steps``,
    ``acceptance_rate``, ``energy``, ``lp``, ``step_size``
``log_likelihood``
    each image's total log-likelihood per draw, ``obs[<image>]``
``observed_data``
    the pixels of every image, ``obs[<image>]`` (dims ``<image>_y, <image>_x``)

Position angles are folded about their circular mean (:func:`wrap_angles`), so a posterior
near PA = 0/180 deg stays in one piece.
"""

from __future__ import annotations

import json

import numpy as np

from .profiles import AB_ZEROPOINT_UJY

__all__ = ["Posterior", "wrap_angles", "flux_to_mag_sigma", "load_posterior"]



def wrap_angles(a, period=180.0):
    """Fold angles (degrees) into ``[c - period/2, c + period/2)`` about their circular mean c.

    The circular mean is taken over all leading (chain, draw) axes, separately for each
    trailing element; ``c`` itself lies in ``[0, period)``.
    """
    a = np.asarray(a, dtype=float)
    flat = a.reshape((-1,) + a.shape[2:]) if a.ndim >= 2 else a.reshape(-1)
    ang = 2 * np.pi * flat / period
    c = np.arctan2(np.mean(np.sin(ang), axis=0), np.mean(np.cos(ang), axis=0)) * period / (2 * np.pi)
    c = np.mod(c, period)
    return c + np.mod(a - c + period / 2, period) - period / 2


def sky_position_table(names, xi, eta, xi_err, eta_err, reference, method=""):
    """An astropy Table of fitted centres: ``source``, ``ra``, ``dec`` (deg, ICRS) and
    ``ra_err``, ``dec_err`` (arcsec on the sky: the errors of the tangent-plane offsets xi,
    eta east and north of ``reference``, so ``ra_err`` already includes cos(dec))."""
    from astropy import units as u
    from astropy.table import Table

    from .image import sky_from_offsets

    pos = sky_from_offsets(np.asarray(xi, float), np.asarray(eta, float), reference).icrs
    table = Table({"source": list(names), "ra": pos.ra.deg * u.deg, "dec": pos.dec.deg * u.deg,
                   "ra_err": np.asarray(xi_err, float) * u.arcsec, "dec_err": np.asarray(eta_err, float) * u.arcsec},
                  meta={"method": method})
    table["ra"].format = table["dec"].format = ".8f"
    table["ra_err"].format = table["dec_err"].format = ".3g"
    return table


def _round_sig(value, figures):
    """``value`` rounded to ``figures`` significant figures (non-finite values unchanged)."""
    value = float(value)
    if not np.isfinite(value) or value == 0:
        return value
    return round(value, int(figures - 1 - np.floor(np.log10(abs(value)))))


def _interval_text(med, lo, hi):
    """``med +(hi - med) / -(med - lo)`` to the decimal of the spread's second significant figure;
    values below 1e-3 or from 1e5 up in units of a common power of ten,
    ``(3.56 +0.16 / -0.18) 1e-13``, so that a title stays short."""
    spread = min(hi - med, med - lo)
    if not spread > 0:
        return f"{med:.4g}"
    e = int(np.floor(np.log10(max(abs(med), spread))))
    scale = 10.0**e if (e < -3 or e >= 5) else 1.0
    d = int(max(0, 1 - np.floor(np.log10(spread / scale))))
    text = f"{med / scale:.{d}f} +{(hi - med) / scale:.{d}f} / -{(med - lo) / scale:.{d}f}"
    return text if scale == 1.0 else f"({text}) 1e{e}"


def flux_to_mag_sigma(flux, sigma):
    """(AB magnitude, 1-sigma) of a flux in uJy and its 1-sigma (first-order propagation)."""
    flux = float(flux)
    if flux <= 0:
        return float("nan"), float("nan")
    return AB_ZEROPOINT_UJY - 2.5 * np.log10(flux), 2.5 / np.log(10) * float(sigma) / flux


def _mag(flux):
    flux = np.asarray(flux, dtype=float)
    out = np.full(flux.shape, np.nan)
    pos = flux > 0
    out[pos] = AB_ZEROPOINT_UJY - 2.5 * np.log10(flux[pos])
    return out


class Posterior:
    """Posterior draws of a scene's parameters (an arviz DataTree in :attr:`tree`)."""

    def __init__(self, tree):
        self.tree = tree

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_samples(cls, model, samples, stats, loglik=None, *, map_result=None, sampling_time_s=None,
                     num_warmup=None):
        """Assemble the DataTree from per-site draws ``samples[site] -> (chain, draw, ...)``."""
        import arviz as az

        variables = list(model.sites) + list(model.derived.values())
        bands = list(dict.fromkeys(s.label for s in variables if s.dim == "band"))
        image_names = list(dict.fromkeys(s.label for s in variables if s.dim == "image"))
        groups: dict[str, list] = {}
        for s in variables:
            if s.name in samples:
                groups.setdefault(s.base, []).append(s)
        post, dims, coords = {}, {}, {}
        for base, sites in groups.items():
            s0 = sites[0]
            if s0.dim is None:
                post[base] = samples[s0.name]
                if s0.shape:
                    dim = f"{base}_term" if s0.poly is not None else "knot"
                    dims[base] = [dim]
                    coords.setdefault(dim, np.arange(s0.shape[0]))
                continue
            labels = [s.label for s in sites]
            full = bands if s0.dim == "band" else image_names
            dim = s0.dim if labels == full else f"{base}_{s0.dim}"
            post[base] = np.stack([samples[s.name] for s in sites], axis=-1)
            dims[base] = [dim]
            coords[dim] = labels
            if s0.param == "flux":
                mag = base[: -len("flux")] + "mag"
                post[mag] = _mag(post[base])
                dims[mag] = [dim]
        data = {"posterior": post, "sample_stats": stats}
        if loglik is not None:
            data["log_likelihood"] = loglik
        observed = {}
        for im in model.images:
            key = f"obs[{im.name}]"
            observed[key] = np.where(im.mask, np.nan, im.data)
            dims[key] = [f"{im.name}_y", f"{im.name}_x"]
        data["observed_data"] = observed
        ref = model.reference.icrs
        attrs = {"creator": "bayesprof", "likelihood": str(model.scene.likelihood),
                 "reference": json.dumps([float(ref.ra.deg), float(ref.dec.deg)]),
                 "images": json.dumps([im.name for im in model.images]),
                 "bands": json.dumps([im.band for im in model.images]),
                 "times": json.dumps([im.time for im in model.images])}
        if sampling_time_s is not None:
            attrs["sampling_time_s"] = float(sampling_time_s)
        if num_warmup is not None:
            attrs["num_warmup"] = int(num_warmup)
        if map_result is not None:
            attrs["map_values"] = json.dumps({k: np.asarray(v).tolist() for k, v in map_result.values.items()})
            attrs["map_reduced_chi2"] = float(map_result.reduced_chi2)
        tree = az.from_dict(data, dims=dims, coords=coords)
        tree.attrs.update(attrs)
        return cls(tree)

    # ------------------------------------------------------------------ access
    @property
    def posterior(self):
        return self.tree["posterior"]

    @property
    def var_names(self) -> list[str]:
        return list(self.posterior.data_vars)

    def draws(self, name) -> np.ndarray:
        """Draws of a site (``"gal.n"``, ``"gal.flux[r]"``) or variable (``"gal.flux"``): (chain, draw, ...)."""
        if "[" in name:
            base, label = name[:-1].split("[")
            da = self.posterior[base]
            dim = [d for d in da.dims if d not in ("chain", "draw")][0]
            return np.asarray(da.sel({dim: label}).values)
        return np.asarray(self.posterior[name].values)

    def flat(self, name) -> np.ndarray:
        a = self.draws(name)
        return a.reshape((-1,) + a.shape[2:])

    @property
    def num_draws(self) -> int:
        """Draws of all chains together (chains x draws per chain)."""
        return int(self.posterior.sizes.get("chain", 0) * self.posterior.sizes.get("draw", 0))

    @property
    def num_divergences(self) -> int:
        return int(np.sum(np.asarray(self.tree["sample_stats"]["diverging"].values)))

    @property
    def sampling_time_s(self) -> float | None:
        """Wall time of the sampling phase (after warm-up), seconds."""
        return self.tree.attrs.get("sampling_time_s")

    @property
    def warmup_time_s(self) -> float | None:
        """Wall time of the warm-up phase (including compilation), seconds."""
        return self.tree.attrs.get("warmup_time_s")

    def ess(self, method="bulk") -> dict:
        """Effective sample size of every posterior element: ``{"gal.n": 812.3, "gal.flux[r]": ...}``."""
        import arviz as az

        return self._elements(az.ess(self.tree, method=method))

    def _elements(self, stat) -> dict:
        """An arviz diagnostic (one value per posterior element) as ``{"gal.n": ..., "gal.flux[r]": ...}``."""
        stat = stat["posterior"] if "posterior" in getattr(stat, "children", {}) else stat
        out = {}
        for name in self.var_names:
            da = stat[name]
            if da.ndim == 0:
                out[name] = float(da.values)
            else:
                for label, v in zip(da[da.dims[0]].values, np.ravel(da.values)):
                    out[f"{name}[{label}]"] = float(v)
        return out

    def ess_min(self, method="bulk") -> float:
        """The smallest ESS (:meth:`ess`) over the parameters (magnitudes, transforms of the
        fluxes, left out; so are values that are not finite); NaN if none is finite."""
        vals = [v for k, v in self.ess(method).items() if ".mag" not in k and np.isfinite(v)]
        return float(min(vals)) if vals else float("nan")

    def rhat(self) -> dict:
        """Rank-normalised split R-hat (arviz) of every posterior element, keyed as :meth:`ess`;
        a chain stuck on one value gives NaN or inf, without numpy's warnings."""
        import warnings

        import arviz as az

        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return self._elements(az.rhat(self.tree))

    def rhat_max(self) -> float:
        """The largest R-hat (:meth:`rhat`) over the parameters (magnitudes left out); NaN if
        any is not finite (a stuck chain)."""
        vals = [v for k, v in self.rhat().items() if ".mag" not in k]
        return float(max(vals)) if vals and all(np.isfinite(vals)) else float("nan")

    # ------------------------------------------------------------------ reporting
    def summary(self, var_names=None, round_to="sd", **kwargs):
        """arviz's summary table (pandas DataFrame): mean, sd, equal-tailed interval, ESS,
        R-hat per parameter.  ``round_to="sd"`` (default): the mean and the interval of each
        row to the decimal of its sd's second significant figure (``gal.mag[g]  19.5674
        0.0047  19.5597  19.5751``), the MCSEs to two significant figures, ESS whole, R-hat to
        three decimals; any other value is arviz's (``"none"``: raw numbers)."""
        import warnings

        import arviz as az

        # a chain stuck on one value (a short or failed run) has zero variance: its R-hat and
        # ESS are inf or NaN in the table, without numpy's divide warnings
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            table = az.summary(self.tree, var_names=var_names, round_to="none" if round_to == "sd" else round_to,
                               **kwargs)
        if round_to != "sd":
            return table
        if "sd" not in table:
            return table
        sd = table["sd"].to_numpy(dtype=float)
        decimals = np.where(sd > 0, 1 - np.floor(np.log10(np.where(sd > 0, sd, 1.0))), 6).astype(int)
        for col in table.columns:
            values = table[col].to_numpy(dtype=float)
            if col.startswith("ess"):
                table[col] = np.floor(values)
            elif col == "r_hat":
                table[col] = np.round(values, 3)
            elif col.startswith("mcse"):
                table[col] = [_round_sig(v, 2) for v in values]
            else:
                table[col] = [round(float(v), int(d)) if np.isfinite(v) else v for v, d in zip(values, decimals)]
        return table

    def corner(self, var_names=None, truths=None, **kwargs):
        """Corner plot (the ``corner`` package) of scalar parameters; ``truths``: {site: value}.
        Axis labels carry the parameters' units (:data:`bayesprof.components.PARAMETER_UNITS`);
        each panel's title gives the median and the 16th/84th percentiles to the precision of
        their spread (two significant figures of it), on two lines so that titles do not
        overlap; corner's warnings for few draws ("Too few points to create valid contours")
        are silenced."""
        import logging

        import corner

        names = self._scalar_names(var_names)
        cols, labels, tv = [], [], []
        from .components import PARAMETER_UNITS

        for n in names:
            cols.append(self.flat(n))
            unit = PARAMETER_UNITS.get(n.split("[")[0].rsplit(".", 1)[-1], "")
            labels.append(f"{n} ({unit})" if unit else n)
            tv.append(None if truths is None else truths.get(n))
        data = np.column_stack(cols)
        kwargs.setdefault("quantiles", [0.16, 0.5, 0.84])
        titles = kwargs.pop("show_titles", True)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            fig = corner.corner(data, labels=labels, truths=tv if truths is not None else None, show_titles=False,
                                **kwargs)
        finally:
            root.setLevel(level)
        if titles:
            axes = np.asarray(fig.axes).reshape(len(names), len(names))
            for i, (label, col) in enumerate(zip(labels, cols)):
                lo, med, hi = np.nanpercentile(col, [15.865, 50.0, 84.135])
                axes[i, i].set_title(f"{label}\n{_interval_text(med, lo, hi)}", fontsize=8)
        return fig

    def _scalar_names(self, var_names=None):
        names = []
        for name in (var_names or [v for v in self.var_names if not v.endswith(".mag")]):
            da = self.posterior[name]
            if da.ndim == 2:
                names.append(name)
            else:
                dim = [d for d in da.dims if d not in ("chain", "draw")][0]
                names += [f"{name}[{label}]" for label in da[dim].values]
        return names

    def magnitudes(self) -> dict:
        """Posterior mean and sd of every AB magnitude: ``{"gal.mag[r]": (mean, sd), ...}``."""
        out = {}
        for name in self.var_names:
            if name.endswith(".mag"):
                for n in self._scalar_names([name]):
                    a = self.flat(n)
                    out[n] = (float(np.nanmean(a)), float(np.nanstd(a)))
        return out

    def sky_positions(self):
        """RA/Dec of every source's centre, the posterior mean, with the posterior sd as 1-sigma
        errors in arcsec (:func:`sky_position_table`)."""
        ref = json.loads(self.tree.attrs.get("reference", "null"))
        if ref is None:
            raise ValueError("this posterior file has no scene reference (written before bayesprof stored it)")
        from astropy.coordinates import SkyCoord

        names = [v[: -len(".xi")] for v in self.var_names if v.endswith(".xi") and v[:-3] + ".eta" in self.var_names
                 and self.posterior[v].ndim == 2]
        xi = [self.flat(f"{n}.xi") for n in names]
        eta = [self.flat(f"{n}.eta") for n in names]
        return sky_position_table(names, [a.mean() for a in xi], [a.mean() for a in eta], [a.std(ddof=1) for a in xi],
                                  [a.std(ddof=1) for a in eta], SkyCoord(ref[0], ref[1], unit="deg"),
                                  method="posterior mean and sd")

    # ------------------------------------------------------------------ I/O
    def to_netcdf(self, path):
        """Write the DataTree to a NetCDF-4 file (h5netcdf engine)."""
        self.tree.to_netcdf(str(path), engine="h5netcdf")

    @classmethod
    def from_netcdf(cls, path):
        import xarray as xr

        return cls(xr.open_datatree(str(path), engine="h5netcdf").load())

    def __repr__(self):
        p = self.posterior
        return (f"Posterior({p.sizes.get('chain', 0)} chains x {p.sizes.get('draw', 0)} draws, variables "
                f"{self.var_names}, {self.num_divergences} divergences)")


def load_posterior(path) -> Posterior:
    """Read a :class:`Posterior` written by :meth:`Posterior.to_netcdf`."""
    return Posterior.from_netcdf(path)
