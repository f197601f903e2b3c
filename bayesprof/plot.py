"""Plots of scenes and fits (matplotlib): data | model | residual/sigma per image, windows.

Images are shown as stored, ``data[y, x]`` with ``origin="lower"`` (pixel (0, 0) at the
bottom left), so a default north-up east-left image has north up and east left.
"""

from __future__ import annotations

import numpy as np

__all__ = ["residuals", "windows", "light_curve"]


def _values(result):
    if hasattr(result, "values") and isinstance(result.values, dict):
        return result.values
    if hasattr(result, "posterior"):  # a Posterior: posterior means
        import json

        return {k: np.asarray(v) for k, v in json.loads(result.tree.attrs["map_values"]).items()}
    return dict(result)


def _stretch(a, good):
    vals = a[good] if good.any() else a.ravel()
    lo, hi = np.percentile(vals, [1, 99.7])
    return lo, hi if hi > lo else lo + 1


def _draw_windows(ax, scene, image_name, color="cyan"):
    from matplotlib.patches import Rectangle

    model = scene.build()
    for (src, im_name), (x0, x1, y0, y1) in model._boxes.items():
        if im_name == image_name:
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=color, lw=1))
            ax.text(x0, y1 - 1, src, color=color, fontsize=7, va="top")


def residuals(scene, result, *, figsize_per_row=3.0, show_windows=True):
    """Figure with one row per image: data, model and (data - model)/sigma.

    ``result``: a :class:`~bayesprof.inference.MapResult`, a :class:`~bayesprof.results.Posterior`
    (its MAP), or a dict of site values.  Masked and unfitted pixels are blank.
    """
    import matplotlib.pyplot as plt

    model = scene.build()
    values = {k: v for k, v in _values(result).items() if k in model.site}
    models = model.render_all(values)
    n = len(model.images)
    fig, axes = plt.subplots(n, 3, figsize=(3 * figsize_per_row + 1.5, figsize_per_row * n), squeeze=False)
    for k, (im, m) in enumerate(zip(model.images, models)):
        good = model._plans[k]["good"]
        m = np.asarray(m)
        data = np.where(good, im.data, np.nan)
        lo, hi = _stretch(im.data, good)
        chi = np.where(good, (im.data - m) / np.sqrt(im.variance), np.nan)
        panels = [(data, "data", dict(vmin=lo, vmax=hi, cmap="gray_r")),
                  (np.where(good, m, np.nan), "model", dict(vmin=lo, vmax=hi, cmap="gray_r")),
                  (chi, "(data - model) / sigma", dict(vmin=-5, vmax=5, cmap="RdBu_r"))]
        for j, (arr, title, kw) in enumerate(panels):
            ax = axes[k, j]
            art = ax.imshow(arr, origin="lower", interpolation="nearest", **kw)
            ax.set_title(f"{im.name} ({im.band}): {title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 2:
                fig.colorbar(art, ax=ax, fraction=0.046, pad=0.04)
            if show_windows and j == 0:
                _draw_windows(ax, scene, im.name)
        if good.any():
            axes[k, 2].text(0.02, 0.02, f"chi2/N = {np.nanmean(chi**2):.3f}", transform=axes[k, 2].transAxes,
                            fontsize=8, color="k", bbox=dict(fc="w", alpha=0.7, lw=0))
    fig.tight_layout()
    return fig


def windows(scene, *, figsize_per_panel=3.5):
    """Every image with the sources' windows drawn on it."""
    import matplotlib.pyplot as plt

    model = scene.build()
    n = len(model.images)
    fig, axes = plt.subplots(1, n, figsize=(figsize_per_panel * n, figsize_per_panel), squeeze=False)
    for k, im in enumerate(model.images):
        ax = axes[0, k]
        lo, hi = _stretch(im.data, ~im.mask)
        ax.imshow(np.where(im.mask, np.nan, im.data), origin="lower", cmap="gray_r", vmin=lo, vmax=hi)
        _draw_windows(ax, scene, im.name)
        ax.set_title(f"{im.name} ({im.band})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


_BAND_COLOURS = {"u": "tab:blue", "g": "tab:green", "r": "tab:red", "i": "tab:orange", "z": "tab:purple",
                 "y": "tab:brown"}


def light_curve(table, *, mag=False, ax=None, title=None):
    """Plot a light curve (:func:`bayesprof.light_curve`, :func:`bayesprof.forced_photometry`):
    flux (uJy) +- 1 sigma against MJD per band, or with ``mag=True`` AB magnitudes of the
    detections and, as downward triangles, the upper limits (``mag_limit``) of the others.
    Rows without a time are plotted against their index.  Returns the figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 3.5))
    else:
        fig = ax.figure
    t = np.asarray(table["mjd"], dtype=float)
    xlabel = "MJD"
    if not np.isfinite(t).all():
        t, xlabel = np.arange(len(table), dtype=float), "epoch"
    bands = np.asarray(table["band"]).astype(str)
    cycle = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for band in dict.fromkeys(bands):
        sel = bands == band
        colour = _BAND_COLOURS.get(band[-1:] if band else "", None) or next(cycle)
        if not mag:
            ax.errorbar(t[sel], np.asarray(table["flux"])[sel], np.asarray(table["flux_err"])[sel], fmt="o", ms=4,
                        color=colour, label=band)
            continue
        det = sel & ~np.asarray(table["upper_limit"], dtype=bool)
        lim = sel & np.asarray(table["upper_limit"], dtype=bool)
        ax.errorbar(t[det], np.asarray(table["mag"])[det], np.asarray(table["mag_err"])[det], fmt="o", ms=4,
                    color=colour, label=band)
        ax.plot(t[lim], np.asarray(table["mag_limit"])[lim], "v", color=colour, alpha=0.5, ms=5)
    if mag:
        ax.invert_yaxis()
        ax.set_ylabel("AB magnitude")
    else:
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_ylabel("flux (uJy)")
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=8, ncol=min(len(set(bands)), 6))
    if title or table.meta.get("source"):
        ax.set_title(title or f"{table.meta['source']}: {table.meta.get('method', '')}", fontsize=9)
    return fig
