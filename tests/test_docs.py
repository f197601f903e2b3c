"""The API reference (``make docs``) builds from the docstrings without a single Sphinx warning."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_api_reference_builds_without_warnings(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-E", "-q", "-b", "html", str(ROOT / "docs"),
                           str(tmp_path / "html")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (tmp_path / "html" / "api.html").read_text()
    for name in ("fit_map", "forced_photometry", "PARAMETER_DOMAINS", "check_map", "load_map", "Renderer", "fit_catalog",
                 "run_catalog", "fit_map_batch"):
        assert name in api, name
