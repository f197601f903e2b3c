"""``MoffatPSF.fit_stamp`` against GalSim: a Moffat drawn by GalSim (pixel response included,
off-centre), its wings replaced by a negative ring like the KiDS stamps of ``gama-kids-sdss``,
is recovered from the stamp's core."""

import galsim
import numpy as np
import pytest

import bayesprof as bp


@pytest.mark.parametrize("fwhm, beta, scale", [(0.65, 3.1, 0.2), (1.1, 2.5, 0.339), (0.9, 4.5, 0.262)])
def test_fit_stamp_recovers_a_galsim_moffat_with_corrupted_wings(fwhm, beta, scale):
    offset = (0.31, -0.22)
    stamp = galsim.Moffat(beta=beta, fwhm=fwhm).drawImage(nx=25, ny=25, scale=scale, offset=offset).array
    y, x = np.indices(stamp.shape)
    r = np.hypot(x - 12 - offset[0], y - 12 - offset[1])
    corrupted = np.where(stamp < 0.02 * stamp.max(), -0.005 * stamp.max() * np.exp(-((r - 7) / 3) ** 2), stamp)
    assert corrupted[corrupted < 0].sum() < -0.02 * corrupted.sum()
    psf = bp.MoffatPSF.fit_stamp(corrupted, scale)
    assert psf.fwhm == pytest.approx(fwhm, rel=0.005)
    assert psf.beta == pytest.approx(beta, rel=0.02)
    assert np.allclose(psf.center, (12 + offset[0], 12 + offset[1]), atol=0.01)
    assert psf.core_rms < 1e-3


def test_fit_stamp_bad_input():
    with pytest.raises(ValueError, match="at least 5x5"):
        bp.MoffatPSF.fit_stamp(np.ones((3, 3)), 0.2)
    with pytest.raises(ValueError, match="no positive pixel"):
        bp.MoffatPSF.fit_stamp(-np.ones((9, 9)), 0.2)
    with pytest.raises(ValueError, match="finite"):
        bp.MoffatPSF.fit_stamp(np.full((9, 9), np.nan), 0.2)
