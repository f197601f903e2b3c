"""Command line: ``bayesprof fit CONFIG.yaml --out DIR`` (also ``python -m bayesprof.cli fit ...``)
and ``bayesprof catalog CONFIG.yaml --out DIR`` (:func:`run_catalog_config`, below).

A thin layer over the library: :func:`run_config` reads a declarative YAML (or JSON)
configuration, loads the images (:meth:`bayesprof.Image.from_fits`), builds the scene with
:func:`bayesprof.scenefile.scene_from_dict` (the scene-file format), runs :func:`bayesprof.fit_map`
and :func:`bayesprof.sample`, and writes to ``DIR``:

``summary.csv``
    the posterior summary (arviz: mean, sd, HDI, ESS, R-hat, AB magnitudes), or
    the MAP table (value, sigma, magnitudes) when NUTS is switched off
``map.txt``
    the MAP with its Gauss–Newton uncertainties
``map.json``
    the MAP in full (values, sigmas, covariances, chi2 per image, flags):
    :func:`bayesprof.load_map`
``<image>_fit.fits``
    per image: the MAP model, data - model and (data - model)/sigma, with the
    image's WCS and chi2 (:meth:`bayesprof.MapResult.write_images`)
``posterior.nc``
    the arviz DataTree (NetCDF-4; :func:`bayesprof.load_posterior`), NUTS only
``residuals.png``
    data | model | (data - model)/sigma per image at the MAP (asinh stretch,
    colour bars in counts/pixel, N/E arrows, chi2/N), and with NUTS the residual
    of the posterior median model too
``corner.png``
    corner plot of the posterior with the MAP marked, NUTS only
``scene.yaml``
    the scene's declaration (:func:`bayesprof.save_scene`)
``run.json``
    the configuration and its folder, for ``bayesprof plot DIR`` (redraw the
    figures) and ``bayesprof summary DIR`` (print the summaries, rewrite
    ``summary.csv``), which reread the images but do not refit
``positions.ecsv``
    RA, Dec (deg) of every fitted centre and their errors (arcsec), from the
    posterior when NUTS ran, else from the MAP
``lightcurve_<source>.ecsv``, ``lightcurve_<source>.png``
    for every source whose flux varies per image (``vary: {flux: image}``, e.g.
    a supernova): its light curve (:func:`bayesprof.light_curve`: MJD from each
    image's ``time``, band, flux and error in uJy, S/N, AB magnitude or 5-sigma
    upper limit), from the posterior when NUTS ran, else from the MAP

Configuration (relative paths are relative to the configuration file)::

    images:                          # a list; every key but file is optional
      - file: KiDS/G279148fitim.fits # FITS image; "file.fits[1]" or hdu: 1 / hdu: SCI picks the HDU
        name: KiDS                   # default: the file name without .fits
        band: KiDS-r                 # images of one band share a flux; default: one band per image
        sigma: KiDS/G279148sigma.fits    # noise: one of sigma / weight (inverse variance) / variance,
                                         #   each a FITS file or a number
        mask: KiDS/G279148mskim.fits     # non-zero = bad pixel
        segmentation: KiDS/G279148segim.fits  # mask pixels of other objects; keeps the object at
                                         #   the (cut-out's) centre, or {file: ..., keep: ID | [x, y]};
                                         #   "auto": detect them (bayesprof.catalog.segment) and mask
                                         #   all but the object at (or nearest) the centre, or model
                                         #   them (neighbours: model)
        psf: KiDS/G279148psfim.fits  # a PSF image (or PSFEx file), {file: ..., pixel_scale: ...,
                                     #   includes_pixel: true, plane: k (of a PSF cube),
                                     #   interpolant: auto | sinc | quintic},
                                     #   {gaussian: {fwhm: 0.9}} or
                                     #   {moffat: {fwhm: 0.9, beta: 3}} (FWHM in arcsec)
        zeropoint: 0.0               # AB zeropoint, or a header keyword (e.g. MAGZERO); default 0
        exptime: EXPTIME             # data in counts, zeropoint for counts/s (single DECam, BASS,
                                     #   MzLS exposures): zeropoint + 2.5 log10(exptime) is used
        pixel_scale: 0.2             # arcsec/px, only when the header has no celestial WCS
        time: MJD-OBS                # epoch: a number or a header keyword (default MJD-OBS)
        cutout: [x0, x1, y0, y1]     # fit data[y0:y1, x0:x1] only (0-indexed, half-open)
        plane: 2                     # a data cube's plane (0-indexed along the first numpy axis)
        wavelength: hsc2017-i        # effective wavelength: a filter name (speclite's, or
                                     #   bayesprof.wavelength.FILTER_WAVELENGTHS) or a length
                                     #   ("7700 Angstrom"); needed by vary: {re: {chebyshev: 2}}
    neighbours: mask                 # what segmentation: auto does with the other objects it
                                     #   detects: mask them (default) or model them: each becomes
                                     #   a source nb<id> (PointSource if compact, else Sersic;
                                     #   structure shared, flux per band) with a window about its
                                     #   footprint, detected in the finest "auto" image
    scene:                           # the scene-file format (bayesprof.scenefile)
      sources:
        - {name: gal, kind: Sersic, vary: {flux: band}}
        - {name: sky, kind: FlatSky}
      priors: {gal.n: {dist: Uniform, low: 0.5, high: 8.0}}
      # also: init, fixed, ties, windows (per source), likelihood, dof, reference, bulge_disk;
      # vary: {re: {chebyshev: 2}} makes re a polynomial in wavelength (images need a wavelength)
    map: {max_steps: 200}            # fit_map's max_steps, rtol, atol, method
    nuts:                            # sample's settings, or "nuts: false" for the MAP only
      num_warmup: 300
      num_samples: 500
      num_chains: 2
      seed: 0                        # also target_accept_prob, dense_mass, max_tree_depth, chain_method

A malformed configuration (unknown key, missing file, value of the wrong type or out of
range, missing required key) raises :class:`ConfigError` naming the key, e.g.
``G279148.yaml: images[1].psf.gaussian.fwhm: must be a positive number, not -1``; the
command prints it on one line and exits with status 2.  So does an output folder that cannot
be written (a file of that name, a read-only folder).

Outputs are written as one set: into a hidden staging folder beside ``DIR``
(``.DIR.partial-*``), then moved into place when every file is complete, with
``outputs.json`` listing the set.  If ``DIR`` is new, or holds only an earlier run's set, the
staging folder replaces it in one rename (the earlier set is removed once replaced); else
(other files in ``DIR``) the files are moved one by one while an ``INCOMPLETE`` file in
``DIR`` says so, and the earlier set's files the new run does not write are removed.  An
interrupted run (Ctrl-C, kill) thus leaves the earlier set untouched (a killed run also leaves
its staging folder, which the next run into ``DIR`` removes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np
import yaml

from .catalog import neighbour_mask
from .diagnostics import FitWarning

__all__ = ["ConfigError", "run_config", "run_catalog_config", "replot", "resummarise", "load_config", "load_images",
           "build_scene", "main", "console"]

TOP_KEYS = ("images", "scene", "neighbours", "map", "nuts")
NEIGHBOURS = ("mask", "model")
IMAGE_KEYS = ("file", "hdu", "name", "band", "sigma", "weight", "variance", "mask", "segmentation", "psf",
              "zeropoint", "exptime", "pixel_scale", "time", "cutout", "plane", "wavelength")
MAP_KEYS = {"max_steps": "count", "rtol": "positive", "atol": "positive", "method": ("auto", "lm", "lbfgs")}
NUTS_KEYS = {"num_warmup": "count0", "num_samples": "count", "num_chains": "count", "seed": "count0",
             "target_accept_prob": "fraction", "dense_mass": "bool", "max_tree_depth": "count",
             "chain_method": ("auto", "vectorized", "sequential", "parallel")}


class ConfigError(ValueError):
    """A malformed configuration; the message names the file and the key at fault."""


# ----------------------------------------------------------------------------- checking helpers
def _type_name(v):
    return "null" if v is None else {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
                                     "dict": "mapping", "list": "list"}.get(type(v).__name__, type(v).__name__)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_keys(d, allowed, where):
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, not {_type_name(d)} {d!r}")
    bad = [k for k in d if k not in allowed]
    if bad:
        raise ConfigError(f"{where}: unknown key {bad[0]!r}" + (f" (and {bad[1:]})" if bad[1:] else "")
                          + f"; allowed: {', '.join(allowed)}")


def _check_value(v, rule, where):
    """Check one setting against a rule: "count" (int >= 1), "count0" (int >= 0), "positive"
    (number > 0), "fraction" (0 < x < 1), "bool", or a tuple of allowed strings."""
    if isinstance(rule, tuple):
        if v not in rule:
            raise ConfigError(f"{where}: must be one of {', '.join(rule)}, not {v!r}")
    elif rule == "bool":
        if not isinstance(v, bool):
            raise ConfigError(f"{where}: must be true or false, not {v!r}")
    elif rule in ("count", "count0"):
        low = 1 if rule == "count" else 0
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= low):
            raise ConfigError(f"{where}: must be an integer >= {low}, not {v!r}")
    elif rule == "positive":
        if not (_is_number(v) and v > 0):
            raise ConfigError(f"{where}: must be a positive number, not {v!r}")
    elif rule == "fraction":
        if not (_is_number(v) and 0 < v < 1):
            raise ConfigError(f"{where}: must be a number between 0 and 1, not {v!r}")
    return v


def _settings(d, rules, where):
    if d is None or d is True:
        return {}
    _check_keys(d, tuple(rules), where)
    return {k: _check_value(v, rules[k], f"{where}.{k}") for k, v in d.items()}


def _file(v, base, where):
    """A FITS path (optionally with a ``[hdu]`` suffix) made absolute against ``base``; it must exist."""
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{where}: expected a file name, not {_type_name(v)} {v!r}")
    text, suffix = v, ""
    if text.endswith("]") and "[" in text:
        text, suffix = text[: text.rindex("[")], text[text.rindex("["):]
    p = pathlib.Path(text).expanduser()
    if not p.is_absolute():
        p = base / p
    if not p.is_file():
        raise ConfigError(f"{where}: file {v!r} does not exist (looked for {p})")
    return str(p) + suffix


# ----------------------------------------------------------------------------- reading
def load_config(path) -> dict:
    """Read a YAML/JSON configuration file into a dictionary (ConfigError if unreadable)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {str(path)!r} does not exist")
    try:
        text = path.read_text()
        d = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as err:
        msg = " ".join(str(err).split())
        raise ConfigError(f"{path.name}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {msg}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path.name}: expected a mapping with keys {', '.join(TOP_KEYS)}, not {_type_name(d)}")
    return d


def _psf(v, base, where):
    """The ``psf`` entry: a path (given to Image.from_fits) or a PSF object."""
    from .image import _read_fits_2d
    from .psf import GaussianPSF, MoffatPSF, PixelPSF

    if isinstance(v, str):
        return _file(v, base, where)
    if not isinstance(v, dict) or len(v) == 0:
        raise ConfigError(f"{where}: expected a PSF file name or a mapping with one of gaussian, moffat or file, "
                          f"not {_type_name(v)} {v!r}")
    if "file" in v:
        _check_keys(v, ("file", "pixel_scale", "includes_pixel", "plane", "interpolant"), where)
        path = _file(v["file"], base, f"{where}.file")
        scale = v.get("pixel_scale")
        if scale is not None:
            _check_value(scale, "positive", f"{where}.pixel_scale")
        inc = _check_value(v.get("includes_pixel", True), "bool", f"{where}.includes_pixel")
        plane = _check_value(v["plane"], "count0", f"{where}.plane") if "plane" in v else None
        interpolant = _check_value(v.get("interpolant", "auto"), ("auto", "sinc", "quintic"), f"{where}.interpolant")
        try:
            return PixelPSF(_read_fits_2d(path, None, plane)[0], pixel_scale=scale, includes_pixel=inc,
                            interpolant=interpolant)
        except (ValueError, OSError) as err:
            raise ConfigError(f"{where}.file: {err}") from None
    _check_keys(v, ("gaussian", "moffat", "file"), where)
    if len(v) != 1:
        raise ConfigError(f"{where}: give one of gaussian, moffat or file, not {sorted(v)}")
    (kind, params), = v.items()
    here = f"{where}.{kind}"
    allowed = ("fwhm",) if kind == "gaussian" else ("fwhm", "beta")
    _check_keys(params, allowed, here)
    if "fwhm" not in params:
        raise ConfigError(f"{here}: missing required key 'fwhm' (arcsec)")
    fwhm = _check_value(params["fwhm"], "positive", f"{here}.fwhm")
    if kind == "gaussian":
        return GaussianPSF(fwhm)
    beta = params.get("beta", 2.5)
    if not (_is_number(beta) and beta > 1):
        raise ConfigError(f"{here}.beta: must be a number > 1, not {beta!r}")
    return MoffatPSF(fwhm, beta)


def _noise(v, base, where):
    if isinstance(v, str):
        return _file(v, base, where)
    if not (_is_number(v) and v > 0):
        raise ConfigError(f"{where}: expected a FITS file name or a positive number, not {_type_name(v)} {v!r}")
    return float(v)


def _box(v, where):
    if not (isinstance(v, list) and len(v) == 4 and all(isinstance(a, int) and not isinstance(a, bool) for a in v)):
        raise ConfigError(f"{where}: expected [x0, x1, y0, y1] (4 integers, pixels), not {v!r}")
    x0, x1, y0, y1 = v
    if x1 <= x0 or y1 <= y0:
        raise ConfigError(f"{where}: the box {v} is empty (need x0 < x1 and y0 < y1)")
    return v


def _segmentation_mask(v, base, shape, centre, where):
    """Pixels of the segmentation map that belong to another object than the one kept."""
    from .image import _read_fits_2d

    if isinstance(v, dict):
        _check_keys(v, ("file", "keep"), where)
        if "file" not in v:
            raise ConfigError(f"{where}: missing required key 'file'")
        path, keep = _file(v["file"], base, f"{where}.file"), v.get("keep", "centre")
    else:
        path, keep = _file(v, base, where), "centre"
    seg = _read_fits_2d(path)[0]
    if seg.shape != shape:
        raise ConfigError(f"{where}: the segmentation map has shape {list(seg.shape)}, the image {list(shape)}")
    if keep in ("centre", "center"):
        keep = list(centre)
    elif isinstance(keep, int) and not isinstance(keep, bool):
        return neighbour_mask(seg, keep)
    elif not (isinstance(keep, list) and len(keep) == 2 and all(isinstance(a, int) and not isinstance(a, bool)
                                                                for a in keep)):
        raise ConfigError(f"{where}.keep: expected centre, an object ID (integer) or a pixel [x, y], not {keep!r}")
    x, y = keep
    if not (0 <= x < shape[1] and 0 <= y < shape[0]):
        raise ConfigError(f"{where}.keep: pixel {keep} lies outside the image ({shape[1]} x {shape[0]})")
    return neighbour_mask(seg, (x, y))


def _one_image(d, base, where, mask_auto=True):
    """One image of the configuration; ``mask_auto``: mask the neighbours an image with
    ``segmentation: auto`` finds (``neighbours: mask``; with ``model`` they are modelled)."""
    from .image import Image, _read_fits_2d

    _check_keys(d, IMAGE_KEYS, where)
    if "file" not in d:
        raise ConfigError(f"{where}: missing required key 'file'")
    path = _file(d["file"], base, f"{where}.file")
    kw = {}
    hdu = d.get("hdu")
    if hdu is not None and not (isinstance(hdu, (int, str)) and not isinstance(hdu, bool)):
        raise ConfigError(f"{where}.hdu: expected an HDU index or EXTNAME, not {hdu!r}")
    plane = _check_value(d["plane"], "count0", f"{where}.plane") if "plane" in d else None
    if plane is not None:
        kw["plane"] = plane
    for key in ("name", "band"):
        if key in d:
            if not isinstance(d[key], str) or not d[key]:
                raise ConfigError(f"{where}.{key}: expected a non-empty string, not {_type_name(d[key])} {d[key]!r}")
            kw[key] = d[key]
    noise = [k for k in ("sigma", "weight", "variance") if k in d]
    if len(noise) > 1:
        raise ConfigError(f"{where}: give at most one of sigma, weight, variance (got {', '.join(noise)})")
    for k in noise:
        kw[k] = _noise(d[k], base, f"{where}.{k}")
    if "psf" in d:
        kw["psf"] = _psf(d["psf"], base, f"{where}.psf")
    for key in ("zeropoint", "time", "exptime"):
        if key in d:
            v = d[key]
            if not (_is_number(v) or (isinstance(v, str) and v)):
                raise ConfigError(f"{where}.{key}: expected a number or a header keyword, not {_type_name(v)} {v!r}")
            kw[key] = v
    if "pixel_scale" in d:
        kw["pixel_scale"] = float(_check_value(d["pixel_scale"], "positive", f"{where}.pixel_scale"))
    if "wavelength" in d:
        if not isinstance(d["wavelength"], str) or not d["wavelength"]:
            raise ConfigError(f"{where}.wavelength: expected a filter name or a length with its unit (e.g. "
                              f"'7700 Angstrom'), not {_type_name(d['wavelength'])} {d['wavelength']!r}")
        from .wavelength import effective_wavelength

        try:
            kw["wavelength"] = effective_wavelength(d["wavelength"])
        except ValueError as err:
            raise ConfigError(f"{where}.wavelength: {err}") from None
    box = _box(d["cutout"], f"{where}.cutout") if "cutout" in d else None

    try:
        data = _read_fits_2d(path, hdu, plane)[0]
    except (ValueError, OSError) as err:
        raise ConfigError(f"{where}.{'hdu' if hdu is not None else 'file'}: {err}") from None
    shape = data.shape
    mask = None
    if "mask" in d:
        mpath = _file(d["mask"], base, f"{where}.mask")
        try:
            mask = _read_fits_2d(mpath)[0] != 0
        except (ValueError, OSError) as err:
            raise ConfigError(f"{where}.mask: {err}") from None
        if mask.shape != shape:
            raise ConfigError(f"{where}.mask: the mask has shape {list(mask.shape)}, the image {list(shape)}")
    auto = d.get("segmentation") == "auto"
    if "segmentation" in d and not auto:
        if box is None:
            centre = (shape[1] // 2, shape[0] // 2)
        else:
            x0, x1, y0, y1 = max(box[0], 0), min(box[1], shape[1]), max(box[2], 0), min(box[3], shape[0])
            centre = ((x0 + x1) // 2, (y0 + y1) // 2)
        other = _segmentation_mask(d["segmentation"], base, shape, centre, f"{where}.segmentation")
        mask = other if mask is None else (mask | other)
    try:
        im = Image.from_fits(path, hdu, mask=mask, **kw)
    except FileNotFoundError as err:
        raise ConfigError(f"{where}: {err}") from None
    except (ValueError, TypeError, KeyError, OSError) as err:
        msg = str(err)
        key = next((k for k in ("pixel_scale", "zeropoint", "time", "psf", "sigma", "weight", "variance", "wavelength")
                    if k in msg and (k in d or k == "pixel_scale")), None)
        raise ConfigError(f"{where}{'.' + key if key else ''}: {msg}") from None
    if box is not None:
        try:
            im = im.cutout(*box)
        except ValueError as err:
            raise ConfigError(f"{where}.cutout: {err}") from None
    return _mask_neighbours(im) if auto and mask_auto else im


def _central_label(seg):
    """The segment at the image's (cut-out's) centre or, if the centre is sky, the one nearest
    to it; None if nothing was detected."""
    if seg.max() == 0:
        return None
    ys, xs = np.nonzero(seg)
    ny, nx = seg.shape
    k = np.argmin((xs - (nx - 1) / 2) ** 2 + (ys - (ny - 1) / 2) ** 2)
    return int(seg[ys[k], xs[k]])


def _mask_neighbours(image):
    """``segmentation: auto`` (with ``neighbours: mask``): sources detected in the image
    (:func:`bayesprof.catalog.segment`, smoothed by its PSF) and every one masked but the
    object at the image's (cut-out's) centre (:func:`_central_label`)."""
    from .catalog import segment

    seg = segment(image)
    target = _central_label(seg)
    return image if target is None else image.with_mask(neighbour_mask(seg, target))


def _neighbours_mode(config, label):
    mode = config.get("neighbours", "mask")
    if mode not in NEIGHBOURS:
        raise ConfigError(f"{label}: neighbours: expected one of {', '.join(NEIGHBOURS)}, not {mode!r}")
    return mode


def _auto_images(config):
    return [k for k, d in enumerate(config.get("images") or []) if isinstance(d, dict) and d.get("segmentation") == "auto"]


def _model_neighbours(scene, images, auto, label):
    """``neighbours: model``: the objects detected (:func:`bayesprof.catalog.segment`) in the
    finest of the images with ``segmentation: auto``, all but the central one
    (:func:`_central_label`), added to ``scene`` as sources ``nb<id>`` (detection label), each
    with a window about its footprint (:func:`bayesprof.catalog.add_sources`): a
    :class:`~bayesprof.PointSource` if the size test of
    :func:`bayesprof.catalog.mark_point_sources` finds it unresolved in the detection image,
    else a :class:`~bayesprof.Sersic`; structure
    shared, flux per band, started from the detection's measurements.  The scene's own sources
    without a starting position start on the central object."""
    from .catalog import add_sources, mark_point_sources, segment, sources_from_segmentation
    from .components import Sersic

    if not auto:
        raise ConfigError(f"{label}: neighbours: model needs an image with segmentation: auto (the detection image)")
    det = min((images[k] for k in auto), key=lambda im: im.pixel_scale)
    seg = segment(det)
    target = _central_label(seg)
    if target is None:
        return
    detected = sources_from_segmentation(det, seg, reference=scene.images.reference)
    # the scene's own sources describe the central object: those without a starting position
    # start on it (else each would start on the brightest object, which may be a neighbour)
    centre = next(s for s in detected if s.id == target)
    for src in scene.sources:
        if "xi" in src.params and not (scene.has_init(f"{src.name}.xi") or scene.has_init(f"{src.name}.eta")):
            scene.set_init(f"{src.name}.xi", float(centre.xi))
            scene.set_init(f"{src.name}.eta", float(centre.eta))
    found = [s for s in detected if s.id != target]
    taken = {s.name for s in scene.sources} & {f"nb{s.id}" for s in found}
    if taken:
        raise ConfigError(f"{label}: scene: the source name(s) {sorted(taken)} are kept for neighbours: model")
    add_sources(scene, mark_point_sources(found, det), Sersic, name="nb{id}")


def load_images(config: dict, base_dir=".", *, label="config"):
    """The :class:`~bayesprof.ImageList` described by ``config["images"]`` (paths relative to ``base_dir``)."""
    from .image import ImageList

    base = pathlib.Path(base_dir)
    specs = config.get("images")
    if specs is None:
        raise ConfigError(f"{label}: missing required key 'images'")
    if not isinstance(specs, list) or not specs:
        raise ConfigError(f"{label}: images: expected a non-empty list of images, not {specs!r}")
    mask_auto = _neighbours_mode(config, label) == "mask"
    images = [_one_image(d, base, f"{label}: images[{k}]", mask_auto) for k, d in enumerate(specs)]
    names = [im.name for im in images]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"{label}: images: two images are named {dup!r}; give each a distinct name")
    try:
        return ImageList(images)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{label}: images: {err}") from None


def build_scene(config: dict, images, *, label="config"):
    """The :class:`~bayesprof.Scene` of ``config["scene"]`` (the scene-file format) on ``images``."""
    from .scenefile import scene_from_dict

    d = config.get("scene")
    if d is None:
        raise ConfigError(f"{label}: missing required key 'scene'")
    if not isinstance(d, dict):
        raise ConfigError(f"{label}: scene: expected a mapping, not {_type_name(d)}")
    if not d.get("sources"):
        raise ConfigError(f"{label}: scene: missing required key 'sources' (a list of sources)")
    try:
        scene = scene_from_dict(d, images, where=f"{label}: scene")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if _neighbours_mode(config, label) == "model":
        _model_neighbours(scene, images, _auto_images(config), label)
    try:
        scene.build()
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"{label}: scene: {err.args[0] if isinstance(err, KeyError) else err}") from None
    return scene


def check_settings(config: dict, *, label="config"):
    """(map settings, NUTS settings or None): ``config["map"]`` and ``config["nuts"]`` checked."""
    _check_keys(config, TOP_KEYS, label)
    m = config.get("map")
    if m is False:
        raise ConfigError(f"{label}: map: the MAP cannot be switched off (NUTS starts from it); "
                          "give settings such as {max_steps: 200} or leave it out")
    map_kw = _settings(m, MAP_KEYS, f"{label}: map")
    n = config.get("nuts")
    nuts_kw = None if n is False else _settings(n, NUTS_KEYS, f"{label}: nuts")
    return map_kw, nuts_kw


# ----------------------------------------------------------------------------- running
def _map_table_csv(fit, path):
    flags = {f.subject: f.kind for f in fit.flags if f.kind == "prior bound"}
    rows = ["parameter,map,sigma,flag"]
    for name in fit.values:
        if name in fit.sigmas:
            v, s = np.ravel(fit.values[name]), np.ravel(fit.sigmas[name])
            for i in range(v.size):
                n = name if v.size == 1 else f"{name}[{i}]"
                rows.append(f"{n},{v[i]!r},{s[i]!r},{flags.get(n, '')}")
    for name, (mag, sig) in fit.magnitudes().items():
        rows.append(f"{name.replace('.flux', '.mag')},{mag!r},{sig!r},{flags.get(name, '')}")
    pathlib.Path(path).write_text("\n".join(rows) + "\n")


MANIFEST = "outputs.json"
INCOMPLETE = "INCOMPLETE"


def _stage(out: pathlib.Path) -> pathlib.Path:
    """Check that ``out`` can receive the outputs; make and return the staging folder beside it
    (stale ones of killed runs are removed)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    if out.exists() and not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: the directory is not writable")
    parent, name = out.absolute().parent, out.absolute().name
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for stale in parent.glob(f".{name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return pathlib.Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent))
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot write there ({err.strerror or err})") from None


def _publish(stage: pathlib.Path, out: pathlib.Path, names) -> None:
    """Move the complete set of files ``names`` from ``stage`` into ``out`` (module docstring)."""
    (stage / MANIFEST).write_text(json.dumps({"files": sorted(names), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                                             indent=1) + "\n")
    previous = set()
    if (out / MANIFEST).is_file():
        try:
            previous = set(json.loads((out / MANIFEST).read_text())["files"]) | {MANIFEST}
        except (ValueError, KeyError, TypeError):
            previous = set()
    present = {p.name for p in out.iterdir()} if out.is_dir() else set()
    # a new folder, or one holding only an earlier set (and not the working directory): swap folders
    if present <= previous and not (out.is_dir() and out.resolve() == pathlib.Path.cwd().resolve()):
        if out.is_dir():
            old = out.absolute().parent / f".{out.absolute().name}.replaced-{os.getpid()}"
            os.rename(out, old)
            os.rename(stage, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(stage, out)
        return
    marker = out / INCOMPLETE
    marker.write_text("a bayesprof run was interrupted while moving its outputs here: the files listed in "
                      f"{MANIFEST} may be a mix of two runs; rerun it\n")
    for name in previous - set(names) - {MANIFEST}:
        (out / name).unlink(missing_ok=True)
    for name in sorted(names):
        os.replace(stage / name, out / name)
    os.replace(stage / MANIFEST, out / MANIFEST)
    marker.unlink()
    shutil.rmtree(stage, ignore_errors=True)


def run_config(config, out_dir, *, base_dir=None, label=None, progress_bar=True, log=print) -> dict:
    """Run the fit a configuration describes and write the outputs to ``out_dir``.

    ``config``: a path to a YAML/JSON file (relative paths in it are relative to the file) or a
    dictionary (relative to ``base_dir``, default the working directory).  Returns
    ``{"scene", "map", "posterior" (None without NUTS), "files"}``.  Malformed configurations
    raise :class:`ConfigError` before any fitting; ``label`` names the configuration in its
    messages (default: the file name, or ``config``).
    """
    if isinstance(config, (str, pathlib.Path)):
        path = pathlib.Path(config)
        cfg, label = load_config(path), label or path.name
        base = path.resolve().parent if base_dir is None else pathlib.Path(base_dir)
    elif isinstance(config, dict):
        cfg, label = config, label or "config"
        base = pathlib.Path.cwd() if base_dir is None else pathlib.Path(base_dir)
    else:
        raise ConfigError(f"config must be a file name or a mapping, not {type(config).__name__}")
    say = log or (lambda *a, **k: None)
    t_start = time.perf_counter()

    # everything that can be checked is checked before the (slow) fit
    map_kw, nuts_kw = check_settings(cfg, label=label)
    images = load_images(cfg, base, label=label)
    say("images:", *images, sep="\n  ")
    scene = build_scene(cfg, images, label=label)
    say(scene)

    out = pathlib.Path(out_dir)
    stage = _stage(out)
    try:
        (stage / "run.json").write_text(json.dumps({"config": cfg, "base_dir": str(pathlib.Path(base).resolve())},
                                                   indent=1, default=str))
        fit, post, files = _write_outputs(scene, stage, map_kw, nuts_kw, label, progress_bar, say)
        files["run.json"] = stage / "run.json"
        _publish(stage, out, [f.name for f in files.values()])
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    files = {name: out / path.name for name, path in files.items()}
    say(f"\nwrote {', '.join(sorted(files))} to {out}/ in {time.perf_counter() - t_start:.0f} s")
    return {"scene": scene, "map": fit, "posterior": post, "files": files}


def _chi2_line(fit):
    """``chi2/N per image: g 0.912 (13759 px), ...`` for the log."""
    return "chi2/N per image: " + ", ".join(f"{name} {c / max(n, 1):.3f} ({n} px)"
                                            for name, (c, n) in fit.image_chi2().items())


def _max_rhat_text(summary):
    """The largest finite R-hat of an arviz summary, or why there is none (one chain)."""
    rhat = summary["r_hat"].to_numpy(dtype=float) if "r_hat" in summary else np.array([])
    return f"{np.max(rhat[np.isfinite(rhat)]):.3f}" if np.isfinite(rhat).any() else "n/a (one chain)"


def _write_outputs(scene, out, map_kw, nuts_kw, label, progress_bar, say):
    """Fit ``scene`` and write every output into the folder ``out``: ``(MapResult, Posterior or
    None, {name: path})``.  The fit's warnings are in the MAP table (``WARNING:`` lines)."""
    from .inference import fit_map, sample
    from .scenefile import save_scene

    files = {}
    files["scene.yaml"] = out / "scene.yaml"
    save_scene(scene, files["scene.yaml"])

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)  # they are lines of the MAP table
            fit = fit_map(scene, **map_kw)
    except ValueError as err:  # e.g. an init outside its prior's support
        raise ConfigError(f"{label}: {err}") from None
    say(f"\nMAP ({fit.time_s:.1f} s including compilation):\n{fit.table()}")
    say(_chi2_line(fit))
    files["map.txt"] = out / "map.txt"
    mags = "\n".join(f"{k.replace('.flux', '.mag'):<24}{m:>14.4f}{s:>12.3g}" for k, (m, s) in fit.magnitudes().items())
    files["map.txt"].write_text(fit.table() + ("\nAB magnitudes:\n" + mags if mags else "") + "\n")
    files["map.json"] = out / "map.json"
    fit.save(files["map.json"])
    for path in fit.write_images(out):
        files[path.name] = path

    post = None
    files["summary.csv"] = out / "summary.csv"
    if nuts_kw is None:
        _map_table_csv(fit, files["summary.csv"])
    else:
        post = sample(scene, fit, progress_bar=progress_bar, **nuts_kw)
        summary = post.summary()
        summary.to_csv(files["summary.csv"])
        say("\n" + summary.to_string())
        rhat = _max_rhat_text(summary)
        say(f"NUTS: {post.posterior.sizes['chain']} chains ({post.tree.attrs['chain_method']}) x "
            f"{post.posterior.sizes['draw']} draws; "
            f"max R-hat {rhat}; min bulk ESS {post.ess_min():.0f}; {post.num_divergences} divergences; "
            f"warm-up {post.warmup_time_s:.1f} s (including compilation), sampling {post.sampling_time_s:.1f} s")
        files["posterior.nc"] = out / "posterior.nc"
        post.to_netcdf(files["posterior.nc"])
    positions = (post if post is not None else fit).sky_positions()
    if len(positions):
        files["positions.ecsv"] = out / "positions.ecsv"
        positions.write(files["positions.ecsv"], format="ascii.ecsv", overwrite=True)
    from .lightcurve import light_curve

    curves = {}
    for name in _transients(scene):  # sources with a flux per image: their light curves
        curves[name] = lc = light_curve(post if post is not None else fit, name)
        files[f"lightcurve_{name}.ecsv"] = out / f"lightcurve_{name}.ecsv"
        lc.write(files[f"lightcurve_{name}.ecsv"], format="ascii.ecsv", overwrite=True)
        say(f"\nlight curve of {name} ({lc.meta['method']}):\n" + "\n".join(lc.pformat(max_width=-1, max_lines=-1)))
    files.update(_figures(scene, fit, post, curves, out))
    return fit, post, files


def _transients(scene):
    """The sources with a latent flux per image (a light curve each)."""
    return list(dict.fromkeys(s.source for s in scene.build().sites
                              if s.param == "flux" and s.dim == "image" and s.fixed is None))


def _figures(scene, fit, post, curves, out):
    """Draw ``residuals.png``, ``corner.png`` (with a posterior) and ``lightcurve_<source>.png``
    (``curves``: {source: table}) into ``out``; ``{name: path}``."""
    import matplotlib.pyplot as plt

    from . import plot

    files = {}
    if post is not None:
        truths = {k: float(v) for k, v in fit.values.items() if np.ndim(v) == 0 and k in fit.sigmas}
        fig = post.corner(truths=truths)
        fig.suptitle("posterior (blue lines: MAP)", fontsize=10)
        files["corner.png"] = out / "corner.png"
        fig.savefig(files["corner.png"], dpi=70)
        plt.close(fig)
    files["residuals.png"] = out / "residuals.png"
    fig = plot.residuals(scene, fit, posterior=post)  # with NUTS: the posterior-predictive residual too
    fig.savefig(files["residuals.png"], dpi=80)
    plt.close(fig)
    for name, lc in curves.items():
        fig = plot.light_curve(lc)
        files[f"lightcurve_{name}.png"] = out / f"lightcurve_{name}.png"
        fig.savefig(files[f"lightcurve_{name}.png"], dpi=80, bbox_inches="tight")
        plt.close(fig)
    return files


def _finished(out_dir):
    """(scene, MapResult, Posterior or None, light-curve tables) of a finished output folder,
    its images re-read from the configuration recorded in ``run.json`` (no refit)."""
    from astropy.table import Table

    from .inference import load_map
    from .results import load_posterior
    from .scenefile import load_scene

    out = pathlib.Path(out_dir)
    if not (out / MANIFEST).is_file():
        raise ConfigError(f"{out}: not a finished bayesprof output folder (no {MANIFEST})")
    if (out / INCOMPLETE).exists():
        raise ConfigError(f"{out}: holds an interrupted run's outputs ({INCOMPLETE}); rerun the fit")
    try:
        run = json.loads((out / "run.json").read_text())
    except FileNotFoundError:
        raise ConfigError(f"{out}: no run.json (written by bayesprof from this version on); rerun the fit") from None
    images = load_images(run["config"], pathlib.Path(run["base_dir"]), label=f"{out}/run.json")
    try:
        scene = load_scene(out / "scene.yaml", images)
    except ValueError as err:
        raise ConfigError(f"{out}/scene.yaml: {err}") from None
    post = load_posterior(out / "posterior.nc") if (out / "posterior.nc").is_file() else None
    curves = {p.stem[len("lightcurve_"):]: Table.read(p, format="ascii.ecsv") for p in sorted(out.glob("lightcurve_*.ecsv"))}
    return scene, load_map(out / "map.json"), post, curves


def replot(out_dir, log=print):
    """Redraw the figures of a finished output folder (``bayesprof plot DIR``), each replaced
    whole; returns their paths."""
    out = pathlib.Path(out_dir)
    scene, fit, post, curves = _finished(out)
    stage = _stage(out)
    try:
        files = _figures(scene, fit, post, curves, stage)
        for path in files.values():
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log(f"redrew {', '.join(sorted(files))} in {out}/")
    return [out / name for name in files]


def resummarise(out_dir, log=print):
    """Print the MAP table, chi2/N per image, the sky positions and (with NUTS) the posterior
    summary of a finished output folder (``bayesprof summary DIR``); ``summary.csv`` is
    rewritten whole."""
    out = pathlib.Path(out_dir)
    _, fit, post, _ = _finished(out)
    log(fit.table())
    log(_chi2_line(fit))
    tmp = out / f".summary.csv.tmp-{os.getpid()}"
    if post is None:
        _map_table_csv(fit, tmp)
    else:
        summary = post.summary()
        summary.to_csv(tmp)
        log("\n" + summary.to_string())
        log(f"max R-hat {_max_rhat_text(summary)}; min bulk ESS {post.ess_min():.0f}; {post.num_divergences} divergences")
    os.replace(tmp, out / "summary.csv")


# ----------------------------------------------------------------------------- command line
CATALOG_KEYS = ("images", "sources", "model", "neighbours", "stamps", "map", "nuts", "run")
CATALOG_SOURCE_KEYS = ("file", "ra", "dec", "id", "re", "q", "pa", "flux", "point", "detect")
DETECT_KEYS = {"image": "name", "threshold": "positive", "min_area": "count"}
CATALOG_MODEL_KEYS = ("kind", "vary", "sky")
STAMP_KEYS = {"stamp_scale": "positive", "margin": "positive"}
RUN_KEYS = {"partition_size": "count", "workers": "count", "batch_size": "count", "dask": "bool", "scheduler": "name"}
CATALOG_MAP_KEYS = {"max_steps": "count", "rtol": "positive", "atol": "positive"}
# NUTS per object: each object's chains are vectorised (no chain_method)
CATALOG_NUTS_KEYS = {k: v for k, v in NUTS_KEYS.items() if k != "chain_method"}


def _catalog_settings(d, rules, where):
    """As :func:`_settings`, with the rule "name" (a non-empty string) too."""
    out = {}
    if d is None or d is True:
        return out
    _check_keys(d, tuple(rules), where)
    for k, v in d.items():
        if rules[k] == "name":
            if not isinstance(v, str) or not v:
                raise ConfigError(f"{where}.{k}: expected a non-empty string, not {v!r}")
            out[k] = v
        else:
            out[k] = _check_value(v, rules[k], f"{where}.{k}")
    return out


def _catalog_sources(d, images, base, where):
    """The source list of a catalog configuration: a table file with column names, or detection."""
    from astropy.table import Table

    from .catalog import mark_point_sources, segment, sharpest_image, sources_from_segmentation, sources_from_table

    if d is None:
        raise ConfigError(f"{where}: missing (a table file of RA/Dec, or detect: {{image: ...}})")
    if isinstance(d, str):
        d = {"file": d}
    _check_keys(d, CATALOG_SOURCE_KEYS, where)
    if ("file" in d) == ("detect" in d):
        raise ConfigError(f"{where}: give either file (a table of RA/Dec) or detect (detection on an image)")
    point = d.get("point", "point")
    if not isinstance(point, str) or ("detect" in d and point not in ("point", "auto")):
        raise ConfigError(f"{where}.point: expected auto (a size test on the sharpest image)"
                          + ("" if "detect" in d else " or the name of a true/false column") + f", not {point!r}")
    if "detect" in d:
        det = _catalog_settings(d["detect"] if isinstance(d["detect"], dict) else {}, DETECT_KEYS, f"{where}.detect")
        name = det.pop("image", images.names[0])
        if name not in images.names:
            raise ConfigError(f"{where}.detect.image: no image named {name!r}; images are {images.names}")
        im = images[name]
        found = sources_from_segmentation(im, segment(im, **det), reference=images.reference)
        return mark_point_sources(found, sharpest_image(images)) if point == "auto" else found
    path = pathlib.Path(_file(d["file"], base, f"{where}.file"))
    try:
        table = Table.read(path)
    except Exception as err:  # astropy raises many kinds for unreadable tables
        raise ConfigError(f"{where}.file: cannot read {path.name} as a table: {err}") from None
    cols = {k: d.get(k, k) for k in ("ra", "dec", "id", "re", "q", "pa", "flux")}
    for k in ("ra", "dec"):
        if cols[k] not in table.colnames:
            raise ConfigError(f"{where}: the table {path.name} has no column {cols[k]!r} ({k}); columns: "
                              f"{', '.join(table.colnames)}")
    if point not in ("point", "auto") and point not in table.colnames:
        raise ConfigError(f"{where}.point: the table {path.name} has no column {point!r}; columns: "
                          f"{', '.join(table.colnames)}")
    cols = {k: (v if v in table.colnames else None) for k, v in cols.items()}
    cols["point"] = "point" if point == "auto" else point
    try:
        found = sources_from_table(table, image=images[0], **cols)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    return mark_point_sources(found, sharpest_image(images)) if point == "auto" else found


def run_catalog_config(config, out_dir, *, base_dir=None, label=None, workers=None, scheduler=None, progress=True,
                       log=print):
    """Fit a catalog as a configuration describes (:func:`bayesprof.survey.run_catalog`)::

        images: [...]                     # as for `bayesprof fit`: frames (or cut-outs) per band
        sources: {file: objects.fits, ra: RA, dec: DEC, id: ID}   # columns re, q, pa, flux optional
          # or: sources: {detect: {image: r, threshold: 3, min_area: 10}}
          # point: STAR (a true/false column: point sources), or point: auto (a size test too)
        model: {kind: Sersic, vary: {flux: band}, sky: FlatSky}   # sky: none for no sky;
          # vary: {re: {chebyshev: 2}}: re a polynomial in wavelength (columns re_cheb<k>, re_<band>)
        neighbours: model                 # or mask: other groups' light subtracted (a second pass) or masked
        stamps: {stamp_scale: 2, margin: 1.0}
        map: {max_steps: 200}
        nuts: {num_warmup: 300, num_samples: 500, num_chains: 2}   # optional: NUTS per object, from its MAP
        run: {partition_size: 64, workers: 2, batch_size: 1, dask: true, scheduler: tcp://host:8786}

    Writes ``DIR/catalog.fits``, ``DIR/catalog.parquet``, ``DIR/parts/`` (one Parquet file per
    finished partition; a rerun skips them) and ``DIR/plan.json``; returns the table.  With
    ``nuts`` (``true`` for the defaults of :data:`bayesprof.survey.NUTS_DEFAULTS`) the table
    gains posterior means, sds, R-hat and ESS columns, and each group's posterior is written to
    ``DIR/posteriors/``.  With ``dask: false`` the objects are fitted in this process and only
    the two catalog files (and the posteriors) are written."""
    from .scenefile import KINDS
    from .survey import fit_catalog, run_catalog, _write_atomic

    if isinstance(config, (str, pathlib.Path)):
        path = pathlib.Path(config)
        cfg, label = load_config(path), label or path.name
        base = path.resolve().parent if base_dir is None else pathlib.Path(base_dir)
    else:
        cfg, label = config, label or "config"
        base = pathlib.Path.cwd() if base_dir is None else pathlib.Path(base_dir)
    _check_keys(cfg, CATALOG_KEYS, label)
    model = cfg.get("model") or {}
    _check_keys(model, CATALOG_MODEL_KEYS, f"{label}: model")
    kind = model.get("kind", "Sersic")
    if kind not in KINDS or KINDS[kind].is_sky or KINDS[kind].is_nuisance():
        raise ConfigError(f"{label}: model.kind: must be a source profile such as Sersic, not {kind!r}")
    sky = model.get("sky", "FlatSky")
    if sky not in (None, "none") and (sky not in KINDS or not KINDS[sky].is_sky):
        raise ConfigError(f"{label}: model.sky: must be FlatSky, PlaneSky or none, not {sky!r}")
    vary = model.get("vary") or {}
    from .scene import VARY_MODES, parameter_names

    _check_keys(vary, tuple(parameter_names(KINDS[kind])), f"{label}: model.vary")
    for p, mode in vary.items():
        if not isinstance(mode, dict):  # {chebyshev: degree, log_wavelength: bool} is checked below
            _check_value(mode, VARY_MODES, f"{label}: model.vary.{p}")
    try:
        from .scenefile import _vary_from_dict
        from .survey import _check_vary

        vary = _vary_from_dict(vary, f"{label}: model.vary")
        _check_vary(vary, f"{label}: model.vary")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    fit_kw = {"kind": KINDS[kind], "vary": vary or None, "sky": None if sky in (None, "none") else KINDS[sky],
              "neighbours": _check_value(cfg.get("neighbours", "model"), ("model", "mask"), f"{label}: neighbours")}
    fit_kw.update(_catalog_settings(cfg.get("map"), CATALOG_MAP_KEYS, f"{label}: map"))
    nuts = cfg.get("nuts", False)
    if nuts is not False:  # nuts: true (the defaults) or {num_samples: ..., ...}
        fit_kw["nuts"] = _catalog_settings(nuts, CATALOG_NUTS_KEYS, f"{label}: nuts")
    plan_kw = _catalog_settings(cfg.get("stamps"), STAMP_KEYS, f"{label}: stamps")
    run = _catalog_settings(cfg.get("run"), RUN_KEYS, f"{label}: run")
    if "batch_size" in run:
        fit_kw["batch_size"] = run.pop("batch_size")
    images = load_images(cfg, base, label=label)
    sources = _catalog_sources(cfg.get("sources"), images, base, f"{label}: sources")
    log(f"{len(sources)} sources on {len(images)} images ({', '.join(images.names)})")
    t0 = time.perf_counter()
    out = pathlib.Path(out_dir)
    if run.get("dask", True):
        table = run_catalog(images, sources, out, n_workers=workers or run.get("workers"),
                            scheduler=scheduler or run.get("scheduler"), partition_size=run.get("partition_size", 64),
                            progress=progress, **plan_kw, **fit_kw)
    else:
        out.mkdir(parents=True, exist_ok=True)
        posterior_dir = out / "posteriors" if fit_kw.get("nuts") is not None else None
        table = fit_catalog(images, sources, progress=progress, posterior_dir=posterior_dir, **plan_kw, **fit_kw)
        _write_atomic(table, out / "catalog.parquet")
        _write_atomic(table, out / "catalog.fits")
    n_ok = int(np.sum(table["converged"])) if len(table) else 0
    log(f"{n_ok} of {len(table)} objects converged; wrote {out}/catalog.fits and catalog.parquet in "
        f"{time.perf_counter() - t0:.0f} s")
    if "rhat_max" in table.colnames:
        flagged = {f: sum(f in str(x).split(",") for x in table["flags"]) for f in ("not_mixed", "divergent",
                                                                                    "nuts_failed")}
        log(f"NUTS: posteriors in {out}/posteriors/; " + ", ".join(f"{n} {f}" for f, n in flagged.items())
            + " (flags column)")
    return table


COMPILE_CACHE_HELP = ("do not keep the compiled programs between runs (by default they go to JAX's persistent "
                      "compilation cache in $JAX_COMPILATION_CACHE_DIR, else ~/.cache/bayesprof/jax, so a later "
                      "run of a scene of the same structure skips most of the compilation)")


def compile_cache_dir():
    """Where the command keeps compiled programs between runs: ``$JAX_COMPILATION_CACHE_DIR``
    if set, else ``bayesprof/jax`` under ``$XDG_CACHE_HOME`` (default ``~/.cache``)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return pathlib.Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "bayesprof" / "jax"


def _use_compile_cache():
    """JAX's persistent compilation cache in :func:`compile_cache_dir` (before anything is
    compiled; JAX keys each entry by the program, its options and JAX's version, so an entry of
    another version is never used).  The Dask workers of ``bayesprof catalog`` inherit it."""
    import jax

    path = compile_cache_dir()
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(path)
    jax.config.update("jax_compilation_cache_dir", str(path))


def _parser():
    p = argparse.ArgumentParser(prog="bayesprof", description="Joint Bayesian fits of galaxies to many images.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    f = sub.add_parser("fit", help="fit the scene a YAML configuration describes (MAP, then NUTS)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("config", metavar="CONFIG.yaml", help="the configuration (YAML or JSON)")
    f.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    f.add_argument("--no-nuts", action="store_true", help="MAP only (overrides the configuration's nuts)")
    for name in ("num-warmup", "num-samples", "num-chains", "seed"):
        f.add_argument(f"--{name}", type=int, metavar="N", help=f"override nuts.{name.replace('-', '_')}")
    f.add_argument("--no-progress", action="store_true", help="no NUTS progress bar")
    f.add_argument("--no-compile-cache", action="store_true", help=COMPILE_CACHE_HELP)
    c = sub.add_parser("catalog", help="fit every object of a source list in a set of images (Dask)",
                       description=run_catalog_config.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("config", metavar="CONFIG.yaml", help="the catalog configuration (YAML or JSON)")
    c.add_argument("--out", required=True, metavar="DIR", help="output folder (a rerun skips finished partitions)")
    c.add_argument("--workers", type=int, metavar="N", help="local Dask workers (default: one per core)")
    c.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.add_argument("--no-compile-cache", action="store_true", help=COMPILE_CACHE_HELP)
    for name, text in (("plot", "redraw the figures of a finished output folder (no refit)"),
                       ("summary", "print the MAP and posterior summaries of a finished output folder (no refit)")):
        sp = sub.add_parser(name, help=text, description=text)
        sp.add_argument("out", metavar="DIR", help="the output folder of `bayesprof fit`")
    return p


def _one_device_per_chain(cfg, label):
    """Before JAX starts: one XLA CPU device per NUTS chain (``numpyro.set_host_device_count``),
    so that ``chain_method: auto`` (the default) or ``parallel`` runs the chains side by side
    on a multi-core CPU.  No effect on a GPU, or once JAX has started."""
    _, nuts = check_settings(cfg, label=label)
    if nuts is None or nuts.get("chain_method", "auto") not in ("auto", "parallel"):
        return
    import inspect

    import numpyro

    from .inference import sample

    chains = nuts.get("num_chains", inspect.signature(sample).parameters["num_chains"].default)
    if chains > 1:
        numpyro.set_host_device_count(chains)


def main(argv=None, *, device_per_chain=False) -> int:
    """The ``bayesprof`` command; returns the exit status (2 for a malformed configuration).

    ``device_per_chain``: give JAX one CPU device per NUTS chain before it starts (what the
    console script does; it changes ``XLA_FLAGS`` for the rest of the process)."""
    args = _parser().parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    if args.command in ("fit", "catalog") and not args.no_compile_cache:
        _use_compile_cache()
    try:
        if args.command in ("plot", "summary"):
            (replot if args.command == "plot" else resummarise)(args.out, log=lambda *a, **k: print(*a, **k, flush=True))
            return 0
        if args.command == "catalog":
            path = pathlib.Path(args.config)
            run_catalog_config(path, args.out, workers=args.workers, scheduler=args.scheduler,
                               progress=not args.no_progress, log=lambda *a, **k: print(*a, **k, flush=True))
            return 0
        path = pathlib.Path(args.config)
        cfg = load_config(path)
        overrides = {k: getattr(args, k) for k in ("num_warmup", "num_samples", "num_chains", "seed")
                     if getattr(args, k) is not None}
        if args.no_nuts:
            cfg["nuts"] = False
        elif overrides:
            nuts = cfg.get("nuts")
            if nuts is False:
                nuts = {}
            if nuts is not None and nuts is not True and not isinstance(nuts, dict):
                raise ConfigError(f"{path.name}: nuts: expected a mapping or false, not {nuts!r}")
            cfg["nuts"] = {**(nuts if isinstance(nuts, dict) else {}), **overrides}
        if device_per_chain:
            _one_device_per_chain(cfg, path.name)
        run_config(cfg, args.out, base_dir=path.resolve().parent, label=path.name,
                   progress_bar=not args.no_progress, log=lambda *a, **k: print(*a, **k, flush=True))
    except ConfigError as err:
        print(f"bayesprof: error: {err}", file=sys.stderr)
        return 2
    return 0


def console() -> None:
    """Entry point of the ``bayesprof`` console script."""
    sys.exit(main(device_per_chain=True))


if __name__ == "__main__":
    console()
