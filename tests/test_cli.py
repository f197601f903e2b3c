"""The command line (``bayesprof fit CONFIG --out DIR``) on the bundled GAMA data, and its config errors."""

from __future__ import annotations

import copy
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import yaml

import bayesprof as bp
from bayesprof import cli, datasets

BASE = datasets.DATA_DIR / "gama-kids-sdss"
CONFIG = BASE / "G279148.yaml"


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load(CONFIG.read_text())


def _fast_config(config, tmp_path):
    """The bundled configuration with absolute paths, analytic PSFs and a tiny NUTS, written to tmp_path.

    The PSF stamps (25x25, FWHM ~3.4 px) are replaced by Gaussians of about their width
    (KiDS 0.68", SDSS 1.15"), which the renderer sets up and evaluates much faster than
    interpolated stamps; the images themselves (data, noise, masks, segmentation) are the
    bundled ones.
    """
    cfg = copy.deepcopy(config)
    for im, fwhm in zip(cfg["images"], (0.68, 1.15)):
        for key in ("file", "sigma", "mask", "segmentation"):
            im[key] = str(BASE / im[key])
        im["psf"] = {"gaussian": {"fwhm": fwhm}}
    cfg["map"] = {"max_steps": 60}
    # a tiny NUTS that only checks the plumbing (tree depth capped so it stays fast)
    cfg["nuts"] = {"num_warmup": 20, "num_samples": 20, "num_chains": 2, "seed": 1, "max_tree_depth": 4}
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def run(config, tmp_path_factory):
    """One end-to-end run of the console script (subprocess): MAP + a tiny NUTS."""
    tmp = tmp_path_factory.mktemp("cli")
    path = _fast_config(config, tmp)
    out = tmp / "out"
    script = pathlib.Path(sys.executable).with_name("bayesprof")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "bayesprof.cli"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd + ["fit", str(path), "--out", str(out), "--no-progress"], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_bundled_config_gives_the_dataset_images(config):
    """The bundled config loads exactly what bayesprof.datasets.gama_kids_sdss() builds."""
    mine = cli.load_images(config, BASE)
    ref = datasets.gama_kids_sdss()
    assert mine.names == ref.names and mine.bands == ref.bands
    for a, b in zip(mine, ref):
        assert a.zeropoint == b.zeropoint and a.pixel_scale == pytest.approx(b.pixel_scale, rel=1e-12)
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(a.variance, b.variance)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.psf.image, b.psf.image)
        assert a.mask.sum() > 50  # the neighbours of the segmentation map are masked
        x, y = np.array([0.0, 50.0, 77.0]), np.array([0.0, 40.0, 90.0])
        sa, sb = a.pixel_to_sky(x, y), b.pixel_to_sky(x, y)
        assert np.all(sa.separation(sb).arcsec < 1e-9)


def test_outputs(run):
    out, proc = run
    for name in ("summary.csv", "map.txt", "posterior.nc", "residuals.png", "corner.png", "scene.yaml"):
        assert (out / name).stat().st_size > 0, name
    assert "Traceback" not in proc.stderr
    import pandas as pd

    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert {"gal.n", "gal.re", "gal.q", "gal.flux[KiDS-r]", "gal.flux[SDSS-r]", "gal.mag[KiDS-r]"} <= set(summary.index)
    assert np.all(np.isfinite(summary["mean"].to_numpy(dtype=float)))
    post = bp.load_posterior(out / "posterior.nc")
    assert post.posterior.sizes["chain"] == 2 and post.posterior.sizes["draw"] == 20
    assert set(post.posterior["gal.flux"].coords["band"].values) == {"KiDS-r", "SDSS-r"}
    scene = yaml.safe_load((out / "scene.yaml").read_text())
    assert [s["name"] for s in scene["sources"]] == ["gal", "sky"]
    assert "chi2 =" in (out / "map.txt").read_text()
    listed = set(json.loads((out / "outputs.json").read_text())["files"])
    assert {"map.json", "positions.ecsv", "run.json", "KiDS_fit.fits", "SDSS_fit.fits"} <= listed
    assert listed | {"outputs.json"} == {p.name for p in out.iterdir()}
    assert not list(out.parent.glob(".out.partial-*"))  # the staging folder became the output
    assert "chi2/N per image: KiDS" in proc.stdout


def test_plot_and_summary_of_a_finished_run(run, capsys):
    """`bayesprof plot DIR` redraws the figures and `bayesprof summary DIR` reprints the
    summaries from the folder alone (images reread through run.json, no refit)."""
    out, proc = run
    before = {n: (out / n).stat().st_mtime_ns for n in ("residuals.png", "corner.png", "map.json", "posterior.nc")}
    assert cli.main(["plot", str(out)]) == 0
    after = {n: (out / n).stat().st_mtime_ns for n in before}
    assert after["residuals.png"] > before["residuals.png"] and after["corner.png"] > before["corner.png"]
    assert after["map.json"] == before["map.json"] and after["posterior.nc"] == before["posterior.nc"]
    assert cli.main(["summary", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "gal.n" in printed and "chi2/N per image: KiDS" in printed and "max R-hat" in printed
    assert cli.main(["summary", str(out.parent)]) == 2  # not an output folder: one line, exit 2
    assert "not a finished bayesprof output folder" in capsys.readouterr().err


def test_fluxes_agree_with_aperture_sums(run, config, tmp_path):
    """The fitted fluxes in KiDS and SDSS match the data: within an elliptical aperture of
    2 re, the MAP model galaxy's counts (read back from posterior.nc) equal the sky-subtracted
    data's to 3% in each image, and the two r-band fluxes (total, from the Sersic) agree with
    each other to 10%.  (The tiny NUTS run is not converged, so the MAP is what is checked.)"""
    import json

    out, _ = run
    post = bp.load_posterior(out / "posterior.nc")
    mean = {k: float(np.asarray(v)) for k, v in json.loads(post.tree.attrs["map_values"]).items()}
    for band in ("KiDS-r", "SDSS-r"):
        assert np.all(np.isfinite(post.flat(f"gal.flux[{band}]")))
    scene = bp.load_scene(out / "scene.yaml", cli.load_images(yaml.safe_load(_fast_config(config, tmp_path)
                                                                             .read_text()), BASE))
    model = scene.build()
    values = {s.name: mean[s.name] for s in model.sites}
    models = scene.render(values)
    for k, im in enumerate(model.images):
        sky = values[f"sky.level[{im.name}]"]
        pm = im.pixel_map(model.reference)
        x0, y0 = (float(v) for v in pm(values["gal.xi"], values["gal.eta"]))
        yy, xx = np.indices(im.shape)
        pa = np.radians(values["gal.pa"])
        dx, dy = (xx - x0) * im.pixel_scale, (yy - y0) * im.pixel_scale
        east, north = -dx, dy  # north-up, east-left
        major = east * np.sin(pa) + north * np.cos(pa)
        minor = east * np.cos(pa) - north * np.sin(pa)
        inside = np.hypot(major, minor / values["gal.q"]) < 2 * values["gal.re"]
        good = inside & ~im.mask
        assert good.sum() > 100
        data_sum = np.sum(im.data[good] - sky)
        model_sum = np.sum(models[k][good] - sky)
        assert model_sum == pytest.approx(data_sum, rel=0.03), im.name
    f_kids, f_sdss = mean["gal.flux[KiDS-r]"], mean["gal.flux[SDSS-r]"]
    assert f_kids == pytest.approx(f_sdss, rel=0.10)
    assert 200 < f_kids < 2000  # AB ~16.4-18.9: GAMA's r ~ 17.7


# --------------------------------------------------------------------------- configuration errors
def _error(config, mutate, capsys, tmp_path):
    """Run the CLI in-process on a mutated copy of the bundled config; return its one-line error."""
    cfg = copy.deepcopy(config)
    mutate(cfg)
    path = tmp_path / "bad.yaml"
    for im in cfg.get("images", []) if isinstance(cfg.get("images"), list) else []:
        if isinstance(im, dict):
            for key in ("file", "sigma", "mask", "segmentation", "psf"):
                if isinstance(im.get(key), str):
                    im[key] = str(BASE / im[key])
    path.write_text(yaml.safe_dump(cfg))
    status = cli.main(["fit", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("bayesprof: error: bad.yaml: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing fitted, nothing written
    return err


@pytest.mark.parametrize("mutate, expect", [
    (lambda c: c.update(colour="red"), r"unknown key 'colour'"),
    (lambda c: c["images"][1].update(colour="red"), r"images\[1\]: unknown key 'colour'"),
    (lambda c: c["images"][0].update(psf={"gauss": {"fwhm": 1.0}}), r"images\[0\]\.psf: unknown key 'gauss'"),
    (lambda c: c["scene"].update(colour="red"), r"scene: unknown key\(s\) \['colour'\]"),
    (lambda c: c["scene"]["sources"][0].update(colour="red"), r"scene\.sources\[0\]: unknown key\(s\) \['colour'\]"),
    (lambda c: c["map"].update(steps=3), r"map: unknown key 'steps'"),
    (lambda c: c["nuts"].update(chains=3), r"nuts: unknown key 'chains'"),
], ids=["top", "image", "psf", "scene", "source", "map", "nuts"])
def test_unknown_keys(config, capsys, tmp_path, mutate, expect):
    import re

    assert re.search(expect, _error(config, mutate, capsys, tmp_path))


def test_missing_file(config, capsys, tmp_path):
    err = _error(config, lambda c: c["images"][1].update(sigma="SDSS/nope.fits"), capsys, tmp_path)
    assert "images[1].sigma: file" in err and "nope.fits' does not exist" in err


def test_missing_config_file(capsys, tmp_path):
    assert cli.main(["fit", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "none.yaml' does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("mutate, expect", [
    (lambda c: c["nuts"].update(num_samples=-3), "nuts.num_samples: must be an integer >= 1, not -3"),
    (lambda c: c["map"].update(max_steps="many"), "map.max_steps: must be an integer >= 1, not 'many'"),
    (lambda c: c["images"][0].update(psf={"gaussian": {"fwhm": -1}}), "images[0].psf.gaussian.fwhm: must be a "
                                                                     "positive number, not -1"),
    (lambda c: c["images"][0].update(sigma=[1, 2]), "images[0].sigma: expected a FITS file name or a positive "
                                                    "number"),
    (lambda c: c["images"][0].update(cutout=[0, 10, 5]), "images[0].cutout: expected [x0, x1, y0, y1]"),
    (lambda c: c["images"][0].update(zeropoint="MAGZP"), "images[0].zeropoint: "),
    (lambda c: c["images"][0].update(segmentation={"file": str(BASE / "KiDS/G279148segim.fits"), "keep": "x"}),
     "images[0].segmentation.keep: expected centre"),
    (lambda c: c["scene"]["sources"][0].update(kind="Sersik"), "scene.sources[0].kind: unknown component 'Sersik'"),
    (lambda c: c["scene"]["sources"][0].update(vary={"flux": "epoch"}), "scene.sources[0]: gal.flux: vary must be"),
    (lambda c: c["scene"].update(likelihood="cauchy"), "scene.likelihood: likelihood must be one of"),
    (lambda c: c["scene"].update(priors={"gal.nn": {"dist": "Normal", "loc": 1, "scale": 1}}),
     "scene.priors.gal.nn: set_prior: Sersic 'gal' has no parameter 'nn'"),
    (lambda c: c["scene"].update(priors={"gal.n": {"dist": "Uniform", "lo": 1}}), "scene.priors.gal.n: bad parameters"),
    (lambda c: c["scene"].update(init={"gal.q": "round"}), "scene.init.gal.q: expected a finite number"),
    (lambda c: c.update(nuts=3), "nuts: expected a mapping, not integer 3"),
], ids=["count", "type", "psf", "noise", "cutout", "keyword", "segmentation", "kind", "vary", "likelihood",
        "prior-site", "prior-params", "init", "nuts"])
def test_bad_values(config, capsys, tmp_path, mutate, expect):
    assert expect in _error(config, mutate, capsys, tmp_path)


@pytest.mark.parametrize("mutate, expect", [
    (lambda c: c["images"][0].pop("file"), "images[0]: missing required key 'file'"),
    (lambda c: c["images"][0].pop("pixel_scale"), "images[0].pixel_scale: "),
    (lambda c: c["scene"]["sources"][1].pop("kind"), "scene.sources[1]: missing required key 'kind'"),
    (lambda c: c.pop("scene"), "missing required key 'scene'"),
    (lambda c: c.pop("images"), "missing required key 'images'"),
], ids=["file", "pixel_scale", "kind", "scene", "images"])
def test_missing_keys(config, capsys, tmp_path, mutate, expect):
    assert expect in _error(config, mutate, capsys, tmp_path)


def test_invalid_yaml(capsys, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("images: [\n  - file: a.fits\n")
    assert cli.main(["fit", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayesprof: error: broken.yaml: not valid YAML") and err.count("\n") == 1


def test_neighbours_model_fits_the_detected_objects(tmp_path):
    """`neighbours: model`: a GalSim target at the centre, a galaxy 6.7" away and a star 7"
    away the other way.  The neighbours become sources (the star a PointSource, the galaxy a
    Sersic) and the whole image is fitted, no pixel masked: the target's flux and radius and
    the star's flux and position within 3 sigma of the truth, chi2/N within 0.1 of 1."""
    import galsim
    from astropy.io import fits

    from bayesprof.profiles import flux_to_counts
    from bayesprof.simulate import draw_galaxies

    base = bp.Image(np.zeros((80, 80)), pixel_scale=0.25, sigma=0.02, zeropoint=23.9, psf=bp.GaussianPSF(0.9))
    target = bp.Sersic(xi=0.0, eta=0.0, flux=200.0, re=1.0, n=1.5, q=0.7, pa=20.0)
    galaxy = bp.Sersic(xi=-6.0, eta=3.0, flux=150.0, re=0.8, n=1.0, q=0.8, pa=80.0)
    star = (5.0, -5.0, 60.0)  # xi, eta (arcsec), flux (uJy)
    star_img = galsim.Gaussian(fwhm=0.9, flux=float(flux_to_counts(star[2], 23.9))).drawImage(
        nx=80, ny=80, scale=0.25, offset=(-star[0] / 0.25, star[1] / 0.25)).array
    data = draw_galaxies([target, galaxy], base) + star_img + np.random.default_rng(1).normal(0.0, 0.02, (80, 80))
    fits.PrimaryHDU(data.astype(np.float32), header=base.wcs.to_header()).writeto(tmp_path / "img.fits")
    cfg = {"images": [{"file": "img.fits", "name": "img", "sigma": 0.02, "zeropoint": 23.9,
                       "psf": {"gaussian": {"fwhm": 0.9}}, "segmentation": "auto"}],
           "neighbours": "model", "nuts": False,
           "scene": {"sources": [{"name": "gal", "kind": "Sersic"}, {"name": "sky", "kind": "FlatSky"}]}}
    res = cli.run_config(cfg, tmp_path / "out", base_dir=tmp_path, log=None)
    scene, fit = res["scene"], res["map"]
    assert not scene.images[0].mask.any()
    kinds = {s.name: s.kind.__name__ for s in scene.sources if s.name.startswith("nb")}
    assert sorted(kinds.values()) == ["PointSource", "Sersic"], kinds
    assert fit.success
    v, e = fit.values, fit.sigmas
    for name, true in (("gal.flux[img]", target.flux), ("gal.re", target.re)):
        assert abs(float(v[name]) - true) < 3 * float(e[name]), (name, float(v[name]), float(e[name]))
    (nb_star,) = [n for n, k in kinds.items() if k == "PointSource"]
    for p, true in (("xi", star[0]), ("eta", star[1]), ("flux[img]", star[2])):
        name = f"{nb_star}.{p}"
        assert abs(float(v[name]) - true) < 3 * float(e[name]), (name, float(v[name]), float(e[name]))
    chi2, n = fit.image_chi2()["img"]
    assert n == 80 * 80 and abs(chi2 / n - 1) < 0.1
    with pytest.raises(cli.ConfigError, match="neighbours: expected one of mask, model"):
        cli.run_config({**cfg, "neighbours": "subtract"}, tmp_path / "out2", base_dir=tmp_path, log=None)


def test_neighbours_on_a_real_decam_cutout(tmp_path):
    """The bundled DECam z exposure of legacypipe's test case 4, a 120 x 90 px cut-out about a
    galaxy with a bright star (S/N 380) and a second galaxy beside it; one Sersic and a flat sky.
    Without segmentation the fit gives chi2/N = 3.50 (measured).  `segmentation: auto` reaches
    the Python fit with the neighbours masked by hand (bp.catalog.segment + neighbour_mask) to
    1e-6, at chi2/N 1.08; `neighbours: model` fits them (2 sources) and every pixel at 1.00."""
    from bayesprof import catalog, datasets

    f = str(datasets.path("legacy-testcase4", "decam", "c4d_170316_062107_ooi_z_ls9.N2.fits"))
    image = {"file": f, "name": "z", "band": "z", "weight": f.replace("_ooi_", "_oow_"),
             "mask": f.replace("_ooi_", "_ood_"), "psf": f.replace(".fits", ".psf_at_center.fits"),
             "zeropoint": "MAGZERO", "cutout": [70, 190, 0, 90], "segmentation": "auto"}
    scene = {"sources": [{"name": "gal", "kind": "Sersic"}, {"name": "sky", "kind": "FlatSky"}]}
    auto = cli.run_config({"images": [image], "scene": scene, "nuts": False}, tmp_path / "auto", log=None)
    model = cli.run_config({"images": [image], "scene": scene, "nuts": False, "neighbours": "model"},
                           tmp_path / "model", log=None)

    z = bp.Image.from_fits(f, weight=image["weight"], mask=image["mask"], psf=image["psf"], zeropoint="MAGZERO",
                           name="z", band="z").cutout(70, 190, 0, 90)
    seg = catalog.segment(z)
    masked = z.with_mask(catalog.neighbour_mask(seg, (57, 28)))  # keep the galaxy at x, y = 57, 28
    by_hand = bp.Scene([masked])
    by_hand.add("gal", bp.Sersic)
    by_hand.add("sky", bp.FlatSky)
    python = bp.fit_map(by_hand)

    c_auto, n_auto = auto["map"].image_chi2()["z"]
    c_py, n_py = python.image_chi2()["z"]
    assert n_auto == n_py < 120 * 90 and abs(c_auto / n_auto - c_py / n_py) < 1e-6
    assert c_auto / n_auto < 1.15
    fit = model["map"]
    c, n = fit.image_chi2()["z"]
    assert fit.success and n == 120 * 90 and c / n < 1.05, (fit.message, c / n)
    assert sorted(s.name for s in model["scene"].sources if s.name.startswith("nb")) == ["nb1", "nb2"]
    # the central galaxy is the same object in both fits
    assert abs(float(fit.values["gal.xi"]) - float(auto["map"].values["gal.xi"])) < 0.05
    assert abs(float(fit.values["gal.eta"]) - float(auto["map"].values["gal.eta"])) < 0.05


def test_segmentation_auto_masks_the_neighbours(tmp_path):
    """`segmentation: auto`: a GalSim target at the cut-out's centre and a neighbour 6" away
    (and a faint one off-centre the other way): the neighbours' pixels are masked, the
    target's pixels and the sky between them are not."""
    from astropy.io import fits

    from bayesprof.simulate import draw_galaxies

    base = bp.Image(np.zeros((80, 80)), pixel_scale=0.25, sigma=0.02, zeropoint=23.9, psf=bp.GaussianPSF(0.9))
    galaxies = [bp.Sersic(xi=0.0, eta=0.0, flux=200.0, re=1.0, n=1.5, q=0.7, pa=20.0),
                bp.Sersic(xi=-6.0, eta=3.0, flux=150.0, re=0.8, n=1.0, q=0.8, pa=80.0),
                bp.Sersic(xi=5.0, eta=-5.0, flux=40.0, re=0.5, n=1.0, q=0.9, pa=0.0)]
    data = draw_galaxies(galaxies, base) + np.random.default_rng(1).normal(0.0, 0.02, (80, 80))
    hdu = fits.PrimaryHDU(data.astype(np.float32), header=base.wcs.to_header())
    hdu.writeto(tmp_path / "img.fits")
    d = {"file": "img.fits", "sigma": 0.02, "zeropoint": 23.9, "psf": {"gaussian": {"fwhm": 0.9}},
         "segmentation": "auto"}
    im = cli._one_image(d, tmp_path, "images[0]")
    plain = cli._one_image({k: v for k, v in d.items() if k != "segmentation"}, tmp_path, "images[0]")
    assert not plain.mask.any()
    pix = lambda g: tuple(int(round(float(v))) for v in base.pixel_map(base.center_sky())(g.xi, g.eta))  # noqa: E731
    (x0, y0), (x1, y1), (x2, y2) = (pix(g) for g in galaxies)
    assert not im.mask[y0, x0] and not im.mask[y0 - 3:y0 + 4, x0 - 3:x0 + 4].any()  # the target
    assert im.mask[y1, x1] and im.mask[y1 - 2:y1 + 3, x1 - 2:x1 + 3].all()  # the bright neighbour
    assert im.mask[y2, x2]  # the faint one
    assert not im.mask[(y0 + y1) // 2, (x0 + x1) // 2]  # the sky between them stays
    assert 0.02 < im.mask.mean() < 0.3


def test_compile_cache_folder(monkeypatch, tmp_path):
    """`bayesprof fit` and `catalog` keep compiled programs in $JAX_COMPILATION_CACHE_DIR, else
    under $XDG_CACHE_HOME (else ~/.cache); --no-compile-cache turns it off."""
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
    assert cli.compile_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cli.compile_cache_dir() == tmp_path / "xdg" / "bayesprof" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cli.compile_cache_dir() == tmp_path / "home" / ".cache" / "bayesprof" / "jax"
    for command in (["fit", "c.yaml"], ["catalog", "c.yaml"]):
        assert cli._parser().parse_args(command + ["--out", "o", "--no-compile-cache"]).no_compile_cache
