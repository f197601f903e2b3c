PYTHON ?= python3.12
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test bench clean

# Creates .venv once and (re)installs only when pyproject.toml changed.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || { command -v $(PYTHON) >/dev/null 2>&1 && $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

demo: install
	$(PY) -m bayesprof.demo --out demo_output

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/render.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
