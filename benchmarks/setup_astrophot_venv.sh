#!/usr/bin/env bash
# Create (idempotently) the AstroPhot benchmark venv: benchmarks/.venv-astrophot
#
# The only CPU build of torch on this machine is /opt/wheels/torch-2.13.0+cpu-cp311-...,
# so the venv uses Python 3.11.  torch is installed FIRST and pinned (via a constraints
# file) so that astrophot/pyro-ppl do not pull the newest CUDA build from the registry.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-astrophot"
TORCH_VERSION=2.13.0

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    for cand in python3.11 "$HOME/.pyenv/versions/3.11.7/bin/python3.11" /root/.pyenv/versions/3.11.7/bin/python3.11; do
        if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
    done
fi
[ -n "$PY" ] || { echo "python3.11 not found (set PYTHON=...)" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)

CONSTRAINTS="$VENV/constraints.txt"
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"

if ! "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null; then
    "${PIP[@]}" install "torch==$TORCH_VERSION"
fi
if ! "$VENV/bin/python" -c "import astrophot, pyro" 2>/dev/null; then
    "${PIP[@]}" install -c "$CONSTRAINTS" astrophot pyro-ppl
fi
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for p in ("torch", "astrophot", "pyro-ppl", "numpy", "scipy", "caskade"):
    try:
        print(f"{p}=={md.version(p)}")
    except md.PackageNotFoundError:
        pass
PY
