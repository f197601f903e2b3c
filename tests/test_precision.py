"""float32 (for GPUs) is selectable and renders the same image as float64 to float32 precision."""

import subprocess
import sys

import numpy as np

SCRIPT = """
import sys, numpy as np, bayesprof
bayesprof.set_precision(sys.argv[1])
from bayesprof.render import Renderer
from bayesprof.scenes import seed_benchmark_galaxy, seed_benchmark_images
images = seed_benchmark_images()
out = [np.asarray(Renderer(im, images.reference)(seed_benchmark_galaxy()), dtype=float) for im in images]
print(np.asarray(Renderer(images[1], images.reference)(seed_benchmark_galaxy())).dtype)
np.savez(sys.argv[2], *out)
"""


def test_float32_matches_float64(tmp_path):
    results = {}
    for precision in ("float64", "float32"):
        path = tmp_path / f"{precision}.npz"
        proc = subprocess.run([sys.executable, "-c", SCRIPT, precision, str(path)], capture_output=True, text=True,
                              check=True)
        assert proc.stdout.strip() == precision
        results[precision] = np.load(path)
    for key in results["float64"].files:
        a, b = results["float64"][key], results["float32"][key]
        assert np.abs(a - b).max() < 1e-5 * a.max()


def test_bad_precision_name():
    import pytest

    import bayesprof

    with pytest.raises(ValueError, match="float64"):
        bayesprof.set_precision("float16")
