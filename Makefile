# `make test` runs the test suite, `make run` runs every demo's quick preset,
# `make gallery` runs them too and refreshes the README's pictures in gallery/.
# Each creates .venv and installs the project (with the test, mujoco and ray extras) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test run gallery bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,mujoco,ray]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

run: $(STAMP)
	$(PY) run_all.py

gallery: $(STAMP)
	$(PY) run_all.py --gallery

bench: $(STAMP)
	$(PY) benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
