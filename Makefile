PYTHON ?= python3.12
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test docs bench bench-joint bench-group calibration clean

# Creates .venv once and (re)installs only when pyproject.toml changed.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || { command -v $(PYTHON) >/dev/null 2>&1 && $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

# GAMA galaxy G279148 fitted jointly in KiDS r and SDSS r (bundled data): MAP + NUTS, plots, NetCDF
demo: install
	$(VENV)/bin/bayesprof fit bayesprof/data/gama-kids-sdss/G279148.yaml --out demo_output

# one worker per core (at most 4: each may hold a few GB), modules kept together (tests/conftest.py)
test: install
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadscope

# the API reference from the docstrings (any Sphinx warning fails; tests/test_docs.py does the same)
docs: install
	$(PY) -m sphinx -W -E -q -b html docs docs/_build/html

bench: install
	$(PY) benchmarks/render.py

# bayesprof vs AstroPhot on the seed scene (AstroPhot lives in its own venv: torch 2.13.0 CPU)
bench-joint: install
	bash benchmarks/setup_astrophot_venv.sh
	$(PY) benchmarks/joint.py

# ten galaxies in r + W1 + NUV, bayesprof vs AstroPhot's group model (same venv as bench-joint)
bench-group: install
	bash benchmarks/setup_astrophot_venv.sh
	$(PY) benchmarks/group.py

# simulation-based calibration, 2 x 120 fits (~30 min)
calibration: install
	$(PY) benchmarks/calibration.py --n-fits 120 --seed 0
	$(PY) benchmarks/calibration.py --n-fits 120 --seed 1 --out benchmarks/.cache/calibration_seed1.json
	$(PY) benchmarks/calibration.py --pool benchmarks/.cache/calibration.json benchmarks/.cache/calibration_seed1.json

clean:
	rm -rf $(VENV) demo_output .pytest_cache docs/_build
