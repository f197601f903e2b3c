"""Plots of scenes and fits (matplotlib): data | model | residual/sigma per image, windows.

Images are shown as stored, ``data[y, x]`` with ``origin="lower"`` (pixel (0, 0) at the
bottom left), so a default north-up east-left image has north up and east left.
"""

from __future__ import annotations

import numpy as np
from astropy import units as _u

_ARCSEC = _u.arcsec

__all__ = ["residuals", "windows", "light_curve", "thumbnails"]


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


def _north_east(ax, image, colour="tab:orange"):
    """N and E arrows at the top-left of a panel, from the image's WCS at its centre."""
    ny, nx = image.shape
    c = image.pixel_to_sky((nx - 1) / 2, (ny - 1) / 2)
    step = 0.1 * min(nx, ny) * image.pixel_scale  # arcsec
    x0, y0 = image.sky_to_pixel(c)
    base = (0.16 * nx, 0.8 * ny)
    for label, (dlon, dlat) in (("N", (0.0, step)), ("E", (step, 0.0))):
        target = c.spherical_offsets_by(dlon * _ARCSEC, dlat * _ARCSEC)
        x1, y1 = image.sky_to_pixel(target)
        dx, dy = float(x1 - x0), float(y1 - y0)
        ax.annotate("", xy=(base[0] + dx, base[1] + dy), xytext=base,
                    arrowprops=dict(arrowstyle="->", color=colour, lw=1.2))
        ax.text(base[0] + 1.25 * dx, base[1] + 1.25 * dy, label, color=colour, fontsize=7, ha="center", va="center")


def residuals(scene, result, *, posterior=None, n_draws=64, figsize_per_row=3.0, show_windows=True):
    """Figure with one row per image: data, model and (data - model)/sigma at the MAP, and with
    ``posterior`` (a :class:`~bayesprof.results.Posterior`) also (data - median model)/sigma,
    the median over ``n_draws`` posterior draws (the posterior-predictive residual).

    ``result``: a :class:`~bayesprof.inference.MapResult`, a Posterior (its MAP), or a dict of
    site values.  Data and model share an asinh stretch (1st to 99.7th percentile of the data)
    and a colour bar in counts/pixel; N and E arrows come from the image's WCS; each residual
    panel's title gives chi^2/N over the fitted pixels.  Masked and unfitted pixels are blank.
    """
    import matplotlib.pyplot as plt
    from astropy.visualization import AsinhStretch, ImageNormalize

    model = scene.build()
    values = {k: v for k, v in _values(result).items() if k in model.site}
    models = model.render_all(values)
    medians = None if posterior is None else _posterior_median_models(model, posterior, n_draws)
    n = len(model.images)
    cols = 3 if medians is None else 4
    fig, axes = plt.subplots(n, cols, figsize=(cols * figsize_per_row + 2.0, figsize_per_row * n), squeeze=False,
                             layout="constrained")
    for k, (im, m) in enumerate(zip(model.images, models)):
        good = np.asarray(model._plans[k]["good"], bool).reshape(im.shape)
        m = np.asarray(m)
        lo, hi = _stretch(im.data, good)
        norm = ImageNormalize(vmin=lo, vmax=hi, stretch=AsinhStretch(0.1))
        sigma = np.sqrt(im.variance)
        panels = [(np.where(good, im.data, np.nan), "data", dict(norm=norm, cmap="gray_r")),
                  (np.where(good, m, np.nan), "MAP model", dict(norm=norm, cmap="gray_r"))]
        chis = [("MAP", np.where(good, (im.data - m) / sigma, np.nan))]
        if medians is not None:
            chis.append((f"posterior median of {medians[1]}", np.where(good, (im.data - medians[0][k]) / sigma, np.nan)))
        for label, chi in chis:
            c2 = float(np.nanmean(chi**2)) if good.any() else float("nan")
            panels.append((chi, f"(data - model)/sigma\n{label}: chi2/N = {c2:.3f}", dict(vmin=-5, vmax=5, cmap="RdBu_r")))
        for j, (arr, title, kw) in enumerate(panels):
            ax = axes[k, j]
            art = ax.imshow(arr, origin="lower", interpolation="nearest", **kw)
            ax.set_title(f"{im.name} ({im.band}): {title}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 1:
                fig.colorbar(art, ax=axes[k, :2].tolist(), fraction=0.046, pad=0.02, label="counts / pixel")
            elif j >= 2:
                fig.colorbar(art, ax=ax, fraction=0.046, pad=0.04, label="sigma")
            if j == 0:
                _north_east(ax, im)
                if show_windows:
                    _draw_windows(ax, scene, im.name)
    return fig


def thumbnails(fits, *, image=0, labels=None, ncols=2, size=1.6):
    """A page of residual thumbnails for a catalog: per object, data | model | (data - model)/sigma
    of one of its images at the MAP (``fits``: MapResults, e.g. from
    ``bayesprof.fit_catalog(..., return_fits=True)``; None entries are skipped).

    ``image``: the image's index or name in each object's scene; ``labels``: one title per
    object (default: the chi^2/N).  Data and model share an asinh stretch per object; the
    residuals run from -5 to 5 sigma.  Objects fill ``ncols`` triplets per row."""
    import matplotlib.pyplot as plt
    from astropy.visualization import AsinhStretch, ImageNormalize

    items = [(k, f) for k, f in enumerate(fits) if f is not None]
    nrows = max(1, -(-len(items) // ncols))
    fig, axes = plt.subplots(nrows, 3 * ncols, figsize=(3 * ncols * size, nrows * size * 1.1), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel():
        ax.set_axis_off()
    for slot, (k, fit) in enumerate(items):
        model = fit.model
        idx = image if isinstance(image, int) else model.images.names.index(image)
        im = model.images[idx]
        values = {n: v for n, v in fit.values.items() if n in model.site}
        m = np.asarray(model.render_all(values)[idx])
        good = np.asarray(model._plans[idx]["good"], bool).reshape(im.shape)
        lo, hi = _stretch(im.data, good)
        norm = ImageNormalize(vmin=lo, vmax=hi, stretch=AsinhStretch(0.1))
        chi = np.where(good, (im.data - m) / np.sqrt(im.variance), np.nan)
        c2 = float(np.nanmean(chi**2)) if good.any() else float("nan")
        title = labels[k] if labels is not None else f"chi2/N {c2:.2f}"
        row, col = divmod(slot, ncols)
        for j, (arr, kw) in enumerate(((np.where(good, im.data, np.nan), dict(norm=norm, cmap="gray_r")),
                                       (m, dict(norm=norm, cmap="gray_r")),
                                       (chi, dict(vmin=-5, vmax=5, cmap="RdBu_r")))):
            ax = axes[row, 3 * col + j]
            ax.imshow(arr, origin="lower", interpolation="nearest", **kw)
            ax.set_title(f"{title}: {('data', 'model', 'residual')[j]} ({im.name})" if j == 0 else
                         ("model", "(d - m)/sigma")[j - 1], fontsize=6)
    return fig


def _posterior_median_models(model, posterior, n_draws):
    """Per image, the pixel-wise median of the models of up to ``n_draws`` posterior draws
    (evenly spaced over the chains); and a label saying how many."""
    names = [s.name for s in model.latent]
    total = int(posterior.posterior.sizes["chain"] * posterior.posterior.sizes["draw"])
    pick = np.unique(np.linspace(0, total - 1, min(n_draws, total)).astype(int))
    flat = {nm: posterior.flat(nm)[pick] for nm in names}
    renders = model.render_draws({nm: np.asarray(flat[nm]) for nm in names})
    return [np.median(np.asarray(r), axis=0) for r in renders], f"{len(pick)} draws"


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
