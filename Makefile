# `make demo` and `make test` each set up their own virtual environment (.venv) with the pinned
# package, so both work on a fresh clone. `make test` adds the test extra (torch/torchvision as a
# parity oracle only; they are never imported by the library; onnx and onnxruntime for the export
# tests) and jax2onnx without its declared dependencies: it caps orbax-checkpoint below 0.11.37,
# we pin 0.12.8, and it never imports orbax (README, "Deploy").
PYTHON ?= python3.11
VENV := .venv
WORKDIR ?= workdirs/demo
PYTEST_ARGS ?=
JAX2ONNX := jax2onnx==0.17.1

.PHONY: demo test clean

# The demo keeps its prepared data and caches inside the clone unless the variables are set.
demo: export RGPKD_JAX_DATA ?= $(CURDIR)/workdirs/data
demo: export RGPKD_JAX_CACHE ?= $(CURDIR)/workdirs/cache
demo: export MPLCONFIGDIR ?= $(CURDIR)/workdirs/cache/matplotlib
demo: $(VENV)/.installed-demo
	$(VENV)/bin/python -m rgpkd_jax.main --config configs/demo.py --workdir $(WORKDIR) --mode train_eval

test: $(VENV)/.installed-test
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-demo: $(VENV)/bin/python setup.cfg pyproject.toml
	$(VENV)/bin/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/bin/python setup.cfg pyproject.toml
	$(VENV)/bin/pip install -q -e '.[test]'
	$(VENV)/bin/pip install -q --no-deps $(JAX2ONNX)
	touch $@ $(VENV)/.installed-demo

clean:
	rm -rf $(VENV) workdirs
