"""bayesprof.catalog against known truth: elliptical Gaussian blobs (analytic) on white noise."""

import numpy as np
import pytest

import bayesprof as bp
from bayesprof import catalog as C

SIGMA = 0.5
SCALE = 0.2  # arcsec / px
# x, y (px), total counts, sigma_major (px), q, PA (deg east of north)
BLOBS = [(30.3, 40.7, 900.0, 2.5, 0.6, 30.0), (75.6, 25.2, 500.0, 2.0, 0.8, 120.0), (60.2, 75.9, 1400.0, 3.0, 0.5, 75.0)]


def _blob(shape, x0, y0, counts, s, q, pa):
    # north-up east-left image: +y north, +x west; PA from north towards east (-x)
    yy, xx = np.indices(shape, dtype=float)
    th = np.radians(pa)
    major = np.array([-np.sin(th), np.cos(th)])  # (x, y) pixel direction of the major axis
    dx, dy = xx - x0, yy - y0
    a = dx * major[0] + dy * major[1]
    b = -dx * major[1] + dy * major[0]
    return counts / (2 * np.pi * s * s * q) * np.exp(-0.5 * (a**2 / s**2 + b**2 / (q * s) ** 2))


def _image(seed=1, sky=0.3):
    rng = np.random.default_rng(seed)
    shape = (100, 110)
    truth = sum(_blob(shape, *b) for b in BLOBS)
    data = truth + sky + rng.normal(0, SIGMA, shape)
    return data, truth


def test_estimate_noise_recovers_sigma():
    data, _ = _image()
    s = C.estimate_noise(data)  # detection inside, plane removed, clipped MAD
    assert abs(s / SIGMA - 1) < 0.03, s  # statistical error ~1 % for ~9000 sky pixels
    # with a sky gradient and a given segmentation map
    yy, xx = np.indices(data.shape)
    seg = C.segment(data)
    s2 = C.estimate_noise(data + 0.02 * xx - 0.01 * yy, seg)
    assert abs(s2 / SIGMA - 1) < 0.03, s2
    img = bp.Image(data, sigma=s, pixel_scale=SCALE)
    assert np.allclose(np.sqrt(img.variance), s)
    # pure noise: the value of the simulation's sigma
    rng = np.random.default_rng(3)
    assert abs(C.estimate_noise(rng.normal(2.0, 1.7, (200, 200))) / 1.7 - 1) < 0.02


def test_segment_and_sources_recover_blobs():
    data, _ = _image()
    img = bp.Image(data, sigma=SIGMA, pixel_scale=SCALE, zeropoint=23.9)
    seg = C.segment(img, smooth_fwhm=3.0)
    assert seg.max() == len(BLOBS), np.bincount(seg.ravel())
    src = C.sources_from_segmentation(img, seg, reference=img.center_sky())
    assert len(src) == 3
    for b in BLOBS:
        x0, y0, counts, s, q, pa = b
        match = min(src, key=lambda r: np.hypot(r.x - x0, r.y - y0))
        # centroid within 0.3 px; flux within 10 %; half-light radius (semi-major, 1.1774 sigma
        # for a Gaussian) within 20 %; q within 0.15; PA within 10 deg
        assert np.hypot(match.x - x0, match.y - y0) < 0.3, (match, b)
        assert abs(match.flux / counts - 1) < 0.10, (match.flux, counts)
        assert abs(match.re / (1.1774 * s * SCALE) - 1) < 0.2, (match.re, 1.1774 * s * SCALE)
        assert abs(match.q - q) < 0.15, (match.q, q)
        assert abs((match.pa - pa + 90) % 180 - 90) < 10, (match.pa, pa)
        # sky position through the WCS; (xi, eta) about the image centre: xi = -(x - xc) * scale
        assert abs(match.xi - (-(match.x - (img.nx - 1) / 2) * SCALE)) < 1e-3
        assert abs(match.eta - ((match.y - (img.ny - 1) / 2) * SCALE)) < 1e-3
        sky = img.pixel_to_sky(match.x, match.y).icrs
        assert abs(sky.ra.deg - match.ra) < 1e-9 and abs(sky.dec.deg - match.dec) < 1e-9
    t = src.table()
    assert set(["id", "ra", "dec", "xi", "eta", "flux", "re", "q", "pa", "box"]) <= set(t.colnames)


def test_deblend_two_touching_blobs():
    rng = np.random.default_rng(4)
    shape = (60, 80)
    data = _blob(shape, 30, 30, 800, 2.5, 0.9, 0) + _blob(shape, 42, 31, 600, 2.5, 0.9, 0) + rng.normal(0, 0.3, shape)
    seg = C.segment(data, smooth_fwhm=3.0)
    assert seg.max() == 2
    img = bp.Image(data, sigma=0.3, pixel_scale=SCALE)
    src = sorted(C.sources_from_segmentation(img, seg), key=lambda r: r.x)
    assert abs(src[0].x - 30) < 0.7 and abs(src[1].x - 42) < 0.7, [(s.x, s.y) for s in src]
    assert not C.segment(data, smooth_fwhm=3.0, deblend=False).max() == 2


def test_sources_from_table_and_add_sources():
    data, _ = _image()
    img = bp.Image(data, sigma=SIGMA, pixel_scale=SCALE, zeropoint=23.9, psf=bp.GaussianPSF(0.3), name="a")
    coords = img.pixel_to_sky(np.array([b[0] for b in BLOBS]), np.array([b[1] for b in BLOBS]))
    table = {"ra": coords.ra.deg, "dec": coords.dec.deg, "re": [np.nan, 0.5, np.nan]}
    src = C.sources_from_table(table, image=img, reference=img.center_sky(), default_radius=2.0)
    for s, b in zip(src, BLOBS):
        assert np.hypot(s.x - b[0], s.y - b[1]) < 1e-6  # the table's position, through the WCS
        assert abs(s.flux / b[2] - 1) < 0.15
        assert abs((s.pa - b[5] + 90) % 180 - 90) < 12
    assert src[1].re == 0.5  # given columns are kept
    # a second image of the same sky, rotated frame (its own WCS): windows land on the sources
    scene = bp.Scene([img], reference=img.center_sky())
    scene.add("sky", bp.FlatSky)
    srcs = C.add_sources(scene, src, bp.Gaussian, name="b{id}", window_pad=0.5)
    assert [s.name for s in srcs] == ["b1", "b2", "b3"]
    model = scene.build()
    for s, b in zip(srcs, BLOBS):
        x0, x1, y0, y1 = model._boxes[(s.name, "a")]
        assert x0 < b[0] < x1 and y0 < b[1] < y1
    init = model.init_values
    for k, b in enumerate(BLOBS, start=1):  # initial positions from the list, through the WCS
        x, y = (float(v) for v in img.pixel_map(img.center_sky())(init[f"b{k}.xi"], init[f"b{k}.eta"]))
        assert np.hypot(x - b[0], y - b[1]) < 1e-3


def test_errors():
    with pytest.raises(TypeError):
        C.sources_from_segmentation(np.zeros((10, 10)), np.zeros((10, 10), int))
    assert C.segment(np.random.default_rng(0).normal(0, 1, (50, 50))).max() == 0


def test_neighbour_mask_keeps_one_object_and_the_sky():
    seg = np.zeros((6, 8), int)
    seg[1:3, 1:3] = 1
    seg[3:5, 4:7] = 2
    seg[0, 7] = 3
    by_pixel = C.neighbour_mask(seg, (5, 4))  # a pixel of object 2
    assert np.array_equal(by_pixel, (seg == 1) | (seg == 3))
    assert np.array_equal(C.neighbour_mask(seg, 2), by_pixel)
    assert np.array_equal(C.neighbour_mask(seg, (0, 5)), seg != 0)  # kept a sky pixel: every object masked
    with pytest.raises(ValueError, match="outside the map"):
        C.neighbour_mask(seg, (8, 0))
