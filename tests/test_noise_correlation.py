"""``catalog.noise_correlation_factor`` against analytic values: white noise smoothed by a
k x k box kernel has F = k^2 (the sum of its autocorrelation)."""

import numpy as np
import pytest
from scipy import ndimage

import bayesprof as bp
from bayesprof import catalog


def _box_noise(k, shape=(300, 260), seed=0):
    white = np.random.default_rng(seed).normal(size=(shape[0] + k, shape[1] + k))
    smooth = ndimage.uniform_filter(white, size=k, mode="constant")[k // 2: k // 2 + shape[0], k // 2: k // 2 + shape[1]]
    return smooth / smooth.std()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_box_smoothed_noise(k):
    noise = _box_noise(k)
    F = catalog.noise_correlation_factor(noise, np.zeros(noise.shape, int), max_lag=k + 1)
    # sampling error of the summed correlations over 78000 pixels: ~0.03 k^2
    assert F == pytest.approx(k * k, rel=0.1)


def test_sources_sigma_map_and_plane_do_not_matter():
    noise = _box_noise(2, seed=1)
    y, x = np.indices(noise.shape)
    sigma = 1.0 + 0.5 * x / x.max()                      # noise varies across the image
    blob = 200 * np.exp(-((x - 130) ** 2 + (y - 150) ** 2) / (2 * 6.0**2))
    data = 1e-10 * (noise * sigma + blob + 3 + 0.01 * x)  # scale ~1e-10, a source and a sky plane
    im = bp.Image(data, sigma=1e-10 * sigma, pixel_scale=0.2)
    F = catalog.noise_correlation_factor(im)                 # sources found by segmentation
    assert F == pytest.approx(4.0, rel=0.1)


def test_too_few_background_pixels():
    with pytest.raises(ValueError, match="too few"):
        catalog.noise_correlation_factor(np.random.default_rng(0).normal(size=(12, 12)), np.zeros((12, 12)))
    with pytest.raises(ValueError, match="segmap shape"):
        catalog.noise_correlation_factor(np.zeros((50, 50)), np.zeros((5, 5)))


def test_autocorrelation_of_box_smoothed_noise():
    """2x2 box: rho = 1 at lag 0, 1/2 at one-pixel axis lags, 1/4 on the diagonal, 0 beyond."""
    rho = catalog.noise_autocorrelation(_box_noise(2, seed=2), np.zeros((300, 260), int), max_lag=2)
    expect = np.zeros((5, 5))
    expect[1:4, 1:4] = [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]
    assert rho.shape == (5, 5)
    assert np.abs(rho - expect).max() < 0.03  # sampling error ~1/sqrt(78000) per lag, x a few
