"""What people read: the posterior summary and corner titles to the precision of each spread."""

from __future__ import annotations

import arviz as az
import matplotlib
import numpy as np
import numpyro.distributions as dist
import pytest

from bayesprof.results import Posterior

matplotlib.use("Agg")


def _posterior():
    rng = np.random.default_rng(0)
    draws = {"gal.xi": 19.5674 + 0.0047 * rng.standard_normal((2, 400)),
             "gal.flux": 1234.5 + 20.0 * rng.standard_normal((2, 400)),
             "gal.n": 1.234 + 0.0123 * rng.standard_normal((2, 400))}
    post = Posterior.__new__(Posterior)
    post.tree = az.from_dict({"posterior": draws})
    return post, draws


def test_summary_shows_each_row_to_the_precision_of_its_sd():
    """The interval of a value of 19.5674 with sd 0.0047 keeps four decimals (arviz's default gave
    '20 20'); every value equals the raw one rounded to the decimal of the sd's second
    significant figure."""
    post, draws = _posterior()
    table = post.summary()
    raw = post.summary(round_to="none")
    for name, decimals in (("gal.xi", 4), ("gal.flux", 0), ("gal.n", 3)):
        row, exact = table.loc[name], raw.loc[name]
        lo, hi = [c for c in table.columns if c.endswith("_lb") or c.endswith("_ub")]
        for col in ("mean", lo, hi):
            assert row[col] == round(exact[col], decimals), (name, col, row[col], exact[col])
        assert abs(row["sd"] / exact["sd"] - 1) < 0.05
        assert row[hi] - row[lo] > 2 * row["sd"]  # a real interval, not two equal rounded values
    assert table.loc["gal.xi", lo] != table.loc["gal.xi", hi]


def test_corner_titles_to_the_precision_of_the_spread(caplog):
    post, draws = _posterior()
    fig = post.corner()
    n = len(fig.axes) ** 0.5
    titles = {t.split("\n")[0]: t for t in (fig.axes[int(i * (n + 1))].get_title() for i in range(int(n)))}
    assert set(titles) == {"gal.xi (arcsec)", "gal.flux (uJy)", "gal.n"}
    titles = {k.split(" (")[0]: v for k, v in titles.items()}
    assert f"{np.median(draws['gal.xi']):.4f} +" in titles["gal.xi"]
    assert f"{np.median(draws['gal.flux']):.0f} +" in titles["gal.flux"]
    assert f"{np.median(draws['gal.n']):.3f} +" in titles["gal.n"]
    # a sky level of ~1e-13 (the GAMA data's units): a common power of ten, not 15 decimals
    from bayesprof.results import _interval_text

    sky = 3.56e-13 + 1.7e-14 * np.random.default_rng(1).standard_normal(4000)
    lo, med, hi = np.percentile(sky, [15.865, 50.0, 84.135])
    text = _interval_text(med, lo, hi)
    assert text.endswith(") 1e-13") and len(text) < 30, text
    assert abs(float(text[1:].split(" ")[0]) * 1e-13 / med - 1) < 0.01, text
    assert _interval_text(1234.5, 1214.5, 1254.5) == "1234 +20 / -20"
    few = Posterior.__new__(Posterior)
    few.tree = az.from_dict({"posterior": {k: v[:, :5] for k, v in draws.items()}})
    few.corner()
    assert "Too few points" not in caplog.text


def test_sky_positions_from_a_posterior():
    """RA/Dec of a centre 36" east and 18" north of (150, +2) deg: RA + 36"/cos(dec), Dec + 18"
    to 1e-3 arcsec (the gnomonic projection's departures are ~(36/206265)^2 of that), errors
    the draws' sd in arcsec."""
    import json

    rng = np.random.default_rng(1)
    post = Posterior.__new__(Posterior)
    post.tree = az.from_dict({"posterior": {"gal.xi": 36.0 + 0.01 * rng.standard_normal((2, 400)),
                                            "gal.eta": 18.0 + 0.02 * rng.standard_normal((2, 400)),
                                            "gal.n": rng.standard_normal((2, 400))}})
    post.tree.attrs["reference"] = json.dumps([150.0, 2.0])
    (row,) = post.sky_positions()
    dec = 2.0 + 18.0 / 3600
    assert abs((row["ra"] - 150.0) * 3600 * np.cos(np.deg2rad(dec)) - post.flat("gal.xi").mean()) < 1e-3
    assert abs((row["dec"] - 2.0) * 3600 - post.flat("gal.eta").mean()) < 1e-3
    assert row["ra_err"] == np.std(post.flat("gal.xi"), ddof=1) and row["dec_err"] == np.std(post.flat("gal.eta"), ddof=1)
    assert row["source"] == "gal"


def test_map_saved_and_loaded(tmp_path):
    """fit.save / bp.load_map round trip on a GalSim galaxy: every number back exactly; the
    loaded result's table, magnitudes, chi2 per image and sky positions equal the original's."""
    import warnings

    import bayesprof as bp
    from bayesprof.simulate import draw_galaxies

    image = bp.Image(np.zeros((40, 40)), pixel_scale=0.25, sigma=0.05, zeropoint=23.9, psf=bp.GaussianPSF(0.8),
                     name="r", band="r")
    truth = bp.Sersic(xi=0.3, eta=-0.2, flux=400.0, re=0.9, n=1.6, q=0.6, pa=30.0)
    data = draw_galaxies(truth, image) + np.random.default_rng(5).normal(0.0, 0.05, (40, 40))
    image = bp.Image(data, pixel_scale=0.25, sigma=0.05, zeropoint=23.9, psf=bp.GaussianPSF(0.8), name="r", band="r")
    scene = bp.Scene([image])
    scene.add("gal", bp.Sersic)
    scene.set_prior("gal.n", dist.Uniform(2.5, 8.0))  # a flag to carry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bp.FitWarning)
        fit = bp.fit_map(scene)
    assert fit.flags
    path = tmp_path / "map.json"
    fit.save(path)
    back = bp.load_map(path)
    assert back.model is None and back.names == fit.names and back.flags == fit.flags
    for k in fit.values:
        np.testing.assert_array_equal(back.values[k], fit.values[k])
    np.testing.assert_array_equal(back.covariance, fit.covariance)
    np.testing.assert_array_equal(back.u, fit.u)
    assert back.image_chi2() == fit.image_chi2() and back.magnitudes() == fit.magnitudes()
    assert back.table() == fit.table()
    assert np.all(back.sky_positions()["ra"] == fit.sky_positions()["ra"])
    assert [p.name for p in tmp_path.iterdir()] == ["map.json"]  # no temporary file left


def test_fits_images_of_the_fit(tmp_path):
    """write_images: MODEL + RESIDUAL = data on fitted pixels, CHI = RESIDUAL / sigma, chi^2 card
    equal to the sum of CHI^2, WCS equal to the image's (same sky position of a pixel)."""
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS

    import bayesprof as bp

    rng = np.random.default_rng(2)
    data = rng.normal(0.0, 0.05, (30, 36))
    data[10:14, 5:9] = np.nan  # masked: NaN in the residual
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = bp.Image(data, pixel_scale=0.3, sigma=0.05, zeropoint=23.9, psf=bp.GaussianPSF(0.9), name="r",
                         band="r")
        scene = bp.Scene([image])
        scene.add("sky", bp.FlatSky)
        fit = bp.fit_map(scene)
    (path,) = fit.write_images(tmp_path)
    assert path.name == "r_fit.fits"
    with fits.open(path) as hdul:
        model, resid, chi = (hdul[n].data.astype(float) for n in ("MODEL", "RESIDUAL", "CHI"))
        header = hdul["CHI"].header
        good = ~image.mask
        np.testing.assert_allclose((model + resid)[good], image.data[good], atol=1e-6)
        assert np.all(np.isnan(resid[~good])) and np.isnan(chi[~good]).sum() == 16
        np.testing.assert_allclose(chi[good], resid[good] / 0.05, rtol=1e-5)
        # the card against the fit's own chi2 of the image (whitened residuals of the model)
        assert header["BPCHI2"] == pytest.approx(fit.image_chi2()["r"][0], rel=1e-6)
        assert header["BPNPIX"] == good.sum() and header["BANDNAME"] == "r"
        a, b = WCS(header).pixel_to_world(7.0, 3.0), image.wcs.pixel_to_world(7.0, 3.0)
        assert a.separation(b).arcsec < 1e-9

    # the residual figure: chi2/N in the titles, N up and E left for a north-up east-left image,
    # and with a posterior the residual of its median model (draws of the sky level about 0.1:
    # the median model is 0.1, so that residual's chi2/N is the MAP's plus (0.1/0.05)^2 = 4)
    from bayesprof import plot

    fig = plot.residuals(scene, fit)
    ax_data, ax_chi = fig.axes[0], fig.axes[2]
    c2, npx = fit.image_chi2()["r"]
    assert f"chi2/N = {c2 / npx:.3f}" in ax_chi.get_title()
    labels = {t.get_text(): t.get_position() for t in ax_data.texts if t.get_text() in "NE"}
    base = (0.16 * 36, 0.8 * 30)
    assert labels["N"][1] > base[1] + 2 and abs(labels["N"][0] - base[0]) < 0.1
    assert labels["E"][0] < base[0] - 2 and abs(labels["E"][1] - base[1]) < 0.1
    post = Posterior.__new__(Posterior)
    level = 0.1 + 1e-4 * np.random.default_rng(3).standard_normal((2, 50, 1))
    post.tree = az.from_dict({"posterior": {"sky.level": level}}, dims={"sky.level": ["image"]},
                             coords={"image": ["r"]})
    fig = plot.residuals(scene, fit, posterior=post, n_draws=10)
    title = [a.get_title() for a in fig.axes if "posterior median of 10 draws" in a.get_title()][0]
    chi_pp = ((image.data - 0.1) / 0.05)[good]
    assert float(title.split("chi2/N = ")[1]) == pytest.approx(np.mean(chi_pp**2), abs=0.01)  # draws scatter 1e-4
