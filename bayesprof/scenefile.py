"""Scenes as declarative YAML (or JSON) files: never pickle.

:func:`save_scene` writes everything declared on a :class:`~bayesprof.Scene` — sources,
sharing rules, windows, ties, priors, initial and fixed values, the likelihood and the
sky reference — plus a description of each image (name, band, zeropoint, shape, pixel
scale, PSF) used to check that :func:`load_scene` gets the same images back.  Pixel data
are not written: pass the images to :func:`load_scene`.

Format (YAML)::

    bayesprof_scene: 1
    reference: {ra: 180.0, dec: 0.0}          # degrees
    likelihood: normal                       # or student_t (with dof), poisson, {student_t: dof},
                                             # or per image: {F814W: normal, NUV: poisson}
    images:                                  # descriptions, checked on load
      - {name: r, band: r, zeropoint: 22.5, shape: [240, 240], pixel_scale: 0.262,
         wavelength: 6469.6}                 # Angstrom, if the image has one
    sources:
      - name: gal
        kind: Sersic
        vary: {flux: band, re: {chebyshev: 2}}   # shared | band | image | {chebyshev: degree,
                                                 #   log_wavelength: false}: bayesprof.Chebyshev
        images: [r, W1]                      # optional
        windows: {r: {pixel: [x0, x1, y0, y1]}}   # or {sky: [xi_min, xi_max, eta_min, eta_max]}
        knots: [0, 0.5, 1, 2]                # Spline only
    priors: {gal.n: {dist: Uniform, low: 0.5, high: 8.0}}
    init: {gal.re: 5.0}
    fixed: {sky.level: 0.0}
    ties: [[gal_r.xi, gal.xi]]
    bulge_disk: {gal2: [gal2_bulge, gal2_disk]}   # galaxies declared by Scene.add_bulge_disk
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import yaml

from . import components as comps
from .priors import describe, from_description
from .scene import Scene, SkyWindow, Window
from .wavelength import Chebyshev

__all__ = ["save_scene", "load_scene", "scene_to_dict", "scene_from_dict"]

KINDS = {k.__name__: k for k in (comps.Sersic, comps.Exponential, comps.DeVaucouleurs, comps.Gaussian, comps.Moffat,
                                 comps.PointSource, comps.Spline, comps.FlatSky, comps.PlaneSky,
                                 comps.AstrometricOffset, comps.PhotometricOffset)}
_TOP_KEYS = {"bayesprof_scene", "reference", "likelihood", "dof", "images", "sources", "priors", "init", "fixed", "ties",
             "bulge_disk"}
_SOURCE_KEYS = {"name", "kind", "vary", "images", "windows", "knots"}


def _plain(v):
    a = np.asarray(v, dtype=float)
    return float(a) if a.ndim == 0 else a.tolist()


def _vary_to_dict(mode):
    if isinstance(mode, Chebyshev):
        return {"chebyshev": int(mode.degree), **({"log_wavelength": True} if mode.log_wavelength else {})}
    return mode


def _vary_from_dict(vary, where):
    """``vary`` with ``{chebyshev: degree, log_wavelength: bool}`` entries as :class:`Chebyshev`."""
    out = {}
    for p, mode in vary.items():
        if isinstance(mode, dict):
            _unknown(mode, {"chebyshev", "log_wavelength"}, f"{where}.{p}")
            degree, log = mode.get("chebyshev"), mode.get("log_wavelength", False)
            if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0 or not isinstance(log, bool):
                raise ValueError(f"{where}.{p}: a polynomial in wavelength is {{chebyshev: degree (an integer >= 0), "
                                 f"log_wavelength: true | false}}, not {mode!r}")
            mode = Chebyshev(degree, log)
        out[p] = mode
    return out


def _image_description(im):
    d = {"name": im.name, "band": im.band, "zeropoint": im.zeropoint, "shape": list(im.shape),
         "pixel_scale": float(im.pixel_scale)}
    if im.wavelength is not None:
        d["wavelength"] = float(im.wavelength.value)
    return d


def _likelihood_config(scene):
    """The scene's likelihood as a scene file writes it: one form for all images, else a
    mapping image name -> form (``normal``, ``poisson`` or ``{student_t: dof}``)."""
    forms = {name: lk.config() for name, lk in scene.likelihoods.items()}
    first = next(iter(forms.values()))
    return first if all(f == first for f in forms.values()) else forms


def scene_to_dict(scene: Scene) -> dict:
    ref = scene.images.reference.icrs
    out = {
        "bayesprof_scene": 1,
        "reference": {"ra": float(ref.ra.deg), "dec": float(ref.dec.deg)},
        "likelihood": _likelihood_config(scene),
        "images": [_image_description(im) for im in scene.images],
        "sources": [],
        "priors": {k: describe(v) for k, v in scene._priors.items()},
        "init": {k: _plain(v) for k, v in scene._inits.items()},
        "fixed": {k: _plain(v) for k, v in scene._fixed.items()},
        "ties": [[f"{a}.{p}", f"{b}.{q}"] for (a, p), (b, q) in scene._ties.items()],
    }
    if scene._bulge_disks:
        out["bulge_disk"] = {name: list(pair) for name, pair in scene._bulge_disks.items()}
    for s in scene.sources:
        d = {"name": s.name, "kind": s.kind.__name__}
        if s.vary:
            d["vary"] = {p: _vary_to_dict(m) for p, m in s.vary.items()}
        if s.images is not None:
            d["images"] = list(s.images)
        if s.windows:
            d["windows"] = {im: ({"pixel": [w.x0, w.x1, w.y0, w.y1]} if isinstance(w, Window) else
                                 {"sky": [w.xi_min, w.xi_max, w.eta_min, w.eta_max]}) for im, w in s.windows.items()}
        if s.knots is not None and s.kind is comps.Spline:
            d["knots"] = list(s.knots)
        out["sources"].append(d)
    return out


def save_scene(scene: Scene, path) -> None:
    """Write the scene's declaration to ``path`` (``.yaml``/``.yml``, or ``.json``)."""
    path = pathlib.Path(path)
    d = scene_to_dict(scene)
    if path.suffix == ".json":
        path.write_text(json.dumps(d, indent=2))
    else:
        path.write_text(yaml.safe_dump(d, sort_keys=False))


def _unknown(keys, allowed, where):
    bad = sorted(set(keys) - set(allowed))
    if bad:
        raise ValueError(f"{where}: unknown key(s) {bad}; allowed: {sorted(allowed)}")


def _mapping(v, where):
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError(f"{where}: expected a mapping, not {type(v).__name__} {v!r}")
    return v


def _message(err):
    """The text of an exception (a KeyError's without the repr quotes)."""
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


def scene_from_dict(d: dict, images, *, where: str | None = None) -> Scene:
    """Rebuild a scene from :func:`scene_to_dict`'s dictionary and the images.

    ``where`` names the dictionary in error messages (e.g. ``"config.yaml: scene"``, giving
    ``config.yaml: scene.sources[0].vary: ...``); default ``"scene file"``.  Every error is a
    ValueError naming the key at fault.
    """

    def at(key):
        return f"scene file, {key}" if where is None else f"{where}.{key}"

    top = "scene file" if where is None else where
    if not isinstance(d, dict):
        raise ValueError(f"{top}: expected a mapping at the top level, not {type(d).__name__}")
    _unknown(d, _TOP_KEYS, top)
    from astropy.coordinates import SkyCoord

    ref = d.get("reference")
    reference = None
    if ref is not None:
        ref = _mapping(ref, at("reference"))
        _unknown(ref, {"ra", "dec"}, at("reference"))
        try:
            reference = SkyCoord(float(ref["ra"]), float(ref["dec"]), unit="deg")
        except KeyError as err:
            raise ValueError(f"{at('reference')}: missing key {_message(err)!r} (give ra and dec in degrees)") from None
        except (TypeError, ValueError) as err:
            raise ValueError(f"{at('reference')}: {err}") from None
    try:
        scene = Scene(images, reference=reference, likelihood=d.get("likelihood", "normal"), dof=d.get("dof", 5.0))
    except (TypeError, ValueError) as err:
        key = "likelihood" if "likelihood" in str(err) else "dof"
        raise ValueError(f"{at(key)}: {err}") from None
    descs = d.get("images") or []
    if not isinstance(descs, list):
        raise ValueError(f"{at('images')}: expected a list of image descriptions, not {type(descs).__name__}")
    for k, desc in enumerate(descs):
        desc = _mapping(desc, at(f"images[{k}]"))
        name = desc.get("name")
        if name not in scene.images:
            raise ValueError(f"{at(f'images[{k}]')}: image {name!r} is not among the images given "
                             f"({scene.images.names})")
        im = scene.images[name]
        if list(im.shape) != list(desc.get("shape", im.shape)):
            raise ValueError(f"{at(f'images[{k}]')}: image {name!r} has shape {list(im.shape)}, "
                             f"the file says {desc['shape']}")
        if desc.get("band", im.band) != im.band:
            raise ValueError(f"{at(f'images[{k}]')}: image {name!r} has band {im.band!r}, "
                             f"the file says {desc['band']!r}")
        _unknown(desc, ("name", "band", "zeropoint", "shape", "pixel_scale", "wavelength"), at(f"images[{k}]"))
        lam = None if im.wavelength is None else float(im.wavelength.value)
        for key, actual, what, tol in (("pixel_scale", im.pixel_scale, "arcsec/px", 1e-6 * im.pixel_scale),
                                       ("zeropoint", im.zeropoint, "mag", 1e-6),
                                       ("wavelength", lam, "Angstrom", 1e-6 * (lam or 0.0))):
            if key not in desc:
                continue
            if actual is None:
                raise ValueError(f"{at(f'images[{k}].{key}')}: the file gives image {name!r} a wavelength of "
                                 f"{desc[key]!r} Angstrom; the image has none (give it wavelength=...)")
            v = desc[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (
                    key != "zeropoint" and v <= 0):
                raise ValueError(f"{at(f'images[{k}].{key}')}: must be a finite number"
                                 f"{' > 0' if key != 'zeropoint' else ''}, not {v!r}")
            if abs(v - actual) > tol:
                raise ValueError(f"{at(f'images[{k}].{key}')}: image {name!r} has {key} {actual:.6g} {what}, "
                                 f"the file says {v:.6g}")
    sources = d.get("sources") or []
    if not isinstance(sources, list):
        raise ValueError(f"{at('sources')}: expected a list of sources, not {type(sources).__name__}")
    for k, sd in enumerate(sources):
        here = at(f"sources[{k}]")
        sd = _mapping(sd, here)
        _unknown(sd, _SOURCE_KEYS, here)
        for key in ("name", "kind"):
            if key not in sd:
                raise ValueError(f"{here}: missing required key {key!r}")
        kind = sd["kind"]
        if kind not in KINDS:
            raise ValueError(f"{here}.kind: unknown component {kind!r}; known: {sorted(KINDS)}")
        windows = {}
        for im, w in _mapping(sd.get("windows"), f"{here}.windows").items():
            w = _mapping(w, f"{here}.windows.{im}")
            _unknown(w, {"pixel", "sky"}, f"{here}.windows.{im}")
            if len(w) != 1:
                raise ValueError(f"{here}.windows.{im}: give one of 'pixel' or 'sky'")
            try:
                windows[im] = Window(*w["pixel"]) if "pixel" in w else SkyWindow(*w["sky"])
            except TypeError:
                raise ValueError(f"{here}.windows.{im}: a window is a list of 4 numbers "
                                 f"[x0, x1, y0, y1] (pixel) or [xi_min, xi_max, eta_min, eta_max] (sky), "
                                 f"not {next(iter(w.values()))!r}") from None
        vary = _vary_from_dict(_mapping(sd.get("vary"), f"{here}.vary"), f"{here}.vary")
        if sd.get("images") is not None and not isinstance(sd["images"], list):
            raise ValueError(f"{here}.images: expected a list of image names, not {sd['images']!r}")
        try:
            scene.add(sd["name"], KINDS[kind], vary=vary, images=sd.get("images"), windows=windows,
                      knots=sd.get("knots"))
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"{here}: {_message(err)}") from None
    for name, pair in _mapping(d.get("bulge_disk"), at("bulge_disk")).items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise ValueError(f"{at(f'bulge_disk.{name}')}: expected [bulge source, disk source], not {pair!r}")
        try:
            scene._pair_bulge_disk(name, *pair)
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"{at(f'bulge_disk.{name}')}: {_message(err)}") from None
    for section, apply in (("priors", lambda site, v: scene.set_prior(site, from_description(
                                _mapping(v, at(f"priors.{site}"))))),
                           ("init", scene.set_init), ("fixed", scene.fix)):
        for site, v in _mapping(d.get(section), at(section)).items():
            if section != "priors":
                try:
                    if isinstance(v, (bool, str)) or not np.all(np.isfinite(np.asarray(v, dtype=float))):
                        raise ValueError
                except (TypeError, ValueError):
                    raise ValueError(f"{at(f'{section}.{site}')}: expected a finite number (or a list of numbers "
                                     f"for a vector parameter), not {v!r}") from None
            try:
                apply(site, v)
            except (TypeError, ValueError, KeyError) as err:
                msg = _message(err)
                prefix = at(f"{section}.{site}")
                raise ValueError(msg if msg.startswith(prefix) else f"{prefix}: {msg}") from None
    ties = d.get("ties") or []
    if not isinstance(ties, list):
        raise ValueError(f"{at('ties')}: expected a list of [parameter, target] pairs, not {ties!r}")
    for k, pair in enumerate(ties):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise ValueError(f"{at(f'ties[{k}]')}: expected a pair [parameter, target], not {pair!r}")
        try:
            scene.tie(pair[0], pair[1])
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"{at(f'ties[{k}]')}: {_message(err)}") from None
    return scene


def load_scene(path, images) -> Scene:
    """Read a scene file written by :func:`save_scene`; ``images``: the images it describes."""
    path = pathlib.Path(path)
    text = path.read_text()
    d = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return scene_from_dict(d, images)
