"""Shared pytest set-up.

Each test module compiles its own scenes; JAX keeps every compiled executable for the life
of the process, so a full run grew to ~6 GB and once crashed inside XLA's compiler late in
the suite (a segfault in ``backend_compile``).  JAX's in-memory caches are therefore cleared
after each module.

``make test`` runs the suite on several processes (pytest-xdist, ``--dist loadscope``): the
tests of one module stay together on one worker (they share module-scoped fits), each
notebook is a class of its own (``test_notebooks.py``), and the notebooks start first (they
are the longest items).
Compiled programs go to JAX's persistent compilation cache, shared by the workers, the
notebook kernels and the CLI subprocesses of one run, so a program of the same structure is
compiled once per run rather than once per module or process.  The cache lives in
``.jax_cache`` at the repository root (``JAX_COMPILATION_CACHE_DIR`` overrides it); JAX keys
each entry by the program, the compile options and its own version, so a stale entry is
never used.  Programs must come out the same in every process for this to work: a priors'
pytree flattened in the order of a Python set (NumPyro's) gave each process its own
arguments' order, so until 2026-12-06 the cache missed across processes
(``test_scene.py::test_prior_blocks_do_not_depend_on_numpyros_field_order``).
"""

import gc
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache"))  # inherited by kernels, CLIs
# programs that compile in 0.2-1 s are cached too (JAX's default skips those under 1 s)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402  (after the cache directory is set)

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])


# the notebooks by decreasing run time (a fresh clone's make test on 2 cores, 2026-12-07: 04 230 s,
# 03 217 s, 05 203 s, 02 87 s, 01 66 s)
NOTEBOOK_ORDER = ["TestNotebook04", "TestNotebook03", "TestNotebook05", "TestNotebook02", "TestNotebook01"]


def _rank(item):
    """Position of a notebook's test in NOTEBOOK_ORDER; every other test after them."""
    name = item.cls.__name__ if item.cls is not None else ""
    return NOTEBOOK_ORDER.index(name) if name in NOTEBOOK_ORDER else len(NOTEBOOK_ORDER)


def pytest_collection_modifyitems(config, items):
    """The notebooks first, longest first (the order of the rest unchanged): pytest-xdist hands
    out scopes in collection order, so the longest items start at once."""
    items.sort(key=_rank)


@pytest.fixture(autouse=True, scope="module")
def _clear_jax_caches_after_module():
    yield
    jax.clear_caches()
    gc.collect()
