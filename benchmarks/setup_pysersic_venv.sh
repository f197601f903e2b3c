#!/usr/bin/env bash
# Create (idempotently) the pysersic benchmark venv: benchmarks/.venv-pysersic
#
# pysersic 0.1.5 brings its own jax, numpyro and arviz (it does not pin them); it lives apart
# from bayesprof's venv so that neither changes the other's versions.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-pysersic"
PY="${PYTHON:-python3.12}"
command -v "$PY" >/dev/null 2>&1 || PY="$(dirname "$(readlink -f "$HERE/../.venv/bin/python")")/python3.12"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import pysersic" 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q "pysersic==0.1.5"
fi
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for p in ("pysersic", "jax", "numpyro", "arviz", "equinox", "interpax", "numpy"):
    print(f"{p}=={md.version(p)}")
PY
