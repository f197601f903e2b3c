"""Bad and extreme inputs, tried as a new user would: each gives a correct fit or a one-line
error naming the problem, never a NaN and never a silent wrong answer.

The matrix (``ERRORS``) builds images, PSFs, scenes, scene files and CLI configurations that are
wrong in one way each and checks the one-line message; the fits below (one compiled program,
shared) check the documented repairs and the warnings of :mod:`bayesprof.diagnostics` against
GalSim truth.  The CLI's atomic outputs are checked on the staging functions and on a real run
killed mid-way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import numpyro.distributions as dist
import pytest
import yaml

import bayesprof as bp
from bayesprof import cli
from bayesprof.scenefile import scene_from_dict, scene_to_dict
from bayesprof.simulate import draw_galaxies

PSF = bp.GaussianPSF(0.8)
SHAPE = (40, 40)
SCALE = 0.25
TRUTH = bp.Sersic(xi=0.1, eta=-0.05, flux=400.0, re=0.9, n=1.6, q=0.6, pa=30.0)
SIGMA = 0.05


def _image(data=None, **kw):
    kw.setdefault("pixel_scale", SCALE)
    kw.setdefault("psf", PSF)
    kw.setdefault("zeropoint", 23.9)  # counts = uJy
    if not {"variance", "sigma", "weight"} & set(kw):
        kw["sigma"] = SIGMA
    return bp.Image(np.ones(SHAPE) if data is None else data, **kw)


def _scene(*images, kind=bp.Sersic):
    scene = bp.Scene(list(images) or [_image(name="r", band="r")])
    scene.add("gal", kind)
    scene.add("sky", bp.FlatSky)
    return scene


def _with(action, kind=bp.Sersic):
    """A scene with ``action(scene)`` applied, then built (where the declarations are checked)."""

    def run():
        scene = _scene(kind=kind)
        action(scene)
        scene.build()

    return run


def _scene_file(change):
    def run():
        scene = _scene()
        d = scene_to_dict(scene)
        change(d)
        scene_from_dict(yaml.safe_load(yaml.safe_dump(d)), scene.images).build()

    return run


def _config(change):
    """cli.build_scene on a configuration's scene section changed by ``change``."""

    def run():
        cfg = {"scene": {"sources": [{"name": "gal", "kind": "Sersic"}, {"name": "sky", "kind": "FlatSky"}]}}
        change(cfg["scene"])
        cli.build_scene(cfg, bp.ImageList([_image(name="r", band="r")]), label="bad.yaml")

    return run


def _psf_image(a):
    return lambda: bp.PixelPSF(a, pixel_scale=SCALE)


# (case id, what it does, exception type(s), words the one-line message must contain)
ERRORS = [
    # images
    ("data 1-D", lambda: _image(np.ones(40)), ValueError, ["2-D"]),
    ("data 3-D", lambda: _image(np.ones((2, 40, 40))), ValueError, ["2-D"]),
    ("data empty", lambda: _image(np.ones((0, 0))), ValueError, ["empty"]),
    ("data of strings", lambda: _image(np.full(SHAPE, "a")), TypeError, ["numeric"]),
    ("data complex", lambda: _image(np.ones(SHAPE) * 1j), TypeError, ["numeric"]),
    ("pixel_scale 0", lambda: _image(pixel_scale=0.0), ValueError, ["pixel_scale"]),
    ("pixel_scale < 0", lambda: _image(pixel_scale=-0.2), ValueError, ["pixel_scale"]),
    ("pixel_scale NaN", lambda: _image(pixel_scale=np.nan), ValueError, ["pixel_scale"]),
    ("no geometry", lambda: bp.Image(np.ones(SHAPE), sigma=1.0), ValueError, ["pixel_scale", "wcs"]),
    ("zeropoint NaN", lambda: _image(zeropoint=np.nan), ValueError, ["zeropoint"]),
    ("variance < 0", lambda: _image(variance=-np.ones(SHAPE)), ValueError, ["variance", "<= 0"]),
    ("variance of strings", lambda: _image(variance=np.full(SHAPE, "x")), TypeError, ["variance", "numeric"]),
    ("variance shape", lambda: _image(variance=np.ones((39, 40))), ValueError, ["variance", "shape"]),
    ("sigma 0", lambda: _image(sigma=0.0), ValueError, ["sigma", "<= 0"]),
    ("sigma NaN", lambda: _image(sigma=np.nan), ValueError, ["sigma", "NaN"]),
    ("weight inf", lambda: _image(weight=np.inf), ValueError, ["weight", "infinite"]),
    ("two noise maps", lambda: _image(variance=1.0, sigma=1.0), ValueError, ["at most one"]),
    ("mask shape", lambda: _image(mask=np.zeros((3, 3), bool)), ValueError, ["mask", "shape"]),
    ("mask of floats", lambda: _image(mask=np.zeros(SHAPE)), TypeError, ["mask", "boolean"]),
    ("band not a string", lambda: _image(band=5), TypeError, ["band"]),
    ("name not a string", lambda: _image(name=3), TypeError, ["name"]),
    # PSFs
    ("Gaussian FWHM < 0", lambda: bp.GaussianPSF(-1.0), ValueError, ["fwhm"]),
    ("Gaussian FWHM NaN", lambda: bp.GaussianPSF(np.nan), ValueError, ["fwhm"]),
    ("Moffat beta 1", lambda: bp.MoffatPSF(1.0, beta=1.0), ValueError, ["beta"]),
    ("Moffat beta 0.5", lambda: bp.MoffatPSF(1.0, beta=0.5), ValueError, ["beta"]),
    ("Moffat FWHM 0", lambda: bp.MoffatPSF(0.0), ValueError, ["fwhm"]),
    ("stamp of zeros", _psf_image(np.zeros((15, 15))), ValueError, ["positive sum"]),
    ("stamp negative", _psf_image(-np.ones((15, 15))), ValueError, ["positive sum"]),
    ("stamp NaN", _psf_image(np.full((15, 15), np.nan)), ValueError, ["non-finite"]),
    ("stamp 1-D", _psf_image(np.ones(15)), ValueError, ["2-D"]),
    ("stamp pixel_scale < 0", lambda: bp.PixelPSF(np.ones((15, 15)), pixel_scale=-0.2), ValueError, ["pixel_scale"]),
    ("no PSF", lambda: bp.Renderer(_image(psf=None)), ValueError, ["no PSF"]),
    # scene declarations
    ("no images", lambda: bp.Scene([]), ValueError, ["at least one image"]),
    ("unknown likelihood", lambda: bp.Scene([_image()], likelihood="gaussian"), ValueError, ["likelihood"]),
    ("kind as a string", lambda: bp.Scene([_image()]).add("gal", "Sersic"), TypeError, ["component class"]),
    ("duplicate source", _with(lambda s: s.add("gal", bp.Sersic)), ValueError, ["gal", "exists"]),
    ("unknown vary mode", _with(lambda s: s.add("g2", bp.Sersic, vary={"n": "epoch"})), ValueError, ["vary"]),
    ("source on a missing image", _with(lambda s: s.add("g2", bp.Sersic, images=["z"])), ValueError, ["'z'"]),
    ("no sources", lambda: bp.fit_map(bp.Scene([_image()])), ValueError, ["no sources"]),
    ("fix unknown parameter", _with(lambda s: s.fix("gal.nn", 1.0)), ValueError, ["no parameter 'nn'"]),
    ("fix n = -1", _with(lambda s: s.fix("gal.n", -1.0)), ValueError, ["gal.n", "0.2 <= n <= 20"]),
    ("fix n = 25", _with(lambda s: s.fix("gal.n", 25.0)), ValueError, ["gal.n", "n <= 20"]),
    ("fix q = 1.5", _with(lambda s: s.fix("gal.q", 1.5)), ValueError, ["gal.q", "0 < q <= 1"]),
    ("fix q = 0", _with(lambda s: s.fix("gal.q", 0.0)), ValueError, ["gal.q", "0 < q"]),
    ("fix re = 0", _with(lambda s: s.fix("gal.re", 0.0)), ValueError, ["gal.re", "re > 0"]),
    ("fix re = NaN", _with(lambda s: s.fix("gal.re", np.nan)), ValueError, ["gal.re", "nan"]),
    ("fix flux = inf", _with(lambda s: s.fix("gal.flux", np.inf)), ValueError, ["gal.flux", "finite"]),
    ("fix Moffat beta = 1", _with(lambda s: s.fix("gal.beta", 1.0), kind=bp.Moffat), ValueError, ["beta > 1"]),
    ("fix Gaussian FWHM < 0", _with(lambda s: s.fix("gal.fwhm", -1.0), kind=bp.Gaussian), ValueError, ["fwhm > 0"]),
    ("init q = 1.2", _with(lambda s: s.set_init("gal.q", 1.2)), ValueError, ["initial value", "gal.q"]),
    ("init n = 0.1", _with(lambda s: s.set_init("gal.n", 0.1)), ValueError, ["initial value", "gal.n"]),
    ("init re < 0", _with(lambda s: s.set_init("gal.re", -1.0)), ValueError, ["initial value", "gal.re"]),
    ("prior bounds reversed", _with(lambda s: s.set_prior("gal.n", dist.Uniform(8.0, 3.0))), ValueError,
     ["Uniform(low=8, high=3)", "empty support"]),
    ("prior Normal on q", _with(lambda s: s.set_prior("gal.q", dist.Normal(0.5, 0.1))), ValueError,
     ["gal.q", "real line", "0 < q <= 1"]),
    ("prior Normal on re", _with(lambda s: s.set_prior("gal.re", dist.Normal(1.0, 0.1))), ValueError,
     ["gal.re", "re > 0"]),
    ("prior n below 0.2", _with(lambda s: s.set_prior("gal.n", dist.Uniform(0.1, 8.0))), ValueError, ["gal.n"]),
    ("prior q up to 2", _with(lambda s: s.set_prior("gal.q", dist.Uniform(0.0, 2.0))), ValueError, ["gal.q"]),
    ("prior on beta from 0", _with(lambda s: s.set_prior("gal.beta", dist.LogNormal(1.0, 0.5)), kind=bp.Moffat),
     ValueError, ["gal.beta", "beta > 1"]),
    ("prior Normal scale < 0", _with(lambda s: s.set_prior("gal.xi", dist.Normal(0.0, -1.0, validate_args=False))),
     ValueError, ["gal.xi", "invalid"]),
    ("stamp interpolant unknown", lambda: bp.PixelPSF(np.ones((15, 15)), interpolant="cubic"), ValueError,
     ["interpolant", "cubic"]),
    ("prior not a distribution", _with(lambda s: s.set_prior("gal.n", 3.0)), TypeError, ["numpyro distribution"]),
    ("tie cycle", _with(lambda s: (s.add("g2", bp.Sersic), s.tie("gal.re", "g2.re"), s.tie("g2.re", "gal.re"))),
     ValueError, ["cycle"]),
    # scene files
    ("scene file pixel_scale < 0", _scene_file(lambda d: d["images"][0].update(pixel_scale=-0.25)), ValueError,
     ["pixel_scale", "> 0"]),
    ("scene file pixel_scale differs", _scene_file(lambda d: d["images"][0].update(pixel_scale=0.5)), ValueError,
     ["pixel_scale", "0.25", "0.5"]),
    ("scene file zeropoint differs", _scene_file(lambda d: d["images"][0].update(zeropoint=25.0)), ValueError,
     ["zeropoint", "23.9", "25"]),
    ("scene file zeropoint NaN", _scene_file(lambda d: d["images"][0].update(zeropoint=float("nan"))), ValueError,
     ["zeropoint", "finite"]),
    ("scene file unknown image key", _scene_file(lambda d: d["images"][0].update(psf="x")), ValueError,
     ["unknown key", "psf"]),
    ("scene file shape differs", _scene_file(lambda d: d["images"][0].update(shape=[10, 10])), ValueError, ["shape"]),
    ("scene file fixed q = 1.5", _scene_file(lambda d: d.update(fixed={"gal.q": 1.5})), ValueError, ["gal.q"]),
    # CLI configurations (scene section; ConfigError, exit 2 from the command)
    ("config fixed q = 1.5", _config(lambda d: d.update(fixed={"gal.q": 1.5})), cli.ConfigError,
     ["bad.yaml", "gal.q", "0 < q <= 1"]),
    ("config reversed prior", _config(lambda d: d.update(priors={"gal.n": {"dist": "Uniform", "low": 8, "high": 3}})),
     cli.ConfigError, ["bad.yaml", "empty support"]),
    ("config init n = -2", _config(lambda d: d.update(init={"gal.n": -2.0})), cli.ConfigError, ["bad.yaml", "gal.n"]),
    ("config unknown kind", _config(lambda d: d["sources"].append({"name": "x", "kind": "Sersik"})), cli.ConfigError,
     ["Sersik"]),
]


@pytest.mark.parametrize("make, kind, words", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_bad_input_gives_a_one_line_error(make, kind, words):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. "assuming unit variance": not the point here
        with pytest.raises(kind) as err:
            make()
    message = str(err.value.args[0]) if isinstance(err.value, KeyError) else str(err.value)
    assert "\n" not in message and len(message) < 400, message
    for w in words:
        assert w in message, (w, message)


def test_output_folder_that_cannot_be_written(tmp_path):
    """--out naming a file, or a read-only folder: one line, before any fit."""
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(cli.ConfigError, match="exists and is not a directory"):
        cli._stage(f)
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(cli.ConfigError, match="not writable"):
                cli._stage(ro)
        finally:
            ro.chmod(0o700)


# ------------------------------------------------------------------ fits: repairs and warnings
@pytest.fixture(scope="module")
def truth_image():
    rng = np.random.default_rng(16)
    clean = draw_galaxies(TRUTH, _image())
    return clean, clean + rng.normal(0.0, SIGMA, SHAPE)


def _fit(image, **prior):
    scene = _scene(image)
    for site, p in prior.items():
        scene.set_prior(site.replace("_", "."), p)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = bp.fit_map(scene)
    return fit, [str(w.message) for w in caught if issubclass(w.category, bp.FitWarning)]


def _assert_truth(fit, k=4.0):
    for p in ("re", "n", "q"):
        v, s = float(fit.values[f"gal.{p}"]), float(fit.sigmas[f"gal.{p}"])
        assert np.isfinite(v) and np.isfinite(s) and abs(v - getattr(TRUTH, p)) < k * s, (p, v, s)


def test_good_fit_has_no_flags(truth_image):
    fit, caught = _fit(_image(truth_image[1], name="r", band="r"))
    assert fit.success and fit.flags == [] and caught == []
    _assert_truth(fit)


def test_nan_and_inf_pixels_are_masked_and_the_fit_is_right(truth_image):
    data = truth_image[1].copy()
    data[5:9, 5:30] = np.nan
    data[20, 30] = np.inf
    with pytest.warns(UserWarning, match="masked 101 pixels with NaN or infinite data"):
        image = _image(data, name="r", band="r")
    fit, caught = _fit(image)
    assert fit.success and caught == []
    _assert_truth(fit)


def test_a_sigma_map_given_as_variance_is_reported_with_its_factor(truth_image):
    """sigma 0.05 passed as variance: the assumed sigma is sqrt(0.05) = 0.224, 4.47x too large;
    chi2/N ~ 1/20.  The warning names the image and the factor (within 10 %)."""
    fit, caught = _fit(_image(truth_image[1], name="r", band="r", variance=SIGMA))
    (msg,) = [m for m in caught if "chi2/N" in m]
    assert msg.startswith("image r: chi2/N = 0.0")
    factor = float(msg.split("the noise map is ")[1].split("x")[0])
    assert factor == pytest.approx(np.sqrt(SIGMA) / SIGMA, rel=0.1)
    assert msg in [f.message for f in fit.flags] and f"WARNING: {msg}" in fit.table()
    assert [f.subject for f in fit.flags if f.kind == "noise"] == ["r"]


def test_a_map_at_a_prior_bound_is_reported(truth_image, tmp_path):
    """n = 1.6 but the prior Uniform(2.5, 8) excludes it: the MAP sits at 2.5 and says so."""
    fit, caught = _fit(_image(truth_image[1], name="r", band="r"), gal_n=dist.Uniform(2.5, 8.0))
    (msg,) = [m for m in caught if "gal.n" in m]
    assert "lower bound 2.5" in msg and "Uniform(low=2.5, high=8)" in msg
    assert abs(float(fit.values["gal.n"]) - 2.5) <= float(fit.sigmas["gal.n"])
    assert [(f.kind, f.subject) for f in fit.flags] == [("prior bound", "gal.n")]
    # the CLI's MAP table carries the flag in its own column
    csv = tmp_path / "summary.csv"
    cli._map_table_csv(fit, csv)
    rows = {r.split(",")[0]: r.split(",")[3] for r in csv.read_text().splitlines()[1:]}
    assert rows["gal.n"] == "prior bound" and rows["gal.re"] == ""


def test_a_galaxy_larger_than_its_image_is_reported():
    """A disk of re = 3x the image width: most of its light lies outside the 40 x 40 image
    (GalSim: 3 %); the fit says so instead of returning a confident flux."""
    disk = bp.Sersic(xi=0.0, eta=0.0, flux=4000.0, re=30.0, n=1.0, q=0.8, pa=10.0)
    image = _image(name="r", band="r")
    clean = draw_galaxies(disk, image)
    inside = float(clean.sum() / bp.flux_to_counts(disk.flux, image.zeropoint))
    assert inside < 0.1
    data = clean + np.random.default_rng(3).normal(0.0, SIGMA, SHAPE)
    scene = bp.Scene([_image(data, name="r", band="r")])
    scene.add("gal", bp.Sersic, init={"re": 20.0})  # no sky: nothing else can take the light
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = bp.fit_map(scene)
    (msg,) = [str(m.message) for m in caught if str(m.message).startswith("gal: only")]
    frac = float(msg.split("only ")[1].split("%")[0]) / 100
    assert "falls inside its images" in msg and frac < 0.5 and float(fit.values["gal.re"]) > 10
    # the fraction through the image's PixelMap equals astropy's WCS per point (the fallback for
    # an image without a map), to the 1,536 sample points
    from bayesprof import diagnostics

    model = fit.model
    comp = model.image_components(model.complete(fit.values), model.images[0])[0]["gal"]
    by_map = diagnostics._fraction_inside(comp, model.images[0], model.image_maps[0], model.reference, 48, 32)
    by_wcs = diagnostics._fraction_inside(comp, model.images[0], None, model.reference, 48, 32)
    assert model.image_maps[0] is not None and by_map == by_wcs and 0 < by_map < 0.5


def test_all_masked_image_is_an_error():
    with pytest.warns(UserWarning, match="every pixel is masked"):
        image = _image(np.full(SHAPE, np.nan), name="r")
    with pytest.raises(ValueError, match="no unmasked pixels") as err:
        _scene(image).build()
    assert "\n" not in str(err.value)


def test_one_chain_has_no_r_hat_and_no_warning():
    """R-hat needs two chains: with one the CLI says so (no numpy 'All-NaN slice' warning;
    the suite turns RuntimeWarnings into errors)."""
    import pandas as pd

    assert cli._max_rhat_text(pd.DataFrame({"r_hat": [np.nan, np.nan]})) == "n/a (one chain)"
    assert cli._max_rhat_text(pd.DataFrame({"r_hat": [1.01, np.nan, 1.002]})) == "1.010"


# ------------------------------------------------------------------ atomic CLI outputs
def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def _set(stage, names, text):
    stage.mkdir()
    for n in names:
        (stage / n).write_text(text)


def test_outputs_replace_an_earlier_set_whole(tmp_path):
    out = tmp_path / "out"
    first = tmp_path / ".first"
    _set(first, ["map.txt", "posterior.nc", "corner.png"], "1")
    cli._publish(first, out, ["map.txt", "posterior.nc", "corner.png"])
    assert _files(out) == ["corner.png", "map.txt", "outputs.json", "posterior.nc"] and not first.exists()
    second = tmp_path / ".second"
    _set(second, ["map.txt", "summary.csv"], "2")
    cli._publish(second, out, ["map.txt", "summary.csv"])  # MAP only: no posterior, no corner
    assert _files(out) == ["map.txt", "outputs.json", "summary.csv"]
    assert (out / "map.txt").read_text() == "2"
    assert json.loads((out / "outputs.json").read_text())["files"] == ["map.txt", "summary.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_outputs_beside_other_files_keep_them(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "map.txt").write_text("old")
    stage = tmp_path / ".s"
    _set(stage, ["map.txt", "summary.csv"], "new")
    cli._publish(stage, out, ["map.txt", "summary.csv"])
    assert _files(out) == ["map.txt", "notes.txt", "outputs.json", "summary.csv"]
    assert (out / "notes.txt").read_text() == "mine" and (out / "map.txt").read_text() == "new"


def test_a_killed_run_leaves_the_earlier_outputs_whole(tmp_path):
    """An earlier set of outputs in the folder, then a run into it killed (SIGKILL) once its
    MAP is written: the folder still holds exactly the earlier set, unchanged."""
    from test_cli import CONFIG, _fast_config

    path = _fast_config(yaml.safe_load(CONFIG.read_text()), tmp_path)
    out = tmp_path / "out"
    earlier = tmp_path / ".earlier"
    _set(earlier, ["map.txt", "summary.csv", "posterior.nc", "corner.png"], "earlier run")
    cli._publish(earlier, out, ["map.txt", "summary.csv", "posterior.nc", "corner.png"])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cmd = [sys.executable, "-m", "bayesprof.cli", "fit", str(path), "--out", str(out), "--no-progress",
           "--num-warmup", "5000", "--num-samples", "5000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONWARNINGS="ignore"))
    t0 = time.time()
    try:
        staged = []
        while not staged and time.time() - t0 < 300 and proc.poll() is None:
            time.sleep(0.2)
            staged = list(tmp_path.glob(".out.partial-*/map.txt"))
        assert staged, "the run never wrote its MAP"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # the next run into the folder removes the killed run's staging folder
    cli._stage(out)
    assert not list(tmp_path.glob(".out.partial-*/map.txt"))


def test_outputs_into_the_working_directory_move_file_by_file(tmp_path, monkeypatch):
    """--out . never renames the working directory, even when it is empty."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    stage = cli._stage(cli.pathlib.Path("."))
    assert stage.parent == tmp_path and stage.name.startswith(".work.partial-")
    (stage / "map.txt").write_text("x")
    cli._publish(stage, cli.pathlib.Path("."), ["map.txt"])
    assert _files(work) == ["map.txt", "outputs.json"] and not stage.exists()
    assert cli.pathlib.Path.cwd() == work
