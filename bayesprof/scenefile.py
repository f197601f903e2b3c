"""Scenes as declarative YAML (or JSON) files: never pickle.

:func:`save_scene` writes everything declared on a :class:`~bayesprof.Scene` — sources,
sharing rules, windows, ties, priors, initial and fixed values, the likelihood and the
sky reference — plus a description of each image (name, band, zeropoint, shape, pixel
scale, PSF) used to check that :func:`load_scene` gets the same images back.  Pixel data
are not written: pass the images to :func:`load_scene`.

Format (YAML)::

    bayesprof_scene: 1
    reference: {ra: 180.0, dec: 0.0}          # degrees
    likelihood: normal                       # or student_t (with dof), poisson
    images:                                  # descriptions, checked on load
      - {name: r, band: r, zeropoint: 22.5, shape: [240, 240], pixel_scale: 0.262}
    sources:
      - name: gal
        kind: Sersic
        vary: {flux: band}                   # shared | band | image
        images: [r, W1]                      # optional
        windows: {r: {pixel: [x0, x1, y0, y1]}}   # or {sky: [xi_min, xi_max, eta_min, eta_max]}
        knots: [0, 0.5, 1, 2]                # Spline only
    priors: {gal.n: {dist: Uniform, low: 0.5, high: 8.0}}
    init: {gal.re: 5.0}
    fixed: {sky.level: 0.0}
    ties: [[gal_r.xi, gal.xi]]
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import yaml

from . import components as comps
from .priors import describe, from_description
from .scene import Scene, SkyWindow, Window

__all__ = ["save_scene", "load_scene", "scene_to_dict", "scene_from_dict"]

KINDS = {k.__name__: k for k in (comps.Sersic, comps.Exponential, comps.DeVaucouleurs, comps.Gaussian, comps.Moffat,
                                 comps.PointSource, comps.Spline, comps.FlatSky, comps.PlaneSky)}
_TOP_KEYS = {"bayesprof_scene", "reference", "likelihood", "dof", "images", "sources", "priors", "init", "fixed", "ties"}
_SOURCE_KEYS = {"name", "kind", "vary", "images", "windows", "knots"}


def _plain(v):
    a = np.asarray(v, dtype=float)
    return float(a) if a.ndim == 0 else a.tolist()


def scene_to_dict(scene: Scene) -> dict:
    ref = scene.images.reference.icrs
    out = {
        "bayesprof_scene": 1,
        "reference": {"ra": float(ref.ra.deg), "dec": float(ref.dec.deg)},
        "likelihood": scene.likelihood,
        "images": [{"name": im.name, "band": im.band, "zeropoint": im.zeropoint, "shape": list(im.shape),
                    "pixel_scale": float(im.pixel_scale)} for im in scene.images],
        "sources": [],
        "priors": {k: describe(v) for k, v in scene._priors.items()},
        "init": {k: _plain(v) for k, v in scene._inits.items()},
        "fixed": {k: _plain(v) for k, v in scene._fixed.items()},
        "ties": [[f"{a}.{p}", f"{b}.{q}"] for (a, p), (b, q) in scene._ties.items()],
    }
    if scene.likelihood == "student_t":
        out["dof"] = scene.dof
    for s in scene.sources:
        d = {"name": s.name, "kind": s.kind.__name__}
        if s.vary:
            d["vary"] = dict(s.vary)
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


def scene_from_dict(d: dict, images) -> Scene:
    """Rebuild a scene from :func:`scene_to_dict`'s dictionary and the images."""
    if not isinstance(d, dict):
        raise ValueError("a scene file must hold a mapping at the top level")
    _unknown(d, _TOP_KEYS, "scene file")
    from astropy.coordinates import SkyCoord

    ref = d.get("reference")
    reference = None if ref is None else SkyCoord(float(ref["ra"]), float(ref["dec"]), unit="deg")
    scene = Scene(images, reference=reference, likelihood=d.get("likelihood", "normal"), dof=d.get("dof", 5.0))
    for desc in d.get("images", []):
        name = desc.get("name")
        if name not in scene.images:
            raise ValueError(f"scene file: image {name!r} is not among the images given ({scene.images.names})")
        im = scene.images[name]
        if list(im.shape) != list(desc.get("shape", im.shape)):
            raise ValueError(f"scene file: image {name!r} has shape {list(im.shape)}, the file says {desc['shape']}")
        if desc.get("band", im.band) != im.band:
            raise ValueError(f"scene file: image {name!r} has band {im.band!r}, the file says {desc['band']!r}")
    for k, sd in enumerate(d.get("sources", [])):
        _unknown(sd, _SOURCE_KEYS, f"scene file, sources[{k}]")
        kind = sd.get("kind")
        if kind not in KINDS:
            raise ValueError(f"scene file, sources[{k}].kind: unknown component {kind!r}; known: {sorted(KINDS)}")
        windows = {}
        for im, w in (sd.get("windows") or {}).items():
            _unknown(w, {"pixel", "sky"}, f"scene file, sources[{k}].windows.{im}")
            windows[im] = Window(*w["pixel"]) if "pixel" in w else SkyWindow(*w["sky"])
        scene.add(sd.get("name"), KINDS[kind], vary=sd.get("vary"), images=sd.get("images"), windows=windows,
                  knots=sd.get("knots"))
    for site, desc in (d.get("priors") or {}).items():
        scene.set_prior(site, from_description(desc))
    for site, v in (d.get("init") or {}).items():
        scene.set_init(site, v)
    for site, v in (d.get("fixed") or {}).items():
        scene.fix(site, v)
    for pair in d.get("ties") or []:
        scene.tie(pair[0], pair[1])
    return scene


def load_scene(path, images) -> Scene:
    """Read a scene file written by :func:`save_scene`; ``images``: the images it describes."""
    path = pathlib.Path(path)
    text = path.read_text()
    d = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return scene_from_dict(d, images)
