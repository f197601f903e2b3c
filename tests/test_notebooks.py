"""The user notebooks in notebooks/ run from start to end (BAYESPROF_QUICK=1: short NUTS chains).

Each notebook is executed by nbclient in a fresh kernel with the notebooks folder as its
working directory; a cell that raises fails the test with the cell's traceback.
"""

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["01_joint_models.ipynb", "02_posterior_analysis.ipynb", "03_supernova_light_curve.ipynb",
         "04_space_and_ground.ipynb", "05_bulge_disk_colours.ipynb"]
CELL_TIMEOUT_S = 1500  # the 8-exposure MAP of notebook 03 takes 5-13 min on 2 cores


def _run(name, monkeypatch):
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    monkeypatch.setenv("BAYESPROF_QUICK", "1")
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors


# one class per notebook: ``make test`` distributes the tests by class or module (pytest-xdist
# ``--dist loadscope``), so the notebooks can run on different workers
class TestNotebook01:
    def test_runs(self, monkeypatch):
        _run(NAMES[0], monkeypatch)


class TestNotebook02:
    def test_runs(self, monkeypatch):
        _run(NAMES[1], monkeypatch)


class TestNotebook03:
    def test_runs(self, monkeypatch):
        _run(NAMES[2], monkeypatch)


class TestNotebook04:
    def test_runs(self, monkeypatch):
        _run(NAMES[3], monkeypatch)


class TestNotebook05:
    def test_runs(self, monkeypatch):
        _run(NAMES[4], monkeypatch)


def test_notebooks_are_stripped():
    """Committed notebooks carry no outputs (they are produced by running them)."""
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, name
        assert "/work/" not in (NOTEBOOKS / name).read_text() and os.sep + "home" + os.sep not in \
            (NOTEBOOKS / name).read_text()
