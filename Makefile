# make demo  -> creates .venv (once), then runs the demo on synthetic_flowers.
# make test  -> creates .venv (once), then runs the test suite (fails if no test ran).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

# Re-installs only when requirements.lock changes; otherwise a no-op.
$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip==26.3
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $(STAMP)

demo: install
	$(PY) -m slimflowers.demo

# Two workers (pytest-xdist), one test file each at a time: module fixtures are built once.
PYTEST := $(PY) -m pytest -n 2 --dist loadfile

test: install
	$(PYTEST) tests

test-fast: install
	$(PYTEST) tests -m "not slow"

# Speed figures, each against a baseline measured in the same run (see BENCHMARKS.md).
bench: install
	$(PY) bench/input_pipeline_bench.py
	$(PY) bench/train_bench.py
	$(PY) bench/eval_bench.py
	$(PY) bench/export_bench.py
	$(PY) bench/vs_keras.py

clean:
	rm -rf $(VENV)
