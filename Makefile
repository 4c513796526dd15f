# `make test` runs ruff and the test suite (kernels on, then the engine's tests on the
# references), `make run` runs every demo's quick preset,
# `make gallery` runs them too and refreshes the README's pictures in gallery/.
# Each creates .venv and installs the project (with the test, mujoco and ray extras) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The engine's tests and the tests of the demos that lean on it most, run a second time with
# every op on its reference (MINIMAL_KERNELS=reference); `make test-reference` runs them all so.
REFERENCE_TESTS := tests/test_*.py tests/demos/test_vae.py tests/demos/test_gan.py \
	tests/demos/test_draw.py tests/demos/test_deepcolor.py tests/demos/test_chat_lstm.py \
	tests/demos/test_deconvnet.py

.PHONY: test test-reference run gallery bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,mujoco,ray]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q
	MINIMAL_KERNELS=reference $(PY) -m pytest -q $(REFERENCE_TESTS)

test-reference: $(STAMP)
	MINIMAL_KERNELS=reference $(PY) -m pytest -q

run: $(STAMP)
	$(PY) run_all.py

gallery: $(STAMP)
	$(PY) run_all.py --gallery

bench: $(STAMP)
	$(PY) benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
