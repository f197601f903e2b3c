"""Shared pytest set-up.

Each test module compiles its own scenes; JAX keeps every compiled executable for the life
of the process, so a full run grew to ~6 GB and once crashed inside XLA's compiler late in
the suite (a segfault in ``backend_compile``).  JAX's in-memory caches are therefore cleared
after each module.

``make test`` runs the suite on several processes (pytest-xdist, ``--dist loadgroup``): the
tests of one module stay together on one worker (they share module-scoped fits), each
notebook is a group of its own, and the notebooks start first (they are the longest items).
Compiled programs go to JAX's persistent compilation cache, shared by the workers, the
notebook kernels and the CLI subprocesses of one run, so a program of the same structure is
compiled once per run rather than once per module or process.  The cache lives in
``.jax_cache`` at the repository root (``JAX_COMPILATION_CACHE_DIR`` overrides it); JAX keys
each entry by the program, the compile options and its own version, so a stale entry is
never used.
"""

import gc
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache"))  # inherited by kernels, CLIs

import jax  # noqa: E402  (after the cache directory is set)

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])


# the notebooks by decreasing run time (03: ~7-11 min on 2 cores; the others 2-3 min)
NOTEBOOK_ORDER = ["03_supernova_light_curve", "01_joint_models", "04_space_and_ground", "02_posterior_analysis"]


def _notebook_rank(item):
    if not item.module.__name__.endswith("test_notebooks") or "[" not in item.name:
        return len(NOTEBOOK_ORDER)
    return next((i for i, n in enumerate(NOTEBOOK_ORDER) if n in item.name), len(NOTEBOOK_ORDER) - 1)


def pytest_collection_modifyitems(config, items):
    """One xdist group per module, one per notebook; notebooks first (stable order otherwise)."""
    for item in items:
        group = item.name if _notebook_rank(item) < len(NOTEBOOK_ORDER) else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=_notebook_rank)


@pytest.fixture(autouse=True, scope="module")
def _clear_jax_caches_after_module():
    yield
    jax.clear_caches()
    gc.collect()
