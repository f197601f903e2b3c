"""Tests of bayesprof.image: noise handling, WCS geometry and the JAX pixel maps.

Geometry is checked against astropy, used independently of bayesprof: the
tangent-plane offsets of a point about a reference are obtained from an astropy
TAN WCS whose reference pixel is the tangent point and whose pixels are 1
arcsec squared with x towards east, so that its pixel coordinates *are*
(xi, eta) in arcsec (see ``_tangent_wcs``).
"""

import warnings
from pathlib import Path

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from bayesprof.image import Image, ImageList, PixelMap, sky_from_offsets, tangent_plane_offsets

DATA = Path(__file__).parent / "data"
TPV_HEADERS = [
    DATA / "c4d_140818_232043_ooi_z_ls9.N12.hdr",
    DATA / "c4d_180218_090701_ooi_z_ls9.N10.hdr",
]


def _image(shape=(20, 30), **kwargs):
    kwargs.setdefault("variance", 1.0)
    if "wcs" not in kwargs:
        kwargs.setdefault("pixel_scale", 0.5)
    return Image(np.zeros(shape), **kwargs)


def _tangent_wcs(reference):
    """astropy TAN WCS whose 0-indexed pixel coordinates are (xi, eta) in arcsec about reference."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [reference.ra.deg, reference.dec.deg]
    w.wcs.crpix = [1.0, 1.0]
    w.wcs.cdelt = [1.0 / 3600.0, 1.0 / 3600.0]  # +x towards east, +y towards north
    return w


def _rotated_wcs(shape, angle_deg=37.0, scale=0.4):
    """TAN WCS with a CD matrix rotated by angle_deg, with skew and unequal pixel sides."""
    ny, nx = shape
    t = np.deg2rad(angle_deg)
    rot = np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    skew = np.array([[1.0, 0.06], [0.0, 1.03]])
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.1, 2.2]
    w.wcs.crpix = [nx / 3.0, -0.4 * ny]  # tangent point off the image
    w.wcs.cd = scale / 3600.0 * rot @ skew
    w.pixel_shape = (nx, ny)
    return w


def _tpv_image(path):
    header = fits.Header.fromtextfile(path)
    ny, nx = header["NAXIS2"], header["NAXIS1"]
    return Image(np.zeros((ny, nx)), variance=1.0, wcs=WCS(header), name=path.stem)


# ---------------------------------------------------------------------------
# Tangent-plane offsets
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ref_radec", [(10.0, -30.0), (359.99, 84.0), (244.78, 12.07)])
def test_tangent_plane_offsets_match_astropy_tan(ref_radec):
    reference = SkyCoord(*ref_radec, unit="deg")
    truth = _tangent_wcs(reference)
    rng = np.random.default_rng(0)
    xi_true = rng.uniform(-1800.0, 1800.0, 50)
    eta_true = rng.uniform(-1800.0, 1800.0, 50)
    coords = truth.pixel_to_world(xi_true, eta_true)

    xi, eta = tangent_plane_offsets(coords, reference)
    np.testing.assert_allclose(xi, xi_true, rtol=0, atol=1e-7)
    np.testing.assert_allclose(eta, eta_true, rtol=0, atol=1e-7)

    back = sky_from_offsets(xi_true, eta_true, reference)
    assert np.max(back.separation(coords).to_value(u.arcsec)) < 1e-7


def test_tangent_plane_offsets_directions_and_frames():
    reference = SkyCoord(50.0, 20.0, unit="deg")
    east = SkyCoord(50.001, 20.0, unit="deg")
    north = SkyCoord(50.0, 20.001, unit="deg")
    assert tangent_plane_offsets(east, reference)[0] > 0
    assert tangent_plane_offsets(north, reference)[1] > 0
    # A point given in another frame is transformed to the reference's frame first.
    xi, eta = tangent_plane_offsets(north.galactic, reference)
    np.testing.assert_allclose([xi, eta], [0.0, 3.6], atol=1e-6)
    # No gnomonic projection 90 degrees or more away.
    assert np.isnan(tangent_plane_offsets(SkyCoord(230.0, -20.0, unit="deg"), reference)[0])


# ---------------------------------------------------------------------------
# Default WCS from pixel_scale
# ---------------------------------------------------------------------------


def test_default_wcs_matches_documented_header():
    ny, nx, scale = 20, 31, 0.262
    image = _image((ny, nx), pixel_scale=scale)
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["CUNIT1"], header["CUNIT2"] = "deg", "deg"
    header["CDELT1"], header["CDELT2"] = -scale / 3600.0, scale / 3600.0
    header["CRVAL1"], header["CRVAL2"] = 180.0, 0.0
    header["CRPIX1"], header["CRPIX2"] = (nx + 1) / 2.0, (ny + 1) / 2.0  # 1-indexed centre
    header["RADESYS"] = "ICRS"
    truth = WCS(header)

    rng = np.random.default_rng(1)
    x = rng.uniform(-0.5, nx - 0.5, 40)
    y = rng.uniform(-0.5, ny - 0.5, 40)
    sky = image.pixel_to_sky(x, y)
    assert np.max(sky.separation(truth.pixel_to_world(x, y)).to_value(u.arcsec)) < 1e-9
    xb, yb = image.sky_to_pixel(sky)
    np.testing.assert_allclose(xb, x, atol=1e-9)
    np.testing.assert_allclose(yb, y, atol=1e-9)
    assert image.pixel_scale == scale


def test_default_wcs_is_north_up_east_left():
    image = _image((25, 25), pixel_scale=0.3)
    here = image.pixel_to_sky(12.0, 12.0)
    right = image.pixel_to_sky(13.0, 12.0)
    up = image.pixel_to_sky(12.0, 13.0)
    assert right.ra < here.ra  # +x is west
    assert abs((right.dec - here.dec).to_value(u.arcsec)) < 1e-9
    assert up.dec > here.dec  # +y is north
    assert abs((up.ra - here.ra).to_value(u.arcsec)) < 1e-9
    np.testing.assert_allclose(here.separation(right).to_value(u.arcsec), 0.3, rtol=1e-9)


@pytest.mark.parametrize("shape", [(21, 31), (20, 30), (20, 31), (1, 2)])
def test_default_reference_at_array_centre(shape):
    ny, nx = shape
    image = _image(shape, pixel_scale=0.7)
    anchor = SkyCoord(*Image.DEFAULT_SKY_REFERENCE, unit="deg")
    x, y = image.sky_to_pixel(anchor)
    np.testing.assert_allclose([x, y], [(nx - 1) / 2, (ny - 1) / 2], atol=1e-9)
    assert image.center_sky().separation(anchor).to_value(u.arcsec) < 1e-9


def test_origin_places_reference_point():
    scale, x0, y0 = 0.5, 3.1, -7.2
    image = _image((40, 30), pixel_scale=scale, origin=(x0, y0))
    anchor = SkyCoord(*Image.DEFAULT_SKY_REFERENCE, unit="deg")
    x, y = image.sky_to_pixel(anchor)
    np.testing.assert_allclose([x, y], [-0.5 - x0 / scale, -0.5 - y0 / scale], atol=1e-9)


def test_origin_aligns_images_as_in_autoprof_joint_models():
    # AutoProf's JointModels tutorial: a 500 px r image at 0.262"/px with origin (0, 0)
    # and a 52 px W1 image at 2.75"/px shifted so that both have the same centre.
    shift = 500 * 0.262 / 2 - 52 * 2.75 / 2
    r = _image((500, 500), pixel_scale=0.262, origin=(0.0, 0.0))
    w1 = _image((52, 52), pixel_scale=2.75, origin=(shift, shift))
    assert r.center_sky().separation(w1.center_sky()).to_value(u.arcsec) < 1e-6
    # ... and that centre is 65.5" along +x (west) and +y (north) of the reference point.
    xi, eta = tangent_plane_offsets(r.center_sky(), SkyCoord(180.0, 0.0, unit="deg"))
    np.testing.assert_allclose([xi, eta], [-65.5, 65.5], atol=1e-6)


def test_pixel_scale_from_wcs():
    header = fits.Header.fromtextfile(TPV_HEADERS[0])
    image = _tpv_image(TPV_HEADERS[0])
    cd = np.array([[header["CD1_1"], header["CD1_2"]], [header["CD2_1"], header["CD2_2"]]])
    expected = np.sqrt(np.prod(np.hypot(cd[0], cd[1]))) * 3600.0  # column lengths
    np.testing.assert_allclose(image.pixel_scale, expected, rtol=1e-12)
    assert 0.26 < image.pixel_scale < 0.265


# ---------------------------------------------------------------------------
# PixelMap against astropy
# ---------------------------------------------------------------------------


def _check_pixel_map(image, reference, n=200, seed=2):
    """PixelMap vs astropy world_to_pixel at random points inside the image."""
    pmap = image.pixel_map(reference)
    assert pmap.max_residual_pix < 1e-4
    rng = np.random.default_rng(seed)
    # Random sky points over the image, as tangent-plane offsets from astropy alone.
    x = rng.uniform(-0.5, image.nx - 0.5, n)
    y = rng.uniform(-0.5, image.ny - 0.5, n)
    xi, eta = _tangent_wcs(reference).world_to_pixel(image.wcs.pixel_to_world(x, y))
    truth_x, truth_y = image.wcs.world_to_pixel(_tangent_wcs(reference).pixel_to_world(xi, eta))
    px, py = pmap(jnp.asarray(xi), jnp.asarray(eta))
    np.testing.assert_allclose(np.asarray(px), truth_x, rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(py), truth_y, rtol=0, atol=1e-4)
    return pmap


def test_pixel_map_default_tan():
    image = _image((64, 48), pixel_scale=0.262)
    reference = image.pixel_to_sky(10.0, 50.0)
    _check_pixel_map(image, reference)


def test_pixel_map_rotated_skewed_cd_tan():
    shape = (80, 120)
    image = _image(shape, wcs=_rotated_wcs(shape))
    # Scene reference about 20" from the image centre, so the two tangent planes differ.
    centre = image.center_sky()
    reference = SkyCoord(centre.ra + 15 * u.arcsec, centre.dec - 12 * u.arcsec)
    _check_pixel_map(image, reference)


@pytest.mark.parametrize("path", TPV_HEADERS, ids=lambda p: p.stem)
def test_pixel_map_tpv_headers(path):
    image = _tpv_image(path)
    # astropy (wcslib) turns TPV into TAN plus a polynomial distortion; check it is kept.
    header = fits.Header.fromtextfile(path)
    assert header["CTYPE1"] == "RA---TPV"
    for key in [k for k in header if k.startswith("PV")]:
        del header[key]
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    undistorted = WCS(header).pixel_to_world(20.0, 25.0)
    assert image.pixel_to_sky(20.0, 25.0).separation(undistorted) > 1 * u.arcsec
    # Reference: the centre of the other exposure, as in a joint fit.
    other = _tpv_image(TPV_HEADERS[1] if path == TPV_HEADERS[0] else TPV_HEADERS[0])
    _check_pixel_map(image, other.center_sky())


def test_pixel_map_large_tpv_ccd():
    # The same TPV solution over a whole 2046 x 4094 DECam CCD (distortion matters more).
    header = fits.Header.fromtextfile(TPV_HEADERS[0])
    header["NAXIS1"], header["NAXIS2"] = 2046, 4094
    header["CRPIX1"] += 1500.0
    image = _image((4094, 2046), wcs=WCS(header))
    _check_pixel_map(image, image.pixel_to_sky(100.0, 3000.0))


#: images with a default, a rotated and skewed, and a TPV WCS, for tests across WCS kinds
WCS_KINDS = pytest.mark.parametrize(
    "make",
    [
        lambda: _image((64, 48), pixel_scale=0.262),
        lambda: _image((80, 120), wcs=_rotated_wcs((80, 120))),
        lambda: _tpv_image(TPV_HEADERS[0]),
    ],
    ids=["default", "rotated", "tpv"],
)


@WCS_KINDS
def test_pixel_map_jacobian_matches_astropy_finite_differences(make):
    image = make()
    reference = image.pixel_to_sky(3.0, 4.0)
    pmap = image.pixel_map(reference)
    tangent = _tangent_wcs(reference)

    def astropy_pixels(xi, eta):
        return np.array(image.wcs.world_to_pixel(tangent.pixel_to_world(xi, eta)))

    h = 0.5  # arcsec; the maps are close to linear, so central differences are exact enough
    for x, y in [(0.0, 0.0), (image.nx - 1.0, image.ny / 2.0), (image.nx / 3.0, image.ny - 1.0)]:
        xi, eta = (float(v) for v in tangent.world_to_pixel(image.pixel_to_sky(x, y)))
        fd = np.stack(
            [
                (astropy_pixels(xi + h, eta) - astropy_pixels(xi - h, eta)) / (2 * h),
                (astropy_pixels(xi, eta + h) - astropy_pixels(xi, eta - h)) / (2 * h),
            ],
            axis=1,
        )
        jac = np.asarray(pmap.jacobian(xi, eta))
        assert jac.shape == (2, 2)
        np.testing.assert_allclose(jac, fd, rtol=0, atol=1e-6 * np.abs(fd).max())


def test_pixel_map_default_tan_jacobian_is_scale_and_flip():
    image = _image((30, 30), pixel_scale=0.25)
    pmap = image.pixel_map(image.center_sky())
    np.testing.assert_allclose(pmap.jacobian(0.0, 0.0), [[-4.0, 0.0], [0.0, 4.0]], atol=1e-8)
    np.testing.assert_allclose(pmap(0.0, 0.0), [14.5, 14.5], atol=1e-8)


def test_pixel_map_under_jax_transformations():
    image = _tpv_image(TPV_HEADERS[1])
    pmap = image.pixel_map(image.center_sky())
    xi = jnp.array([-3.0, 0.0, 2.5])
    eta = jnp.array([1.0, 0.0, -4.0])
    x, y = pmap(xi, eta)
    xj, yj = jax.jit(pmap)(xi, eta)
    np.testing.assert_allclose(xj, x, rtol=1e-12)
    # The map passes through jit as an argument (it is a pytree).
    xp, _ = jax.jit(lambda m, a, b: m(a, b))(pmap, xi, eta)
    np.testing.assert_allclose(xp, x, rtol=1e-12)
    xv, yv = jax.vmap(pmap)(xi, eta)
    np.testing.assert_allclose(yv, y, rtol=1e-12)
    grad = jax.vmap(jax.grad(lambda a, b: pmap(a, b)[1], argnums=(0, 1)))(xi, eta)
    jac = pmap.jacobian(xi, eta)
    assert jac.shape == (3, 2, 2)
    np.testing.assert_allclose(np.stack(grad, axis=-1), jac[:, 1, :], rtol=1e-10)
    # Broadcasting a scalar against an array.
    assert pmap(jnp.zeros((2, 3)), 0.0)[0].shape == (2, 3)


def test_pixel_map_rejects_image_beyond_hemisphere():
    image = _image((10, 10), pixel_scale=1.0)
    with pytest.raises(ValueError, match="90 degrees"):
        PixelMap(image.wcs, image.shape, SkyCoord(0.0, 0.0, unit="deg"))


def test_overlaps():
    image = _image((20, 30), pixel_scale=0.5)  # centre at (180, 0); 15" x 10"
    reference = image.center_sky()
    # +x is west: xi = -0.5 * (x - 14.5); y: eta = 0.5 * (y - 9.5)
    assert image.overlaps(reference, 0.0, 0.0)
    assert image.overlaps(reference, 7.4, 0.0)  # x = -0.3
    assert not image.overlaps(reference, 7.6, 0.0)  # x = -0.7
    assert image.overlaps(reference, 7.6, 0.0, margin_pix=1)
    assert image.overlaps(reference, 0.0, 4.9)  # y = 19.3
    assert not image.overlaps(reference, 0.0, 5.1)  # y = 19.7
    got = image.overlaps(reference, np.array([0.0, 100.0, -7.0]), np.array([0.0, 0.0, -4.0]))
    np.testing.assert_array_equal(got, [True, False, True])


@WCS_KINDS
def test_pixel_map_contains_agrees_with_overlaps(make):
    """PixelMap.contains (the polynomial) against Image.overlaps (astropy's WCS) at points from
    the image's middle to 50x its size away, off-centre reference: the same answer at every point
    farther than 1e-3 px from an edge (and both True at the centre, False far away)."""
    image = make()
    reference = image.pixel_to_sky(3.0, 4.0)
    pmap = image.pixel_map(reference)
    rng = np.random.default_rng(5)
    tangent = _tangent_wcs(reference)
    xc, yc = (float(v) for v in tangent.world_to_pixel(image.center_sky()))
    size = max(image.nx, image.ny) * float(image.pixel_scale)
    radius = size * np.concatenate([rng.uniform(0, 1, 3000), rng.uniform(1, 50, 1000)])
    angle = rng.uniform(0, 2 * np.pi, radius.size)
    xi, eta = xc + radius * np.cos(angle), yc + radius * np.sin(angle)
    x, y = image.wcs.world_to_pixel(tangent.pixel_to_world(xi, eta))
    edge = np.minimum.reduce([np.abs(x + 0.5), np.abs(x - image.nx + 0.5), np.abs(y + 0.5), np.abs(y - image.ny + 0.5)])
    clear = edge > 1e-3
    got = pmap.contains(xi, eta)
    want = image.overlaps(reference, xi, eta)
    assert 0.1 < want.mean() < 0.9
    np.testing.assert_array_equal(got[clear], want[clear])
    assert pmap.contains(xc, yc) and not pmap.contains(xc + 100 * size, yc)


# ---------------------------------------------------------------------------
# Noise, masks and bad input
# ---------------------------------------------------------------------------


def test_noise_equivalence():
    data = np.arange(12.0).reshape(3, 4)
    images = [
        Image(data, sigma=2.0, pixel_scale=1.0),
        Image(data, variance=4.0, pixel_scale=1.0),
        Image(data, weight=0.25, pixel_scale=1.0),
        Image(data, weight=np.full((3, 4), 0.25), pixel_scale=1.0),
        Image(data, sigma=np.full((3, 4), 2.0), pixel_scale=1.0),
    ]
    for image in images:
        assert image.variance.dtype == np.float64
        np.testing.assert_array_equal(image.variance, np.full((3, 4), 4.0))
        np.testing.assert_array_equal(image.data, data)
        assert not image.mask.any()


def test_unit_variance_assumed_with_warning():
    with pytest.warns(UserWarning, match="unit variance"):
        image = Image(np.ones((3, 3)), pixel_scale=1.0, name="r")
    np.testing.assert_array_equal(image.variance, 1.0)


def test_nonfinite_data_masked_with_one_warning():
    data = np.ones((5, 6))
    data[1, 2] = np.nan
    data[3, 4] = np.inf
    data[0, 0] = -np.inf
    mask = np.zeros((5, 6), dtype=bool)
    mask[4, 5] = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = Image(data, variance=2.0, mask=mask, pixel_scale=1.0, name="g")
    assert len(caught) == 1
    assert issubclass(caught[0].category, UserWarning)
    message = str(caught[0].message)
    assert "3 pixels" in message and "'g'" in message
    expected = ~np.isfinite(data) | mask
    np.testing.assert_array_equal(image.mask, expected)
    assert np.all(np.isfinite(image.data)) and np.all(image.data[expected] == 0)
    assert np.all(image.variance[expected] == 1) and np.all(image.variance[~expected] == 2)


def test_zero_weight_means_masked():
    weight = np.full((4, 4), 0.5)
    weight[2, 3] = 0.0
    image = Image(np.ones((4, 4)), weight=weight, pixel_scale=1.0)
    assert image.mask[2, 3] and image.mask.sum() == 1
    assert image.variance[2, 3] == 1.0 and image.data[2, 3] == 0.0
    np.testing.assert_array_equal(image.weight, np.where(image.mask, 0.0, 0.5))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"variance": [0.0, -1.0, 1.0]},
            r"Image 'r': variance has 2 pixels <= 0 that are not masked; mask them",
        ),
        ({"variance": [np.nan, 1.0, 1.0]}, r"Image 'r': variance has 1 pixel NaN or infinite"),
        ({"variance": [1.0, np.inf, 1.0]}, r"Image 'r': variance has 1 pixel NaN or infinite"),
        ({"sigma": [1.0, 0.0, 1.0]}, r"Image 'r': sigma has 1 pixel <= 0"),
        ({"sigma": [1.0, np.nan, -2.0]}, r"Image 'r': sigma has 1 pixel <= 0 and 1 pixel NaN"),
        ({"weight": [1.0, -0.5, 1.0]}, r"Image 'r': weight has 1 pixel < 0"),
        ({"weight": [1.0, np.inf, 1.0]}, r"Image 'r': weight has 1 pixel NaN or infinite"),
    ],
)
def test_bad_noise_in_unmasked_pixels_raises(kwargs, match):
    (key, row), = kwargs.items()
    noise = np.ones((2, 3))
    noise[0] = row
    with pytest.raises(ValueError, match=match):
        Image(np.ones((2, 3)), pixel_scale=1.0, name="r", **{key: noise})


def test_bad_noise_in_masked_pixels_is_fine():
    variance = np.ones((2, 3))
    variance[0, 1] = 0.0
    variance[1, 2] = np.nan
    mask = ~np.isfinite(variance) | (variance <= 0)
    image = Image(np.ones((2, 3)), variance=variance, mask=mask, pixel_scale=1.0)
    assert np.all(np.isfinite(image.variance)) and np.all(image.variance > 0)
    np.testing.assert_array_equal(image.mask, mask)


def test_scalar_bad_noise_raises():
    with pytest.raises(ValueError, match="Image 'z': variance has 6 pixels <= 0"):
        Image(np.ones((2, 3)), variance=0.0, pixel_scale=1.0, name="z")


@pytest.mark.parametrize("key", ["variance", "weight", "sigma", "mask"])
def test_shape_mismatch_names_both_shapes(key):
    value = np.ones((3, 4), dtype=bool if key == "mask" else float)
    kwargs = {key: value}
    if key == "mask":
        kwargs["variance"] = 1.0
    with pytest.raises(ValueError, match=rf"Image 'i': {key} shape \(3, 4\) .*data shape \(4, 3\)"):
        Image(np.ones((4, 3)), pixel_scale=1.0, name="i", **kwargs)


def test_data_must_be_2d():
    with pytest.raises(ValueError, match="Image 'cube': data must be a 2-D array"):
        Image(np.ones((2, 3, 4)), variance=1.0, pixel_scale=1.0, name="cube")


@pytest.mark.parametrize("scale", [0.0, -0.2, np.nan, np.inf])
def test_bad_pixel_scale_raises(scale):
    with pytest.raises(ValueError, match="Image 'r': pixel_scale must be a finite number > 0"):
        Image(np.ones((3, 3)), variance=1.0, pixel_scale=scale, name="r")


def test_two_noise_arguments_raise():
    with pytest.raises(ValueError, match="at most one of variance, weight and sigma"):
        Image(np.ones((3, 3)), variance=1.0, sigma=1.0, pixel_scale=1.0)
    with pytest.raises(ValueError, match="weight and sigma"):
        Image(np.ones((3, 3)), weight=1.0, sigma=1.0, pixel_scale=1.0)


def test_geometry_arguments():
    with pytest.raises(ValueError, match="give pixel_scale or wcs"):
        Image(np.ones((3, 3)), variance=1.0)
    with pytest.raises(ValueError, match="not both"):
        Image(np.ones((3, 3)), variance=1.0, pixel_scale=1.0, wcs=_rotated_wcs((3, 3)))
    linear = WCS(naxis=2)
    linear.wcs.ctype = ["LINEAR", "LINEAR"]
    with pytest.raises(ValueError, match="no celestial"):
        Image(np.ones((3, 3)), variance=1.0, wcs=linear)
    with pytest.raises(ValueError, match=r"shape \(51, 41\).*data has shape \(10, 10\)"):
        Image(np.ones((10, 10)), variance=1.0, wcs=fits.Header.fromtextfile(TPV_HEADERS[0]))


def test_attributes():
    image = Image(
        np.ones((4, 5)), variance=1.0, pixel_scale=0.2, zeropoint=22.5, band="r",
        time=58000.5, name="r1", psf="a psf",
    )
    assert (image.shape, image.ny, image.nx) == ((4, 5), 4, 5)
    assert (image.zeropoint, image.band, image.time, image.psf) == (22.5, "r", 58000.5, "a psf")
    assert "r1" in repr(image) and "4x5" in repr(image)


# ---------------------------------------------------------------------------
# ImageList
# ---------------------------------------------------------------------------


def test_image_list_names_indexing_and_bands():
    a = _image((10, 10), band="g")
    b = _image((12, 8), pixel_scale=0.2, name="img0", band="r")
    c = _image((6, 6), pixel_scale=2.75)
    d = _image((10, 10), band="g", name="g2")
    images = ImageList([a, b, c, d])
    assert len(images) == 4
    assert images.names == ["img1", "img0", "img2", "g2"]  # "img0" was taken
    assert images["img2"] is c and images[1] is b and images[-1] is d
    assert list(images) == [a, b, c, d]
    assert "g2" in images and a in images
    assert images.bands == ["g", "r", "img2"]  # c has a band of its own
    with pytest.raises(KeyError):
        images["nope"]
    assert images[1:].names == ["img0", "img2", "g2"]


def test_image_list_rejects_duplicate_names():
    with pytest.raises(ValueError, match="duplicate image names"):
        ImageList([_image(name="r"), _image(name="r")])
    images = ImageList([_image(name="r")])
    with pytest.raises(ValueError, match="duplicate image name 'r'"):
        images.append(_image(name="r"))


def test_image_list_reference():
    first = _image((11, 11), pixel_scale=0.5, origin=(10.0, -3.0))
    second = _image((30, 30), pixel_scale=0.2)
    images = ImageList([first, second])
    assert images.reference.separation(first.center_sky()).to_value(u.arcsec) < 1e-9
    chosen = SkyCoord(180.001, 0.002, unit="deg")
    images = ImageList([first, second], reference=chosen)
    assert images.reference is chosen
    maps = images.pixel_maps()
    x, y = maps[1](0.0, 0.0)
    tx, ty = second.sky_to_pixel(chosen)
    np.testing.assert_allclose([x, y], [tx, ty], atol=1e-6)
    with pytest.raises(ValueError, match="empty ImageList"):
        ImageList().reference
