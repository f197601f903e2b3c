"""Light curves: a transient's flux per epoch as an astropy Table, from a joint fit, a posterior
or forced photometry on a fitted host.

Three ways to a light curve of a point source (a supernova) on a static host:

* **joint fit**: the source's flux varies per image (``scene.add("sn", bp.PointSource,
  vary={"flux": "image"})``), fitted with everything else by :func:`bayesprof.fit_map` (and
  :func:`bayesprof.sample`); :func:`light_curve` reads the table off the result.  The host's
  shape uncertainty is in the errors; the cost grows with the number of epochs as a joint fit's
  does (each epoch a rendered image per step).
* **forced photometry** (:func:`forced_photometry`): the host (and neighbours) fitted once, on
  reference epochs or all; then in every epoch, with the scene fixed at its MAP and the
  source's position fixed, the source's flux and the epoch's sky (and, optionally, the epoch's
  calibration) are the linear least-squares solution: exact, one small linear solve per epoch,
  batched over epochs with one compiled program per image structure, cost linear in epochs.
  The fit's uncertainty (host shape and flux, the source's fitted position) is propagated to
  each flux to first order and added in quadrature (``flux_err_host``); it is common to the
  epochs, so their errors are correlated (``covariance=True`` returns the full matrix).

Table columns (one row per epoch, in the order given): ``image``, ``mjd`` (the image's ``time``,
NaN if unknown), ``band``, ``flux`` and ``flux_err`` (uJy, in the calibration of the host
fit's images of that band), ``snr`` (flux / flux_err), ``mag`` and ``mag_err`` (AB; NaN where
``snr`` < ``detection_snr``), ``upper_limit`` (True there) and ``mag_limit`` (the AB magnitude of
``limit_sigma`` x flux_err: the epoch's upper limit).  Fluxes are on the real line: an epoch
without the source scatters about zero, negative values included.  The table's ``meta`` says
the source, its position (RA, Dec, degrees), the method and the thresholds; write it with
``table.write("lc.ecsv")``.
"""

from __future__ import annotations

import concurrent.futures
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .components import PointSource
from .profiles import AB_ZEROPOINT_UJY
from .results import _mag

__all__ = ["light_curve", "forced_photometry", "light_curve_table"]


def light_curve_table(names, times, bands, flux, flux_err, *, detection_snr=3.0, limit_sigma=5.0, meta=None,
                      extra=None):
    """The light-curve :class:`~astropy.table.Table` of per-image fluxes (uJy) and 1-sigma errors.

    ``names``, ``times`` (MJD or None), ``bands``: of each row's image; ``extra``: further
    columns ``{name: (values, unit or None, format)}``."""
    from astropy.table import Table

    flux = np.asarray(flux, dtype=float)
    err = np.asarray(flux_err, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = flux / err
        detected = snr >= detection_snr
        mag = np.where(detected, _mag(flux), np.nan)
        mag_err = np.where(detected, 2.5 / np.log(10) / snr, np.nan)
        mag_limit = np.where(err > 0, AB_ZEROPOINT_UJY - 2.5 * np.log10(limit_sigma * np.where(err > 0, err, 1.0)),
                             np.nan)
    t = Table()
    t["image"] = [str(n) for n in names]
    t["mjd"] = np.array([np.nan if m is None else m for m in times], dtype=float)
    t["band"] = [str(b) for b in bands]
    t["flux"], t["flux_err"], t["snr"] = flux, err, snr
    t["mag"], t["mag_err"], t["upper_limit"], t["mag_limit"] = mag, mag_err, ~detected, mag_limit
    for col, unit in (("flux", "uJy"), ("flux_err", "uJy"), ("mag", "mag"), ("mag_err", "mag"), ("mag_limit", "mag")):
        t[col].unit = unit
    for col, fmt in (("mjd", ".5f"), ("flux", ".4g"), ("flux_err", ".3g"), ("snr", ".2f"), ("mag", ".4f"),
                     ("mag_err", ".4f"), ("mag_limit", ".3f")):
        t[col].format = fmt
    for name, (values, unit, fmt) in (extra or {}).items():
        t[name] = np.asarray(values)
        if unit:
            t[name].unit = unit
        if fmt:
            t[name].format = fmt
    t.meta.update(meta or {})
    t.meta.update({"detection_snr": float(detection_snr), "limit_sigma": float(limit_sigma),
                   "magnitudes": "AB (23.9 - 2.5 log10(flux / uJy)); mag_limit: limit_sigma x flux_err"})
    return t


def _transient_sites(model, source):
    sites = [s for s in model.sites if s.source == source and s.param == "flux" and s.dim == "image"]
    if not sites:
        raise ValueError(f"source {source!r} has no flux per image: add it with vary={{'flux': 'image'}} "
                         "(or use forced_photometry)")
    return sites


def _position_meta(model, values, source):
    from .image import sky_from_offsets

    use = model.parameter_sites(source, model.images[0])
    c = sky_from_offsets(float(values[use["xi"]]), float(values[use["eta"]]), model.reference)
    return {"ra_deg": float(c.ra.deg), "dec_deg": float(c.dec.deg)}


def light_curve(result, source, *, detection_snr=3.0, limit_sigma=5.0):
    """The light curve of ``source`` (a source whose flux varies per image) from a
    :class:`~bayesprof.MapResult` (MAP values and their Gauss-Newton 1-sigma) or a
    :class:`~bayesprof.Posterior` (posterior mean and sd per epoch, with the 16th and 84th
    percentiles as ``flux_p16``, ``flux_p84``); see the module's docstring for the columns."""
    from .inference import MapResult

    if isinstance(result, MapResult):
        model = result.model
        sites = _transient_sites(model, source)
        images = [model.images[s.label] for s in sites]
        flux = [float(result.values[s.name]) for s in sites]
        err = [float(result.sigmas[s.name]) for s in sites]
        meta = {"source": source, "method": "MAP of the joint fit (Gauss-Newton 1-sigma)",
                **_position_meta(model, result.values, source)}
        return light_curve_table([im.name for im in images], [im.time for im in images], [im.band for im in images],
                                 flux, err, detection_snr=detection_snr, limit_sigma=limit_sigma, meta=meta)
    return _posterior_light_curve(result, source, detection_snr, limit_sigma)


def _posterior_light_curve(post, source, detection_snr, limit_sigma):
    import json

    name = f"{source}.flux"
    if name not in post.posterior:
        raise ValueError(f"the posterior has no variable {name!r}")
    da = post.posterior[name]
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    if len(dims) != 1:
        raise ValueError(f"{name} does not vary per image")
    labels = [str(v) for v in da[dims[0]].values]
    attrs = post.tree.attrs
    names = json.loads(attrs.get("images", "[]"))
    if not set(labels) <= set(names):
        raise ValueError(f"{name} varies per {dims[0]}, not per image")
    bands = dict(zip(names, json.loads(attrs.get("bands", "[]"))))
    times = dict(zip(names, json.loads(attrs.get("times", "[]")) or [None] * len(names)))
    draws = np.asarray(da.values).reshape(-1, len(labels))
    p16, p84 = np.percentile(draws, [15.865, 84.135], axis=0)
    return light_curve_table(labels, [times.get(n) for n in labels], [bands.get(n) for n in labels],
                             draws.mean(axis=0), draws.std(axis=0, ddof=1), detection_snr=detection_snr,
                             limit_sigma=limit_sigma,
                             meta={"source": source, "method": "posterior mean and sd (NUTS)"},
                             extra={"flux_p16": (p16, "uJy", ".4g"), "flux_p84": (p84, "uJy", ".4g")})


# ----------------------------------------------------------------------------- forced photometry
def _solve_epoch(renderer, stacks, point, data, weight, scale, sky, calibrate):
    """One epoch: the linear least-squares flux (uJy) of ``point`` (unit flux) over the fixed
    scene ``stacks``, with a flat sky and, if ``calibrate``, a free scale of the fixed scene.
    Returns (flux, flux_err, sky, sky_err, calibration scale, chi2)."""
    fixed = scale * renderer.render_stacks(stacks) if stacks else jnp.zeros(data.shape)
    columns = [scale * renderer.render_one(point)]
    if sky:
        columns.append(jnp.ones(data.shape))
    if calibrate:
        columns.append(fixed)
        target = data
    else:
        target = data - fixed
    A = jnp.stack([c.ravel() for c in columns])
    w = weight.ravel()
    Aw = A * w
    normal = Aw @ A.T
    # scaled to unit diagonal before the inverse (the columns' units differ by orders of magnitude)
    d = 1.0 / jnp.sqrt(jnp.where(jnp.diag(normal) > 0, jnp.diag(normal), 1.0))
    cov = jnp.linalg.inv(normal * d[:, None] * d[None, :]) * d[:, None] * d[None, :]
    coef = cov @ (Aw @ target.ravel())
    chi2 = jnp.sum(w * (target.ravel() - coef @ A) ** 2)
    flux, var = coef[0], cov[0, 0]
    level, level_var = (coef[1], cov[1, 1]) if sky else (0.0, 0.0)
    c = coef[-1] if calibrate else 1.0
    if calibrate:  # the flux in the fixed scene's calibration: a / c, first-order error
        i = len(columns) - 1
        var = var / c**2 - 2 * flux * cov[0, i] / c**3 + flux**2 * cov[i, i] / c**4
        flux = flux / c
    return jnp.stack([flux, jnp.sqrt(var), level, jnp.sqrt(level_var), c, chi2])


def _solve_epoch_with_gradient(renderer, stacks, point, data, weight, scale, sky, calibrate):
    """:func:`_solve_epoch` and the flux's gradient by the fixed scene's component parameters,
    the point source's and the fixed scene's scale (one reverse pass: the flux is a fixed linear
    functional of the scene's image)."""
    def flux(inputs):
        out = _solve_epoch(renderer, *inputs[:2], data, weight, inputs[2], sky, calibrate)
        return out[0], out

    (_, out), grad = jax.value_and_grad(flux, has_aux=True)((stacks, point, scale))
    return out, grad


@partial(jax.jit, static_argnames=("sky", "calibrate", "gradient"))
def _solve_batch(renderers, stacks, points, data, weight, scale, sky, calibrate, gradient):
    """:func:`_solve_epoch` (with ``gradient``, :func:`_solve_epoch_with_gradient`) vmapped over a
    batch of epochs of one image structure."""
    if gradient:
        return jax.vmap(lambda r, st, p, d, w, s: _solve_epoch_with_gradient(r, st, p, d, w, s, sky, calibrate))(
            renderers, stacks, points, data, weight, scale)
    return jax.vmap(lambda r, st, p, d, w, s: _solve_epoch(r, st, p, d, w, s, sky, calibrate))(
        renderers, stacks, points, data, weight, scale), None


def _site_gradient(index, epoch, grad, b):
    """The flux's gradient by the fit's latent parameters (``index``: name -> position) for one
    epoch: ``grad`` (the batch's gradient, entry ``b``) by each component parameter, added to
    the site that holds it (and to the image's astrometric offset for the centres, its zeropoint
    correction for the scale); fixed sites take nothing."""
    g = np.zeros(len(index))

    def add(site, value):
        value = np.ravel(np.asarray(value, dtype=float))
        if value.size == 1 and site in index:
            g[index[site]] += value[0]
        else:
            for j, x in enumerate(value):
                if f"{site}[{j}]" in index:
                    g[index[f"{site}[{j}]"]] += x

    g_stacks, g_point, g_scale = grad
    nuisance = epoch["nuisance"]
    centre = {p: float(np.asarray(getattr(g_point, p))[b]) for p in ("xi", "eta")}  # the point moves with the offset
    for p, site in epoch["point_sites"].items():  # its position, when it is the fit's
        add(site, centre[p])
    for group, row, sites in epoch["rows"]:
        for p, site in sites.items():
            value = np.asarray(getattr(g_stacks[group], p))[b, row]
            add(site, value)
            if p in centre:
                centre[p] += float(np.sum(value))
    if "dxi" in nuisance:
        add(nuisance["dxi"], centre["xi"])
        add(nuisance["deta"], centre["eta"])
    if "dzp" in nuisance:
        add(nuisance["dzp"], float(np.asarray(g_scale)[b]) * epoch["scale"] * 0.4 * np.log(10.0))
    return g


def forced_photometry(fit, images, source=None, *, position=None, sky=True, calibrate=False, batch_size=16,
                      host_uncertainty=True, covariance=False, detection_snr=3.0, limit_sigma=5.0):
    """Forced photometry of a point source on a fitted scene, epoch by epoch.

    Parameters
    ----------
    fit : MapResult
        The fit of the static scene (host, neighbours; it may include the transient itself).
        Every light-emitting source of the fit but ``source`` is rendered into each epoch at its
        MAP values (flux of the epoch's band; an epoch of the fit keeps its astrometric offset and
        zeropoint correction).  Its skies and nuisances are not used: each epoch gets its own.
    images : ImageList or list of Image
        The epochs, any number, each with its own WCS, PSF, zeropoint and noise; bands must be
        bands of the fit.
    source : str, optional
        The transient's name in the fit: excluded from the fixed scene, and its fitted position is
        the default ``position``.
    position : SkyCoord or (xi, eta) in arcsec about the fit's reference, optional
        Where the point source is measured.
    sky : bool
        Fit a flat sky level (counts/pixel) per epoch (default True).
    calibrate : bool
        Fit a scale of the fixed scene per epoch (a zeropoint correction: the epoch's flux is
        reported in the calibration of the fit's images of its band).
    batch_size : int
        Epochs per vmapped batch (memory ~ batch_size x one epoch's render).
    host_uncertainty : bool
        Propagate the fit's covariance (its latent parameters: the fixed scene's, the source's
        position when it is the fit's, the epoch's astrometric offset and zeropoint correction
        when it was fitted) to each flux, to first order: ``flux_err_host`` =
        sqrt(g C g^T), g the flux's gradient by those parameters (one reverse pass per
        epoch), C ``fit.covariance``.  ``flux_err`` is then the quadrature sum of the epoch's own
        error ``flux_err_stat`` and ``flux_err_host``.  The host's part is common to the epochs:
        their errors are correlated (``covariance=True``).  Default True; False: errors
        conditional on the fixed scene (``flux_err`` = ``flux_err_stat``), about half the cost.
    covariance : bool
        Also return the epochs' flux covariance (uJy^2, table order):
        ``diag(flux_err_stat^2) + G C G^T``, the host's part correlated between epochs.

    Returns
    -------
    astropy Table, or (Table, ndarray) with ``covariance``
        The light curve (module docstring) plus ``flux_err_stat`` and ``flux_err_host`` (uJy),
        ``sky`` and ``sky_err`` (counts/pixel), ``calibration`` (the fitted scale, 1 without
        ``calibrate``) and ``chi2`` / ``n_pix`` of each epoch's fitted pixels.
    """
    from astropy.coordinates import SkyCoord

    from .image import sky_from_offsets, tangent_plane_offsets
    from .render import Renderer, stack_groups

    model = fit.model
    images = list(images)
    if not images:
        raise ValueError("forced_photometry: no images")
    values = model.complete(fit.values)
    if position is None:
        if source is None:
            raise ValueError("forced_photometry: give the source's name in the fit or its position")
        use = model.parameter_sites(source, model.images[0])
        xi, eta = float(values[use["xi"]]), float(values[use["eta"]])
    elif isinstance(position, SkyCoord):
        xi, eta = (float(v) for v in tangent_plane_offsets(position, model.reference))
    else:
        xi, eta = (float(v) for v in position)
    if source is not None:
        model.scene.source(source)  # a clear KeyError for a name the fit lacks
    outside = [im.name for im in images if not im.overlaps(model.reference, xi, eta)]
    if outside:
        raise ValueError(f"forced_photometry: the position ({xi:.2f}, {eta:.2f}) arcsec is outside image(s) {outside}")

    # the epochs of one image shape get common PSF sampling (the largest truncation radius,
    # folding and oversampling any of them needs): one renderer structure, one compiled program
    common = {}
    for im in images:
        auto = Renderer.sampling(im)
        c = common.setdefault(im.shape, auto)
        common[im.shape] = {k: max(c[k], auto[k]) for k in c}
    dtype = np.dtype(jnp.result_type(float))

    point_from_fit = position is None

    def prepare(i):
        im = images[i]
        comps, offset, scale = model.image_components(values, im, exclude=source)
        point = PointSource(xi=xi + offset[0], eta=eta + offset[1], flux=1.0)
        weight = np.asarray(im.weight, dtype)
        # where each component sits in the stacks (stack_groups: groups by structure, in order of
        # first appearance) and the sites its parameters come from: for the host's gradient
        groups, rows = {}, []
        for name, c in comps.items():
            g = groups.setdefault(jax.tree_util.tree_structure(c), [len(groups), 0])
            rows.append((g[0], g[1], model.parameter_sites(name, im)))
            g[1] += 1
        point_sites = ({p: s for p, s in model.parameter_sites(source, im).items() if p in ("xi", "eta")}
                       if point_from_fit else {})
        meta[i] = dict(rows=rows, point_sites=point_sites, nuisance=model.image_nuisance_sites(im), scale=float(scale))
        return dict(renderer=Renderer(im, model.reference, **common[im.shape]),
                    stacks=stack_groups(list(comps.values())) if comps else [], point=point,
                    data=np.where(weight > 0, im.data, 0.0).astype(dtype), weight=weight,
                    scale=np.asarray(scale, dtype))

    # the renderers' set-up is numpy work that releases the GIL: threads share it out, and each
    # batch is dispatched (asynchronously) as soon as its epochs are ready, so the solves of one
    # batch overlap the set-up of the next; a batch's epochs are released once it is stacked
    per_shape = {}
    for im in images:
        per_shape[im.shape] = per_shape.get(im.shape, 0) + 1
    fields = ("renderer", "stacks", "point", "data", "weight", "scale")
    epochs, buffers, pending, meta = {}, {}, [], {}
    gradient = bool(host_uncertainty) and len(fit.names) > 0

    def dispatch(key):
        idx = buffers.pop(key)
        size = min(batch_size, per_shape[key[1]])  # one compiled batch size per structure
        padded = idx + [idx[-1]] * (size - len(idx))
        batch = [jax.tree_util.tree_map(lambda *a: np.stack([np.asarray(x) for x in a]),
                                        *[epochs[i][f] for i in padded]) for f in fields]
        pending.append((idx, _solve_batch(*batch, sky=sky, calibrate=calibrate, gradient=gradient)))
        for i in idx:
            del epochs[i]

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for i, e in enumerate(pool.map(prepare, range(len(images)))):
            epochs[i] = e
            key = jax.tree_util.tree_structure((e["renderer"], e["stacks"], e["point"])), e["data"].shape
            buffers.setdefault(key, []).append(i)
            if len(buffers[key]) == min(batch_size, per_shape[key[1]]):
                dispatch(key)
        for key in list(buffers):
            dispatch(key)
    out = np.zeros((len(images), 6))
    G = np.zeros((len(images), len(fit.names)))
    index = {n: k for k, n in enumerate(fit.names)}
    for idx, (res, grad) in pending:
        out[idx] = np.asarray(res)[: len(idx)]
        if gradient:
            grad = jax.tree_util.tree_map(np.asarray, grad)
            for b, i in enumerate(idx):
                G[i] = _site_gradient(index, meta[i], grad, b)
    host_cov = G @ np.asarray(fit.covariance, dtype=float).reshape(len(fit.names), len(fit.names)) @ G.T
    err_stat, err_host = out[:, 1], np.sqrt(np.maximum(np.diag(host_cov), 0.0))
    n_pix = [int(np.count_nonzero(im.weight)) for im in images]
    pos = sky_from_offsets(xi, eta, model.reference)
    table_meta = {"source": source or "", "ra_deg": float(pos.ra.deg), "dec_deg": float(pos.dec.deg),
                  "method": "forced photometry: linear least squares per epoch, the fitted scene fixed"
                      + (", a flat sky per epoch" if sky else "") + (", a scale per epoch" if calibrate else "")
                      + ("; errors include the fit's uncertainty (first order, correlated between epochs)"
                         if gradient else "; errors conditional on the fitted scene")}
    table = light_curve_table([im.name for im in images], [im.time for im in images], [im.band for im in images],
                              out[:, 0], np.hypot(err_stat, err_host), detection_snr=detection_snr,
                              limit_sigma=limit_sigma, meta=table_meta,
                              extra={"flux_err_stat": (err_stat, "uJy", ".3g"),
                                     "flux_err_host": (err_host, "uJy", ".3g"),
                                     "sky": (out[:, 2], None, ".4g"), "sky_err": (out[:, 3], None, ".3g"),
                                     "calibration": (out[:, 4], None, ".5f"), "chi2": (out[:, 5], None, ".1f"),
                                     "n_pix": (n_pix, None, None)})
    return (table, np.diag(err_stat**2) + host_cov) if covariance else table
