# `make demo` and `make test` each set up their own virtual environment (.venv) with the pinned
# package, so both work on a fresh clone. `make test` adds the test extra (torch/torchvision as a
# parity oracle only; they are never imported by the library).
PYTHON ?= python3.11
VENV := .venv
WORKDIR ?= workdirs/demo
PYTEST_ARGS ?=

.PHONY: demo test clean

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
	touch $@ $(VENV)/.installed-demo

clean:
	rm -rf $(VENV) workdirs
