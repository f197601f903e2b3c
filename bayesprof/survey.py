"""Catalogs: many objects fitted from a source list, batched on one device.

:func:`fit_catalog` takes images (big frames in several bands and pixel scales, each with its
WCS, PSF and zeropoint) and a source list (:class:`~bayesprof.catalog.SourceList`, or a table of
RA/Dec with optional ``re``, ``q``, ``pa``, ``flux`` columns), and returns one astropy Table row
per source:

1. **Footprints.**  Each source's footprint radius (arcsec) is the largest half-size of its
   ``extent`` (segmentation footprint, or ``max(4 re, 1")`` for a table entry) and at least
   twice the widest PSF's half-light radius.
2. **Groups.**  Sources whose footprints overlap (centre separation below the sum of their
   radii) are blended: connected sets of them form one group, fitted together.  Isolated
   sources are groups of one.
3. **Stamps.**  Each group is cut from every image it falls on (:meth:`Image.stamp`) about the
   members' mean position; the side covers every member's footprint plus ``margin`` and is
   rounded up to one of ``size_classes`` (pixels of the finest image; the other images get
   the same extent on the sky), so that groups of equal membership share stamp shapes.
   Pixels beyond a frame's edge are masked (a member whose footprint reaches beyond the edge
   of a frame it falls on gets flag ``edge``); the footprints of sources outside the group
   that reach into a stamp are masked too.
4. **Scenes.**  Each group becomes a :class:`~bayesprof.Scene` with its stamps (tangent point:
   the group's centre), one source of ``kind`` per member named ``s0, s1, ...`` (initial
   position, and ``re``, ``q``, ``pa`` where the list has them; fluxes estimated from the
   stamps) and a flat sky per image, with the usual sharing (structure shared, flux per band).
5. **Neighbours** (``neighbours="model"``, the default).  Each group is fitted again with the
   first-pass light of the other sources whose wings reach its stamps rendered there and
   subtracted (masks kept), starting from the first-pass values: the light beyond a neighbour's
   footprint is then not left to the sky.
6. **Batches.**  Groups whose models share a structure (same stamp shapes, PSF sampling and
   membership count) are solved together by :func:`~bayesprof.inference.fit_map_batch`: one
   compiled Levenberg–Marquardt program per structure, ``batch_size`` objects per call.

Columns of the output (units in the column metadata): ``id``, ``group`` (index of the blend
group), ``n_group`` (members), ``ra``, ``dec`` (deg, ICRS, the fitted centre), ``ra_err``,
``dec_err`` (arcsec on the sky), the shared structural parameters with ``_err`` (``re`` in
arcsec, ``pa`` in degrees east of north, ``n``, ``q``; per band or image as ``re_<label>``
when ``vary`` asks; for a polynomial in wavelength, ``vary={"re": Chebyshev(2)}``, its
coefficients ``re_cheb0, re_cheb1, ...`` on the parameter's link and its value in each band,
``re_<band>``), ``flux_<band>`` and ``flux_<band>_err`` (microjansky), ``mag_<band>`` and
``mag_<band>_err`` (AB), ``chi2nu_<image>`` (chi^2 per unmasked pixel of the group's stamp),
``converged``, ``lm_steps``, ``status`` (the solver's message or the error that stopped the
object), ``flags`` (comma-separated: ``blended``, ``edge``, ``prior_bound``, ``outside``,
``noise``, ``not_converged``, ``failed``) and ``time_s`` (the object's share of its group's
build and solve).

**With NUTS** (``nuts=``): each group's posterior is sampled from its MAP
(:func:`~bayesprof.inference.sample_batch`: groups of one structure share one compiled program
and are vmapped ``batch_size`` at a time, each with its own step size and mass matrix; the seed
of a group depends only on the run's seed and the group's index, not on its partition or
batch; with batches of one, the CPU's default, its draws are the same in any run).  The row
gains the posterior mean and sd of each of its columns as
``<column>_mean`` and ``<column>_sd`` (``ra_mean``, ``dec_mean`` in deg with ``ra_sd``,
``dec_sd`` in arcsec; ``re_mean``, ``flux_r_sd``, ``mag_r_mean``, ...; angles about their
circular mean), the group's ``rhat_max`` (rank-normalised split R-hat, largest over its
parameters), ``ess_bulk_min``, ``ess_tail_min``, ``divergences``, ``nuts_steps`` (mean leapfrog
steps per draw), ``nuts_time_s`` and
``posterior`` (the file of the group's posterior, when written), and the flags ``divergent``
and ``not_mixed`` (R-hat above 1.01, or a bulk ESS below 100 per chain), or ``nuts_failed``.
"""

from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass

import numpy as np

from . import components as comps
from .catalog import SourceList, add_sources, sources_from_table
from .image import ImageList, sky_from_offsets, tangent_plane_offsets
from .inference import ATOL, fit_map_batch
from .results import flux_to_mag_sigma
from .scene import Scene

__all__ = ["fit_catalog", "fit_cutouts", "run_catalog", "plan_catalog", "CatalogPlan", "group_sources", "SIZE_CLASSES",
           "NUTS_DEFAULTS"]

#: stamp sides (pixels of the finest image) that groups are rounded up to
SIZE_CLASSES = (32, 48, 64, 96, 128, 192, 256, 384, 512)


def _psf_hlr_arcsec(images):
    return max(float(im.psf.radius(im.pixel_scale, 0.5)) * float(im.pixel_scale) for im in images)


def _footprint_radii(sources, images):
    floor = 2.0 * _psf_hlr_arcsec(images)
    radii = []
    for s in sources:
        e = np.asarray(s.extent, float)
        r = float(np.max(np.abs(e))) if np.all(np.isfinite(e)) else (4.0 * s.re if np.isfinite(s.re) else 1.0)
        radii.append(max(r, floor))
    return np.asarray(radii)


def group_sources(xi, eta, radii) -> list[list[int]]:
    """Blend groups: indices of sources whose footprints (circles of ``radii`` arcsec about
    ``(xi, eta)``, tangent-plane arcsec) overlap, directly or through other members; each group
    sorted, groups in order of their first member."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    xy = np.column_stack([np.asarray(xi, float), np.asarray(eta, float)])
    radii = np.asarray(radii, float)
    n = len(xy)
    if n == 0:
        return []
    pairs = np.array(sorted(cKDTree(xy).query_pairs(2.0 * float(radii.max()))), dtype=int).reshape(-1, 2)
    if pairs.size:
        sep = np.hypot(*(xy[pairs[:, 0]] - xy[pairs[:, 1]]).T)
        pairs = pairs[sep < radii[pairs[:, 0]] + radii[pairs[:, 1]]]
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    groups = {}
    for i, lab in enumerate(labels):
        groups.setdefault(lab, []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


@dataclass
class _Group:
    index: int
    members: list  # indices into the source list
    xi: float  # centre, arcsec about the field's reference
    eta: float
    half: float  # half-size of the stamp on the sky, arcsec


def _size_class(side_px, size_classes):
    for c in size_classes:
        if c >= side_px:
            return int(c)
    top = int(size_classes[-1])
    return int(np.ceil(side_px / top) * top)


def _stamps(group, images, field_ref, size_classes, finest, xi, eta, radii):
    """The group's stamps ``{image name: Image}``, and the members whose footprint reaches
    beyond the edge of a frame they fall on (flag ``edge``)."""
    centre = sky_from_offsets(group.xi, group.eta, field_ref)
    side = _size_class(2.0 * group.half / finest.pixel_scale, size_classes)
    members = np.asarray(group.members)
    where = sky_from_offsets(xi[members], eta[members], field_ref)
    out, edge = {}, set()
    for im in images:
        n = int(2 * np.ceil(0.5 * side * finest.pixel_scale / im.pixel_scale))
        x, y = (float(v) for v in im.sky_to_pixel(centre))
        x0, y0 = int(np.floor(x + 0.5)) - n // 2, int(np.floor(y + 0.5)) - n // 2
        if x0 + n <= 0 or y0 + n <= 0 or x0 >= im.nx or y0 >= im.ny:
            continue
        out[im.name] = im.stamp(x, y, (n, n))
        mx, my = (np.atleast_1d(v) for v in im.sky_to_pixel(where))
        r = radii[members] / im.pixel_scale
        on = (mx > -0.5) & (mx < im.nx - 0.5) & (my > -0.5) & (my < im.ny - 0.5)
        beyond = (mx - r < -0.5) | (my - r < -0.5) | (mx + r > im.nx - 0.5) | (my + r > im.ny - 0.5)
        edge |= {int(i) for i in members[on & beyond]}
    return out, edge


def _mask_neighbours(stamps, neighbours, field_ref, xi, eta, radii):
    """Mask, in every stamp, the pixels within each neighbour's footprint radius of it."""
    if not len(neighbours):
        return stamps
    coords = sky_from_offsets(xi[neighbours], eta[neighbours], field_ref)
    out = {}
    for name, st in stamps.items():
        x, y = st.sky_to_pixel(coords)
        r = radii[neighbours] / st.pixel_scale
        yy, xx = np.mgrid[: st.ny, : st.nx]
        extra = np.zeros(st.shape, bool)
        for xk, yk, rk in zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(r)):
            if -rk <= xk < st.nx + rk and -rk <= yk < st.ny + rk:
                extra |= (xx - xk) ** 2 + (yy - yk) ** 2 < rk * rk
        out[name] = st.with_mask(extra) if extra.any() else st
    return out


def _as_sources(sources, images):
    if isinstance(sources, SourceList):
        return sources
    if isinstance(sources, list) and all(hasattr(s, "coord") for s in sources):
        return SourceList(sources)
    return sources_from_table(sources, image=images[0])


@dataclass
class CatalogPlan:
    """The blend groups of a source list on a set of images (:func:`plan_catalog`): the sources,
    their tangent-plane positions ``xi``, ``eta`` (arcsec about ``field_ref``, the first
    source) and footprint radii (arcsec), and the groups (:class:`_Group`, with each group's
    stamp half-size on the sky)."""

    sources: SourceList
    field_ref: object
    xi: np.ndarray
    eta: np.ndarray
    radii: np.ndarray
    groups: list


def plan_catalog(images, sources, *, stamp_scale=2.0, margin=None, point_sources=None) -> CatalogPlan:
    """Footprints, blend groups and stamp sizes of ``sources`` on ``images`` (module docstring):
    the part of :func:`fit_catalog` that looks at the whole list, so that any subset of the
    groups can be fitted on its own (a partition of a Dask run) with the same result.
    ``point_sources``: as :func:`fit_catalog`."""
    from astropy.coordinates import SkyCoord

    from .catalog import mark_point_sources, sharpest_image

    images = images if isinstance(images, ImageList) else ImageList(list(images))
    sources = _as_sources(sources, images)
    if point_sources == "auto":
        sources = mark_point_sources(sources, sharpest_image(images))
    elif point_sources is not None:
        raise ValueError(f"point_sources must be None (the list's own 'point' flags) or 'auto', not {point_sources!r}")
    if len(sources) == 0:
        return CatalogPlan(sources, None, np.zeros(0), np.zeros(0), np.zeros(0), [])
    field_ref = sources[0].coord
    xi, eta = (np.atleast_1d(np.asarray(a, float))
               for a in tangent_plane_offsets(SkyCoord([s.coord for s in sources]), field_ref))
    radii = _footprint_radii(sources, images)
    margin = 2.0 * _psf_hlr_arcsec(images) if margin is None else float(margin)
    groups = []
    for k, members in enumerate(group_sources(xi, eta, radii)):
        cx, cy = float(np.mean(xi[members])), float(np.mean(eta[members]))
        half = float(np.max(np.maximum(np.abs(xi[members] - cx), np.abs(eta[members] - cy))
                            + stamp_scale * radii[members])) + margin
        groups.append(_Group(k, members, cx, cy, half))
    return CatalogPlan(sources, field_ref, xi, eta, radii, groups)


def _default_batch_size():
    import jax

    return 1 if jax.default_backend() == "cpu" else 64


def fit_catalog(images, sources, *, kind=None, vary=None, sky=comps.FlatSky, size_classes=SIZE_CLASSES,
                stamp_scale=2.0, margin=None, point_sources=None, neighbours="model", neighbour_table=None,
                batch_size=None, max_steps=200, rtol=1e-8, atol=ATOL, nuts=None, posterior_dir=None, groups=None,
                plan=None, progress=False, return_fits=False):
    """MAP fits of every source of a list in every image, blended ones together, batched by
    structure (module docstring); returns an astropy Table, one row per source in the list's
    order.

    Every group's model is held until the end (the second pass subtracts the neighbours'
    light from the same stamps): about 1 MB per single-band 64 x 64 group, so for long lists
    use :func:`run_catalog`, whose partitions (``partition_size`` objects) bound the memory.

    images : ImageList or list of Image
        Frames (or one cut-out per band) with WCS, PSF, zeropoint and band; several pixel
        scales and PSFs are fine.  Image names must be unique (they name the chi^2 columns).
    sources : SourceList, or a table with ``ra``, ``dec`` (deg) and optional ``id``, ``re``
        (arcsec), ``q``, ``pa`` (deg east of north), ``flux`` (microjansky), ``radius`` (arcsec)
        (:func:`~bayesprof.catalog.sources_from_table`, measured on the first image where
        missing).
    kind : component class
        Profile of every source (default :class:`~bayesprof.Sersic`) but the point sources.
    vary : dict, optional
        Sharing rules (:meth:`~bayesprof.Scene.add`; default: structure shared, flux per band).
    sky : component class or None
        Sky of every stamp (default :class:`~bayesprof.FlatSky`, one level per image).
    point_sources : {None, "auto"}
        Which sources are unresolved, fitted as :class:`~bayesprof.PointSource` (their rows have
        no structure columns and ``point`` true): None (default), those the list marks
        (``point``, a table column or :class:`~bayesprof.catalog.CatalogSource` field);
        ``"auto"``, also those the size test of :func:`~bayesprof.catalog.mark_point_sources`
        finds in the image of sharpest PSF.
    size_classes : sequence of int
        Stamp sides (pixels of the finest image) that groups are rounded up to.
    stamp_scale : float
        The stamp reaches ``stamp_scale`` footprint radii beyond each member (default 2; on 11
        GalSim galaxies the mean flux pull was -0.84 with 1 and -0.08 with 2).
    margin : float, optional
        Arcsec added around that (default: twice the widest PSF's half-light radius).
    neighbours : {"model", "mask"}
        What is done with the sources of other groups.  ``"mask"``: their footprints are masked
        in each stamp; the light of their wings beyond the footprints stays, a sky level that
        absorbs it pulls the fit low (49 noiseless GalSim galaxies on a 12" grid: flux -0.13
        sigma on average, down to -0.58 sigma; -0.012 and -0.06 with ``"model"``).  ``"model"`` (default): after
        that first pass, each group is fitted again, from its first values, with the fitted light
        of every other source within reach (``max(2 x footprint, 10 re)`` of the stamp) rendered
        into its stamps (:meth:`~bayesprof.scene.SceneModel.image_renderer`) and subtracted; the
        footprints stay masked.  About twice the cost.
    neighbour_table : Table, optional
        With ``neighbours="model"``: the neighbours' light from this table (a first pass over the
        whole list, as :func:`run_catalog` does across partitions, in the list's order) instead
        of a first pass over ``groups``; a group that no neighbour's light reaches keeps its row
        there (and, with ``return_fits``, has no fit).
    batch_size : int, optional
        Objects solved together by one vmapped call (default: 1 on a CPU, where a batch runs
        until its slowest member converges and gains nothing; 64 on accelerators).
    max_steps, rtol, atol
        As :func:`~bayesprof.fit_map`.
    nuts : dict or True, optional
        Also sample each group's posterior with NUTS, from its MAP (:func:`~bayesprof.inference.sample_batch`:
        one compiled program per structure, ``batch_size`` groups per call, each with its own
        step size and mass matrix).  ``True``: :data:`NUTS_DEFAULTS`; a dict overrides them
        (``num_warmup``, ``num_samples``, ``num_chains``, ``seed``, ``dense_mass``,
        ``target_accept_prob``, ``max_tree_depth``).  Adds the columns of the module docstring
        ("With NUTS").  Default: MAP only.
    posterior_dir : path, optional
        With ``nuts``: write each group's posterior there, ``group-NNNNNN.nc`` (NetCDF,
        :meth:`~bayesprof.Posterior.to_netcdf`, written atomically), named in the column
        ``posterior``.
    groups : sequence of int, optional
        Fit only these blend groups (indices into ``plan.groups``); their rows come out in
        the list's order.  Default: all.
    plan : CatalogPlan, optional
        :func:`plan_catalog`'s result for these images and sources (computed if not given).
    progress : bool
        A progress bar over the objects (tqdm).
    return_fits : bool
        Also return, per row, the :class:`~bayesprof.MapResult` of the object's group (None for
        a failed one; its ``model`` holds the stamps: :func:`bayesprof.plot.thumbnails`).
    """
    from tqdm.auto import tqdm

    images = images if isinstance(images, ImageList) else ImageList(list(images))
    if len(images) == 0:
        raise ValueError("fit_catalog: no images")
    for im in images:
        if im.psf is None:
            raise ValueError(f"fit_catalog: image {im.name!r} has no PSF")
    kind = comps.Sersic if kind is None else kind
    _check_vary(vary, "fit_catalog")
    if neighbours not in ("model", "mask"):
        raise ValueError(f"fit_catalog: neighbours must be 'model' or 'mask', not {neighbours!r}")
    batch_size = _default_batch_size() if batch_size is None else int(batch_size)
    nuts = nuts_settings(nuts, "fit_catalog", posterior_dir)
    plan = (plan_catalog(images, sources, stamp_scale=stamp_scale, margin=margin, point_sources=point_sources)
            if plan is None else plan)
    chosen = plan.groups if groups is None else [plan.groups[k] for k in groups]
    sources, field_ref, xi, eta, radii = plan.sources, plan.field_ref, plan.xi, plan.eta, plan.radii
    if not chosen:
        return (_table([], images.names), []) if return_fits else _table([], images.names)
    finest = min(images, key=lambda im: im.pixel_scale)
    from scipy.spatial import cKDTree

    tree = cKDTree(np.column_stack([xi, eta]))
    first_pass = neighbours == "mask" or neighbour_table is None
    passes = int(first_pass) + int(neighbours == "model") + int(nuts is not None)
    bar = tqdm(total=passes * sum(len(g.members) for g in chosen), disable=not progress, desc="fit_catalog",
               unit="obj")
    rows, built, fits = {}, {}, {}

    def stamps_of(g):
        stamps, edge = _stamps(g, images, field_ref, size_classes, finest, xi, eta, radii)
        if not stamps:
            raise ValueError("the group falls on no image")
        near = tree.query_ball_point([g.xi, g.eta], np.sqrt(2.0) * g.half + float(radii.max()))
        neighbours = np.array(sorted(set(near) - set(g.members)), dtype=int)
        return _mask_neighbours(stamps, neighbours, field_ref, xi, eta, radii), edge

    for g in chosen:
        _build(g, lambda g=g: stamps_of(g), sky_from_offsets(g.xi, g.eta, field_ref), sources, kind, vary, sky,
               rows, built, bar)
    if first_pass:
        _solve(built, sources, rows, fits, bar, batch_size, max_steps, rtol, atol)
    if neighbours == "model":
        fitted = rows if neighbour_table is None else _rows_in_list_order(neighbour_table, sources)
        reach = _light_reach(fitted, radii)
        again = {}
        for structure, items in built.items():
            for g, model, edge, dt, _ in items:
                fit = fits.get(g.members[0])
                if first_pass and fit is None:  # failed in the first pass: its row says why
                    continue
                t0 = time.perf_counter()
                light = _neighbour_light(model, g, fitted, reach, tree, xi, eta, kind)
                dt += time.perf_counter() - t0 + (fit.time_s if fit is not None else 0.0)
                if light is None:  # nothing to subtract: the first fit stands
                    if first_pass or nuts is None:
                        if not first_pass:
                            rows.update({i: dict(fitted[i]) for i in g.members if i in fitted})
                        bar.update(len(g.members))
                        continue
                    # its first-pass row is in the table: fitted again from it (a step or two),
                    # for the MapResult that NUTS starts from
                else:
                    model = model.with_data([d - l for d, l in zip(model.data, light)])
                again.setdefault(structure, []).append((g, model, edge, dt, _start_from_rows(model, g, fitted)))
        _solve(again, sources, rows, fits, bar, batch_size, max_steps, rtol, atol)
    if nuts is not None:
        _sample([(g, fits[g.members[0]]) for g in chosen if g.members[0] in fits], sources, rows, nuts, posterior_dir,
                batch_size, bar)
    bar.close()
    table = _table([rows[i] for i in sorted(rows)], images.names)
    return (table, [fits.get(i) for i in sorted(rows)]) if return_fits else table


def _check_vary(vary, caller):
    """A one-line ValueError for sharing rules a catalog row cannot hold: a position that is a
    polynomial in wavelength (each band would have its own RA/Dec)."""
    from .wavelength import Chebyshev

    for p in ("xi", "eta"):
        if isinstance((vary or {}).get(p), Chebyshev):
            raise ValueError(f"{caller}: vary[{p!r}] = {vary[p]!r}: a catalog row has one position per source; "
                             f"a centre that moves with wavelength is for Scene.add")


def _build(group, make_stamps, centre, sources, kind, vary, sky, rows, built, bar):
    """Build the scene model of one group (its stamps and the set of its members at a frame's
    edge from ``make_stamps()``, tangent point ``centre``) into ``built[structure]``, or its
    members' failed rows into ``rows``."""
    t0 = time.perf_counter()
    try:
        stamps, edge = make_stamps()
        scene = Scene(ImageList(list(stamps.values()), reference=centre))
        for j, i in enumerate(group.members):
            add_sources(scene, [sources[i]], kind, name=f"s{j}", vary=vary, window_pad=None)
        if sky is not None:
            scene.add("sky", sky)
        model = scene.build()
    except Exception as err:  # an object that cannot be set up is flagged, never stops the run
        for i in group.members:
            rows[i] = _failed_row(sources[i], group, f"{type(err).__name__}: {err}", time.perf_counter() - t0)
        bar.update(len(group.members))
        return
    built.setdefault(model._structure, []).append((group, model, edge, time.perf_counter() - t0, None))


def _rows_in_list_order(table, sources):
    """``{index in sources: row dict}`` of a catalog table (rows matched by id)."""
    where = {str(r["id"]): r for r in table}
    out = {}
    for i, s in enumerate(sources):
        r = where.get(str(s.id))
        if r is not None:
            out[i] = {k: r[k] for k in table.colnames}
    return out


def _start_from_rows(model, group, fitted):
    """Start values (physical) of a group's model from its members' catalog rows (first pass):
    centres, structure and fluxes; the sky and anything the rows lack keep the model's own."""
    from astropy.coordinates import SkyCoord

    start = {}
    for j, i in enumerate(group.members):
        row = fitted.get(i)
        if row is None or "failed" in str(row.get("flags", "")):
            continue
        off = tangent_plane_offsets(SkyCoord(float(row["ra"]), float(row["dec"]), unit="deg"), model.reference)
        for site in model.latent:
            if site.source != f"s{j}":
                continue
            if site.param in ("xi", "eta"):
                value = float(np.ravel(off[0 if site.param == "xi" else 1])[0])
            elif site.poly is not None:  # the Chebyshev coefficients, columns <param>_cheb<k>
                value = [row.get(f"{site.param}_cheb{k}") for k in range(site.poly.size)]
                value = None if None in value else np.asarray(value, float)
                if value is not None and np.all(np.isfinite(value)) and site.prior.contains(value):
                    start[site.name] = value
                continue
            else:
                value = row.get(site.param if site.dim is None else f"{site.param}_{site.label}")
            if value is not None and np.isfinite(float(value)) and site.prior.contains(float(value)):
                start[site.name] = float(value)
    return start


def _fitted_component(row, kind, band, xi, eta):
    """The fitted light of one catalog row as a ``kind`` component (a point source for a row
    marked ``point``) in ``band`` at tangent-plane offsets ``xi``, ``eta`` (arcsec); None when
    the row has no finite fit (failed)."""
    from .scene import parameter_names

    if "failed" in str(row.get("flags", "")) or not (np.isfinite(xi) and np.isfinite(eta)):
        return None
    if row.get("point"):
        kind = comps.PointSource
    kw = {}
    for p in parameter_names(kind):
        if p in ("xi", "eta"):
            continue
        value = row.get(f"{p}_{band}", row.get(p))
        if value is None or not np.isfinite(float(value)):
            return None
        kw[p] = float(value)
    return kind(xi=float(xi), eta=float(eta), **kw)


def _light_reach(fitted, radii):
    """Per source (arcsec): how far its fitted light matters, ``max(2 x footprint radius,
    10 re)``; 0 for a source without a row in ``fitted`` (source index -> catalog row)."""
    reach = np.zeros(len(radii))
    for i, r in fitted.items():
        sizes = [float(x) for k, x in r.items() if x is not None and (k == "re" or (
            k.startswith("re_") and not k.endswith("_err") and "_cheb" not in k))]  # shared, or per band
        re = np.nanmax(sizes) if np.any(np.isfinite(sizes)) else np.nan
        reach[i] = max(2.0 * radii[i], 10.0 * re if np.isfinite(re) else 0.0)
    return reach


def _neighbour_light(model, group, fitted, reach, tree, xi, eta, kind):
    """Counts per pixel in each of a group's stamps (``model``'s images) from the fitted sources
    (``fitted``: source index -> catalog row) of other groups whose light reaches the stamp
    (``reach``, :func:`_light_reach`); None if none does."""
    corner = np.sqrt(2.0) * group.half
    near = tree.query_ball_point([group.xi, group.eta], corner + float(reach.max(initial=0.0)))
    members = set(group.members)
    others = [i for i in sorted(near) if i not in members and i in fitted
              and np.hypot(xi[i] - group.xi, eta[i] - group.eta) < corner + reach[i]]
    if not others:
        return None
    from astropy.coordinates import SkyCoord

    ra, dec = (np.array([float(fitted[i][c]) for i in others]) for c in ("ra", "dec"))
    fxi, feta = (np.atleast_1d(np.asarray(v, float))
                 for v in tangent_plane_offsets(SkyCoord(ra, dec, unit="deg"), model.reference))
    light, any_light = [], False
    for k, im in enumerate(model.images):
        renderer = model.image_renderer(k)
        total = np.zeros(im.shape)
        for i, x, y in zip(others, fxi, feta):
            c = _fitted_component(fitted[i], kind, im.band, x, y)
            if c is not None:
                total += np.asarray(renderer(c))
                any_light = True
        light.append(total)
    return light if any_light else None


def _solve(built, sources, rows, fits_out, bar, batch_size, max_steps, rtol, atol):
    """Fit the built models, structure by structure in batches, into ``rows`` (and each
    member's MapResult into ``fits_out``)."""
    for items in built.values():
        size = min(batch_size, len(items))
        for a in range(0, len(items), size):
            chunk = items[a:a + size]
            try:
                fits = fit_map_batch([m for _, m, _, _, _ in chunk], starts=[v for *_, v in chunk], max_steps=max_steps,
                                     rtol=rtol, atol=atol, batch_size=size)
            except Exception as err:
                for g, _, _, dt, _ in chunk:
                    for i in g.members:
                        rows[i] = _failed_row(sources[i], g, f"{type(err).__name__}: {err}", dt)
                        fits_out.pop(i, None)  # a first pass's fit is not this row's
                    bar.update(len(g.members))
                continue
            for (g, model, edge, dt, _), fit in zip(chunk, fits):
                for j, i in enumerate(g.members):
                    rows[i] = _row(sources[i], g, j, fit, i in edge, (dt + fit.time_s) / len(g.members))
                    fits_out[i] = fit
                bar.update(len(g.members))


#: NUTS settings of a catalog when ``nuts=True`` (per group: 2 chains of 300 warm-up and 500
#: kept draws, enough for a bulk ESS of several hundred in whitened coordinates)
NUTS_DEFAULTS = {"num_warmup": 300, "num_samples": 500, "num_chains": 2, "seed": 0}
_NUTS_KEYS = ("num_warmup", "num_samples", "num_chains", "seed", "dense_mass", "target_accept_prob", "max_tree_depth")


def nuts_settings(nuts, caller="fit_catalog", posterior_dir=None):
    """The NUTS settings of a catalog run: None (MAP only) for None or False, else
    :data:`NUTS_DEFAULTS` updated by ``nuts`` (True or a dict); a one-line ValueError for an
    unknown key, or for a ``posterior_dir`` without NUTS."""
    if nuts is None or nuts is False:
        if posterior_dir is not None:
            raise ValueError(f"{caller}: posterior_dir={str(posterior_dir)!r} without nuts: there are no posteriors "
                             "to write (give nuts=True or a dict of NUTS settings)")
        return None
    given = {} if nuts is True else dict(nuts)
    unknown = sorted(set(given) - set(_NUTS_KEYS))
    if unknown:
        raise ValueError(f"{caller}: nuts: unknown setting(s) {', '.join(unknown)}; known: {', '.join(_NUTS_KEYS)}")
    return {**NUTS_DEFAULTS, **given}


def _object_seed(seed, group):
    """An object's NUTS seed from the run's ``seed`` and its blend group's index: the same
    whatever the batch or partition it is fitted in."""
    return int(np.random.SeedSequence([int(seed), int(group.index)]).generate_state(1)[0])


def _sample(done, sources, rows, nuts, posterior_dir, batch_size, bar):
    """NUTS for each ``(group, MapResult)`` of ``done``, structure by structure in batches; the
    summary columns go into the members' ``rows``, each posterior to ``posterior_dir``."""
    from .inference import sample_batch

    kw = {k: v for k, v in nuts.items() if k != "seed"}
    by_structure = {}
    for g, fit in done:
        by_structure.setdefault(fit.model._structure, []).append((g, fit))
    for items in by_structure.values():
        size = min(batch_size, len(items))
        for a in range(0, len(items), size):
            chunk = items[a:a + size]
            try:
                posts = sample_batch([f.model for _, f in chunk], [f for _, f in chunk], batch_size=size,
                                     seeds=[_object_seed(nuts["seed"], g) for g, _ in chunk], **kw)
            except Exception as err:  # flagged; the MAP rows stand
                for g, _ in chunk:
                    _nuts_failed(rows, g, err)
                    bar.update(len(g.members))
                continue
            for (g, fit), post in zip(chunk, posts):
                try:
                    columns, flags = _nuts_summary(post, nuts["num_chains"])
                    positions = post.sky_positions()
                    per_member = [_nuts_columns(post, positions, f"s{j}", fit.model) for j in range(len(g.members))]
                    file = _write_posterior(post, posterior_dir, g) if posterior_dir is not None else ""
                except Exception as err:  # flagged; the MAP rows stand
                    _nuts_failed(rows, g, err)
                else:
                    for i, own in zip(g.members, per_member):
                        rows[i].update(own, **columns, posterior=file)
                        rows[i]["flags"] = ",".join([f for f in rows[i]["flags"].split(",") if f] + flags)
                bar.update(len(g.members))


def _nuts_failed(rows, group, err):
    """Flag the rows of a group whose NUTS failed (``nuts_failed``, the error in ``status``)."""
    for i in group.members:
        rows[i]["flags"] = ",".join(f for f in (rows[i]["flags"], "nuts_failed") if f)
        rows[i]["status"] = f"{rows[i]['status']}; NUTS: {type(err).__name__}: {err}"


def _nuts_summary(post, num_chains):
    """(columns, flags): the convergence columns of one group's posterior (every parameter of the group):
    ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min``, ``divergences``, ``nuts_steps`` (leapfrog
    steps per kept draw, the mean: what a draw costs in gradients), ``nuts_time_s`` (warm-up
    plus sampling), and its flags: ``divergent``, ``not_mixed`` (R-hat above 1.01 or not finite,
    or a bulk ESS below 100 per chain; Vehtari et al. 2021)."""
    rhat, ess_bulk, ess_tail = post.rhat_max(), post.ess_min("bulk"), post.ess_min("tail")
    divergences = post.num_divergences
    flags = []
    if divergences:
        flags.append("divergent")
    if not (rhat <= 1.01 and ess_bulk >= 100 * num_chains):  # NaN (a stuck chain) fails too
        flags.append("not_mixed")
    steps = float(np.mean(np.asarray(post.tree["sample_stats"]["n_steps"].values)))
    return {"rhat_max": rhat, "ess_bulk_min": ess_bulk, "ess_tail_min": ess_tail, "divergences": divergences,
            "nuts_steps": steps, "nuts_time_s": float(post.warmup_time_s + post.sampling_time_s)}, flags


def _nuts_columns(post, positions, name, model):
    """Posterior mean and sd of one member (``name``, e.g. ``"s0"``) under the MAP columns' names
    plus ``_mean`` and ``_sd``: ``ra_mean``, ``dec_mean`` (deg) with ``ra_sd``, ``dec_sd``
    (arcsec), each structural parameter, flux and magnitude per band, polynomial coefficients
    and their band values (``positions``: the group's :meth:`~bayesprof.Posterior.sky_positions`).
    Angles are averaged about their circular mean."""
    from .results import _mag

    out = {}
    pos = positions
    k = list(pos["source"]).index(name)
    out.update({"ra_mean": float(pos["ra"][k]), "dec_mean": float(pos["dec"][k]),
                "ra_sd": float(pos["ra_err"][k]), "dec_sd": float(pos["dec_err"][k])})

    def put(label, draws):
        out[f"{label}_mean"], out[f"{label}_sd"] = float(np.mean(draws)), float(np.std(draws, ddof=1))

    for site in model.sites:
        if site.source != name or site.param in ("xi", "eta") or site.fixed is not None:
            continue
        draws = post.flat(site.name)
        if site.poly is not None:
            for c in range(site.poly.size):
                put(f"{site.param}_cheb{c}", draws[:, c])
            continue
        label = site.param if site.dim is None else f"{site.param}_{site.label}"
        put(label, draws)
        if site.param == "flux":
            put(f"mag_{site.label if site.dim is not None else 'all'}", _mag(draws))
    for d in model.derived.values():
        if d.source != name or d.coefficients is None:
            continue
        draws = post.flat(d.name)
        put(f"{d.param}_{d.label}", draws)
        if d.param == "flux":
            put(f"mag_{d.label}", _mag(draws))
    return out


def _write_posterior(post, folder, group):
    """Write one group's posterior to ``folder/group-NNNNNN.nc`` whole or not at all; returns
    the file name."""
    name = f"group-{group.index:06d}.nc"
    _replace_atomic(Path(folder) / name, post.to_netcdf)
    return name


#: :func:`fit_cutouts` builds, fits and lets go of the objects in chunks of this many (or of
#: ``batch_size``, if larger), so that its memory does not grow with the list
CUTOUT_CHUNK = 256


def _return_freed_memory():
    """Collect the models a finished chunk let go of and hand the freed memory back to the
    system.  glibc's malloc keeps freed blocks in its heap, fragmented by the small objects
    that outlive each chunk (the rows): 600 single-band cut-outs grew the process by 360 MB in
    chunks of 64 without ``malloc_trim``, by 36 MB with it.  Elsewhere (no glibc) only the
    collection."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to trim
        pass


def fit_cutouts(cutouts, sources=None, *, kind=None, vary=None, sky=comps.FlatSky, size_classes=SIZE_CLASSES,
                batch_size=None, max_steps=200, rtol=1e-8, atol=ATOL, nuts=None, posterior_dir=None, progress=False,
                return_fits=False):
    """MAP fits of one object per set of cut-outs (e.g. survey cut-outs centred on each galaxy,
    with neighbours already masked); returns an astropy Table as :func:`fit_catalog`, one row
    per object in order.

    cutouts : list of ImageList
        The object's images (bands, pixel scales, PSFs may differ from object to object).  Each
        image is padded (masked pixels) about the object to the next of ``size_classes`` along
        each axis, so that objects of similar cut-outs share one compiled program.
    sources : SourceList or table, optional
        One entry per object (RA/Dec and optional ``re``, ``q``, ``pa``; ``id``, integers or
        strings; ``point``, fitted as a point source); what it lacks is estimated on the
        object's own stamps.  Default: the
        object at the centre of its first cut-out (``ImageList.reference``), ids 0, 1, ...

    Other parameters as :func:`fit_catalog`.
    """
    from tqdm.auto import tqdm

    from .catalog import CatalogSource

    cutouts = [c if isinstance(c, ImageList) else ImageList(list(c)) for c in cutouts]
    kind = comps.Sersic if kind is None else kind
    _check_vary(vary, "fit_cutouts")
    batch_size = _default_batch_size() if batch_size is None else int(batch_size)
    nuts = nuts_settings(nuts, "fit_cutouts", posterior_dir)
    if sources is None:
        sources = SourceList(CatalogSource(id=k, ra=float(c.reference.icrs.ra.deg), dec=float(c.reference.icrs.dec.deg))
                             for k, c in enumerate(cutouts))
    elif not isinstance(sources, SourceList):  # what the table lacks is estimated on each object's stamps
        sources = sources_from_table(sources)
    if len(sources) != len(cutouts):
        raise ValueError(f"fit_cutouts: {len(sources)} sources for {len(cutouts)} sets of cut-outs")
    bar = tqdm(total=len(cutouts) * (1 + int(nuts is not None)), disable=not progress, desc="fit_cutouts", unit="obj")
    rows, fits = {}, {}

    def stamps_of(ims):  # each cut-out padded about its own centre: no pixel is lost
        return {im.name: im.stamp((im.nx - 1) / 2.0, (im.ny - 1) / 2.0, (_size_class(im.ny, size_classes),
                                                                         _size_class(im.nx, size_classes)))
                for im in ims}, set()

    # objects in chunks, each built, fitted and let go before the next: the memory held stays
    # that of one chunk however long the list (with return_fits, the fits are kept)
    step = max(batch_size, CUTOUT_CHUNK)
    for start in range(0, len(cutouts), step):
        built, done = {}, {}
        for k in range(start, min(start + step, len(cutouts))):
            g = _Group(k, [k], 0.0, 0.0, 0.0)
            _build(g, lambda ims=cutouts[k]: stamps_of(ims), sources[k].coord, sources, kind, vary, sky, rows, built,
                   bar)
        _solve(built, sources, rows, done, bar, batch_size, max_steps, rtol, atol)
        if nuts is not None:
            _sample([(g, done[g.members[0]]) for items in built.values() for g, *_ in items if g.members[0] in done],
                    sources, rows, nuts, posterior_dir, batch_size, bar)
        if return_fits:
            fits.update(done)
        del built, done
        _return_freed_memory()
    bar.close()
    names = []
    for c in cutouts:
        names += [n for n in c.names if n not in names]
    table = _table([rows[i] for i in sorted(rows)], names)
    return (table, [fits.get(i) for i in sorted(rows)]) if return_fits else table


def _base_row(source, group):
    return {"id": source.id, "group": group.index, "n_group": len(group.members), "point": bool(source.point)}


def _failed_row(source, group, message, dt):
    row = _base_row(source, group)
    row.update({"ra": source.ra, "dec": source.dec, "converged": False, "lm_steps": 0, "status": message,
                "flags": "failed" + (",blended" if len(group.members) > 1 else ""), "time_s": dt})
    return row


def _row(source, group, j, fit, edge, dt):
    from .results import sky_position_table

    model = fit.model
    name = f"s{j}"
    row = _base_row(source, group)
    v, s = fit.values, fit.sigmas
    pos = sky_position_table([name], [float(v[f"{name}.xi"])], [float(v[f"{name}.eta"])],
                             [float(s.get(f"{name}.xi", 0.0))], [float(s.get(f"{name}.eta", 0.0))], model.reference)
    row.update({k: float(pos[k][0]) for k in ("ra", "dec", "ra_err", "dec_err")})
    for site in model.sites:
        if site.source != name or site.param in ("xi", "eta"):
            continue
        if site.poly is not None:  # coefficients <param>_cheb<k>; the band values are derived, below
            coef, coef_err = np.ravel(v[site.name]), np.ravel(s.get(site.name, np.zeros(site.poly.size)))
            for k in range(site.poly.size):
                row[f"{site.param}_cheb{k}"], row[f"{site.param}_cheb{k}_err"] = float(coef[k]), float(coef_err[k])
            continue
        value, err = float(np.ravel(v[site.name])[0]), float(np.ravel(s.get(site.name, 0.0))[0])
        label = site.param if site.dim is None else f"{site.param}_{site.label}"
        row[label], row[f"{label}_err"] = value, err
        if site.param == "flux":
            band = site.label if site.dim is not None else "all"
            row[f"mag_{band}"], row[f"mag_{band}_err"] = flux_to_mag_sigma(value, err)
    for d in model.derived.values():  # a polynomial's value in each band: <param>_<band>
        if d.source != name or d.coefficients is None:
            continue
        value, err = float(v[d.name]), float(s.get(d.name, np.nan))
        row[f"{d.param}_{d.label}"], row[f"{d.param}_{d.label}_err"] = value, err
        if d.param == "flux":
            row[f"mag_{d.label}"], row[f"mag_{d.label}_err"] = flux_to_mag_sigma(value, err)
    for im_name, (chi2, npix) in fit.image_chi2().items():
        row[f"chi2nu_{im_name}"] = chi2 / npix if npix else float("nan")
    flags = []
    if len(group.members) > 1:
        flags.append("blended")
    if edge:
        flags.append("edge")
    mine = lambda f: f.subject == name or f.subject.startswith(name + ".")  # noqa: E731
    if any(f.kind == "prior bound" and mine(f) for f in fit.flags):
        flags.append("prior_bound")
    if any(f.kind == "outside images" and mine(f) for f in fit.flags):
        flags.append("outside")
    if any(f.kind == "noise" for f in fit.flags):
        flags.append("noise")
    if not fit.success:
        flags.append("not_converged")
    row.update({"converged": bool(fit.success), "lm_steps": int(fit.iterations), "status": fit.message,
                "flags": ",".join(flags), "time_s": dt})
    return row


_UNITS = {"ra": "deg", "dec": "deg", "ra_err": "arcsec", "dec_err": "arcsec", "re": "arcsec", "re_err": "arcsec",
          "pa": "deg", "pa_err": "deg", "time_s": "s", "ra_mean": "deg", "dec_mean": "deg", "ra_sd": "arcsec",
          "dec_sd": "arcsec", "re_mean": "arcsec", "re_sd": "arcsec", "pa_mean": "deg", "pa_sd": "deg",
          "nuts_time_s": "s"}


def _table(rows, image_names):
    from astropy.table import Table

    names = []
    for r in rows:
        for k in r:
            if k not in names:
                names.append(k)
    tail = ["converged", "lm_steps", "status", "flags", "time_s"]
    names = [k for k in names if k not in tail] + tail
    cols = {}
    for k in names:
        values = [r.get(k) for r in rows]
        if k in ("status", "flags", "posterior"):
            cols[k] = [str(x) if x is not None else "" for x in values]
        elif k in ("converged", "point"):
            cols[k] = np.array([bool(x) for x in values])
        elif k == "id":  # the list's own ids: integers or strings
            cols[k] = np.array(values)
        elif k in ("group", "n_group", "lm_steps", "divergences"):
            cols[k] = np.array([int(x) if x is not None else -1 for x in values])
        else:
            cols[k] = np.array([float(x) if x is not None else np.nan for x in values])
    table = Table(cols)
    for k, unit in _UNITS.items():
        if k in table.colnames:
            table[k].unit = unit
    for k in table.colnames:
        if "_cheb" in k:  # Chebyshev coefficients on the parameter's link (Scene.add): no unit
            continue
        if k.startswith("re_") or k.startswith("fwhm_") or k == "fwhm":  # re_<band>, re_<band>_mean, ...
            table[k].unit = "arcsec"
        elif k.startswith("flux_"):
            table[k].unit = "uJy"
        elif k.startswith("mag_"):
            table[k].unit = "mag"
            table[k].description = "AB magnitude"
    table.meta["images"] = ",".join(image_names)
    return table


# ---------------------------------------------------------------------------
# many processes and machines: Dask
# ---------------------------------------------------------------------------

def _partitions(plan, size):
    """Blend groups cut into partitions of about ``size`` objects (a group is never split),
    in the groups' order (the list's order of their first members)."""
    parts, current, count = [], [], 0
    for k, g in enumerate(plan.groups):
        if current and count + len(g.members) > size:
            parts.append(current)
            current, count = [], 0
        current.append(k)
        count += len(g.members)
    if current:
        parts.append(current)
    return parts


def _fit_partition(images, plan, groups, fit_kw):
    """One Dask task: the rows of ``groups`` of the whole list's ``plan`` (made once by the
    client and sent to every worker: neighbours outside the partition are masked, or modelled
    from the first pass's table, as in one run; a plan per task would cost each task the whole
    list's measurement, quadratic in the list's length), and with NUTS the groups' posterior
    files (name -> bytes), returned for the client to write, so that the workers need no
    shared file system."""
    import tempfile

    if not fit_kw.get("nuts"):
        return fit_catalog(images, plan.sources, plan=plan, groups=groups, **fit_kw), {}
    with tempfile.TemporaryDirectory(prefix="bayesprof-posteriors-") as folder:
        table = fit_catalog(images, plan.sources, plan=plan, groups=groups, posterior_dir=folder, **fit_kw)
        return table, {f.name: f.read_bytes() for f in Path(folder).glob("group-*.nc")}


def _replace_atomic(path, write):
    """Make ``path`` by ``write(tmp)`` on a temporary file in the same folder (created if need
    be), then a rename: the file is there whole or not at all."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _write_atomic(table, path):
    """Write ``table`` to ``path`` (format from the suffix: .parquet or .fits) whole or not at
    all (:func:`_replace_atomic`)."""
    fmt = "parquet" if Path(path).suffix == ".parquet" else "fits"
    _replace_atomic(path, lambda tmp: table.write(tmp, format=fmt, overwrite=True))


def _pin_to_core(core):
    """Restrict every thread of this process, and so every thread it starts later, to CPU
    ``core`` (Linux; elsewhere nothing is done)."""
    import os

    if not hasattr(os, "sched_setaffinity"):
        return
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), {core})
        except OSError:  # a thread that ended meanwhile
            pass


def _worker_cores(n_workers):
    """The cores that LocalCluster workers 0 .. n_workers - 1 are pinned to, one each: the first
    ``n_workers`` this process may run on; None where that is not possible (more workers than
    cores, or no ``os.sched_getaffinity``)."""
    import os

    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    return cores[:n_workers] if 0 < n_workers <= len(cores) else None


def _pinning_plugin(cores):
    """A Dask worker plugin that pins LocalCluster worker ``k`` (its name) to ``cores[k]``.

    XLA's CPU runtime starts threads of its own whatever ``XLA_FLAGS`` say, so unpinned
    "single-threaded" workers share the cores; pinned, each has its core to itself."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class PinToCore(WorkerPlugin):
        name = "bayesprof-pin-to-core"

        def __init__(self, cores):
            self.cores = list(cores)

        def setup(self, worker):
            _pin_to_core(self.cores[int(worker.name) % len(self.cores)])

    return PinToCore(cores)


def _local_cluster(n_workers, cache_dir):
    """A LocalCluster of single-threaded worker processes (one per core by default); XLA is
    asked to keep to one thread (its runtime starts threads anyway: :func:`run_catalog` pins
    each worker to a core of its own) and the workers share a persistent compilation cache."""
    import os

    from distributed import LocalCluster

    n_workers = n_workers or os.cpu_count() or 1
    env = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
           "OMP_NUM_THREADS": "1",
           "JAX_COMPILATION_CACHE_DIR": os.environ.get("JAX_COMPILATION_CACHE_DIR", str(cache_dir)),
           # every program, the small ones too: each worker would compile them again
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None, env=env)


def run_catalog(images, sources, out, *, client=None, scheduler=None, n_workers=None, partition_size=64,
                retries=2, progress=True, stamp_scale=2.0, margin=None, point_sources=None, **fit_kw):
    """:func:`fit_catalog` on a Dask cluster, written as it goes; returns the final Table.

    The blend groups are cut into partitions of about ``partition_size`` objects (a group is
    never split); each partition is a task, and each finished partition is written at once to
    ``out/parts/part-NNNNN.parquet`` (atomically).  A rerun with the same ``out`` skips the
    partitions already written, so a run killed at any point loses only the partitions in
    flight; a worker that dies has its partition retried (``retries``) on another.  With
    ``neighbours="model"`` (the default, :func:`fit_catalog`) this is done twice: a first pass
    that masks the other groups (``out/first``), then one that subtracts their first-pass light
    (``out/parts``), each over all partitions, so that a neighbour in another partition is
    modelled as in one process.  At the end
    the partitions are joined, in the list's order, into ``out/catalog.parquet`` and
    ``out/catalog.fits``.  ``out/plan.json`` records the partitions; a rerun with another
    partitioning (other sources, ``partition_size``, stamps, ``neighbours`` or ``nuts``) is
    refused rather than mixed.  With ``nuts`` (:func:`fit_catalog`; in the last pass only) each
    group's posterior is written to ``out/posteriors/group-NNNNNN.nc`` by this process (the
    workers return it), before its partition's table.

    client : distributed.Client, optional
        Use this cluster.  ``scheduler``: or connect to one at this address (e.g. one started
        by dask-jobqueue's ``SLURMCluster``/``PBSCluster``, README).  Default: a LocalCluster
        of ``n_workers`` single-threaded processes (default one per core), each pinned to a core
        of its own where there are enough (Linux), closed at the end.
    stamp_scale, margin, point_sources
        As :func:`fit_catalog` (:func:`plan_catalog`, once for the whole list).
    fit_kw
        Passed to :func:`fit_catalog` (``kind``, ``vary``, ``sky``, ``batch_size``, ...).
    """
    import hashlib
    import json

    from astropy.table import Table, vstack
    from tqdm.auto import tqdm

    images = images if isinstance(images, ImageList) else ImageList(list(images))
    out = Path(out)
    neighbours = fit_kw.pop("neighbours", "model")
    if neighbours not in ("model", "mask"):
        raise ValueError(f"run_catalog: neighbours must be 'model' or 'mask', not {neighbours!r}")
    # with neighbours="model" two passes, each over every partition: the first masks the other
    # groups (out/first), the second subtracts their first-pass light (out/parts)
    nuts = nuts_settings(fit_kw.pop("nuts", None), "run_catalog")
    final = {"neighbours": neighbours, "nuts": nuts}  # NUTS in the last pass only
    phases = [("first", {"neighbours": "mask", "nuts": None}), ("parts", final)] if neighbours == "model" \
        else [("parts", final)]
    for folder, _ in phases:
        (out / folder).mkdir(parents=True, exist_ok=True)
    # once: the workers get it
    plan = plan_catalog(images, sources, stamp_scale=stamp_scale, margin=margin, point_sources=point_sources)
    sources = plan.sources
    parts = _partitions(plan, partition_size)
    manifest = {"format": "bayesprof catalog run 4", "n_sources": len(sources),
                "ids": hashlib.sha1(json.dumps([str(s.id) for s in sources]).encode()).hexdigest(),
                "points": hashlib.sha1(json.dumps([str(s.id) for s in sources if s.point]).encode()).hexdigest(),
                "images": images.names, "partitions": parts, "neighbours": neighbours, "nuts": nuts}
    plan_path = out / "plan.json"
    if plan_path.exists():
        old = json.loads(plan_path.read_text())
        if old != manifest:
            raise ValueError(f"run_catalog: {out} holds a run of other sources, another partitioning, other "
                             "point sources, another neighbours mode or other NUTS settings; give a new output folder (or delete it) to start "
                             "afresh")
    else:
        tmp = plan_path.with_name(".plan.json.tmp")
        tmp.write_text(json.dumps(manifest))
        tmp.replace(plan_path)
    path = lambda folder, k: out / folder / f"part-{k:05d}.parquet"  # noqa: E731
    todo = {folder: [k for k in range(len(parts)) if not path(folder, k).exists()] for folder, _ in phases}
    n_objects = lambda ks: sum(len(plan.groups[g].members) for k in ks for g in parts[k])  # noqa: E731
    total = len(phases) * len(sources)
    bar = tqdm(total=total, initial=total - sum(n_objects(t) for t in todo.values()), disable=not progress,
               desc="catalog", unit="obj")

    def joined(folder):
        table = vstack([Table.read(path(folder, k), format="parquet") for k in range(len(parts))],
                       metadata_conflicts="silent")
        order = {str(s.id): i for i, s in enumerate(sources)}
        return table[np.argsort([order[str(i)] for i in table["id"]], kind="stable")]

    own_client = own_cluster = None
    try:
        if any(todo.values()):
            from distributed import Client, as_completed

            if client is None:
                if scheduler is None:
                    own_cluster = _local_cluster(n_workers, out / ".jax_cache")
                client = own_client = Client(scheduler if scheduler is not None else own_cluster)
                cores = _worker_cores(len(own_cluster.workers)) if own_cluster is not None else None
                if cores is not None:  # before any task: the threads XLA starts later inherit the core
                    client.register_plugin(_pinning_plugin(cores))
            [images_f, plan_f] = client.scatter([images, plan], broadcast=True)
        for folder, extra in phases:
            if not todo[folder]:
                continue
            kw = dict(fit_kw, **extra)
            if extra["neighbours"] == "model":  # the first pass's table, in the list's order
                kw["neighbour_table"] = joined("first")
            [kw_f] = client.scatter([kw], broadcast=True)
            futures = {client.submit(_fit_partition, images_f, plan_f, parts[k], kw_f, retries=retries,
                                     key=f"bayesprof-{folder}-{k}-{manifest['ids'][:8]}", pure=False): k
                       for k in todo[folder]}
            for fut in as_completed(futures):
                k = futures[fut]
                table, posteriors = fut.result()
                for name, content in posteriors.items():  # before the part: a written part has all its files
                    _replace_atomic(out / "posteriors" / name, lambda tmp, content=content: tmp.write_bytes(content))
                _write_atomic(table, path(folder, k))
                bar.update(n_objects([k]))
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
    bar.close()
    table = joined("parts")
    _write_atomic(table, out / "catalog.parquet")
    _write_atomic(table, out / "catalog.fits")
    return table

