"""MAP fit times of the real-data workflows (issue 4), cold (compilation included) and warm.

Each scene is built exactly as its test builds it (the builders are imported from ``tests/``),
on the bundled data:

1. the demo's job: GAMA G279148 in KiDS r + SDSS r (``bayesprof/data/gama-kids-sdss/G279148.yaml``,
   the config ``make demo`` runs);
2. COSMOS: four galaxies in HST F814W + HSC grizy (``tests/test_cosmos.py``);
3. DECam z + unWISE W1, W2 (``tests/test_legacy_wise.py``, the joint fit);
4. 8 DECam exposures: host + neighbour + sky, zeropoint and WCS corrections
   (``tests/test_legacy_exposures.py``, the host fit);
5. the same with an injected supernova, flux per epoch, started from the host MAP.

"cold" is the first ``fit_map`` of a freshly built scene (renderer set-up, JIT compilation and
the fit); "warm" is a second call on the same scene.  Workflow 2 takes minutes per call, so
``--only`` picks workflows (e.g. ``--only 1 3 4``).

Usage:  .venv/bin/python benchmarks/workflows.py [--only 1 2 3 4 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def timed_fits(build, **kwargs):
    """(scene build s, cold fit s, warm fit s, the warm fit)."""
    import bayesprof as bp

    t0 = time.perf_counter()
    scene = build()
    model = scene.build()
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    bp.fit_map(model, **kwargs)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = bp.fit_map(model, **kwargs)
    warm = time.perf_counter() - t0
    return t_build, cold, warm, fit


def workflow_1():
    from bayesprof import cli

    path = HERE.parent / "bayesprof" / "data" / "gama-kids-sdss" / "G279148.yaml"
    config = cli.load_config(path)
    images = cli.load_images(config, path.parent)
    settings = config.get("map", {}) or {}
    return timed_fits(lambda: cli.build_scene(config, images), **settings)


def workflow_2():
    import bayesprof as bp
    from bayesprof import catalog as C
    from bayesprof.datasets import cosmos_hst_hsc

    def build():
        ims = cosmos_hst_hsc()
        hst = ims["F814W"]
        seg = C.segment(hst, smooth_fwhm=6.0)
        src = C.sources_from_segmentation(hst, seg, reference=ims.reference).select(lambda s: s.area >= 200 and s.snr > 30)
        scene = bp.Scene(ims)
        C.add_sources(scene, list(src), bp.Sersic, name="g{id}", window_pad=0.4, common_window=list("grizy"))
        scene.add("sky", bp.PlaneSky, images=list(ims.names))
        scene.add_astrometric_offsets(0.1, reference_image="F814W")
        return scene

    return timed_fits(build, max_steps=400)


def workflow_3():
    import test_legacy_wise as t

    data = t.data.__wrapped__()
    return timed_fits(lambda: t._scene([data["z"], data["W1"], data["W2"]], data))


def _exposures():
    from bayesprof import datasets

    return datasets.legacy_testcase3()


def workflow_4():
    import test_legacy_exposures as t

    images = _exposures()
    return timed_fits(lambda: t.host_scene(images))


def workflow_5():
    import bayesprof as bp
    import test_legacy_exposures as t

    exposures = _exposures()
    host = bp.fit_map(t.host_scene(exposures))
    images, pos, truth, _ = t.supernova.__wrapped__(exposures, host)
    xi, eta = (float(v) for v in bp.tangent_plane_offsets(pos, images.reference))
    return timed_fits(lambda: t.add_supernova(t.host_scene(images), truth, position=(xi + 0.08, eta - 0.05)),
                      init=host.values)


WORKFLOWS = {
    1: ("KiDS r + SDSS r, GAMA G279148 (the demo's config)", workflow_1),
    2: ("COSMOS: 4 galaxies, HST F814W + HSC grizy", workflow_2),
    3: ("DECam z + unWISE W1, W2", workflow_3),
    4: ("8 DECam exposures: host + neighbour + corrections", workflow_4),
    5: ("8 DECam exposures + injected supernova (flux per epoch)", workflow_5),
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", type=int, nargs="+", default=sorted(WORKFLOWS), choices=sorted(WORKFLOWS))
    args = p.parse_args()
    import jax

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}, "
          f"jax {jax.__version__}; load at start {os.getloadavg()}")
    print("| workflow | scene | parameters | pixels | LM steps | build | MAP cold | MAP warm | reduced chi2 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in args.only:
        label, run = WORKFLOWS[k]
        t_build, cold, warm, fit = run()
        print(f"| {k} | {label} | {fit.n_params} | {fit.n_data} | {fit.iterations} | {t_build:.1f} s | {cold:.1f} s | "
              f"{warm:.2f} s | {fit.reduced_chi2:.3f} |", flush=True)
    print(f"load at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
