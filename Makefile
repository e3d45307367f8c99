# `make demo` and `make test` each set up their own virtual environment (.venv) with the package at
# the versions of requirements/lock.txt (a constraints file: exact pins of every package, so the demo
# and CI do not drift with the registry), so both work on a fresh clone. `make test` adds the test
# extra (torch/torchvision as a parity oracle only; they are never imported by the library; onnx
# and onnxruntime for the export tests) and jax2onnx without its declared dependencies: it caps
# orbax-checkpoint below 0.11.37, our lock has 0.12.8, and it never imports orbax (README, "Deploy");
# and, outside the venv, a Chromium for the HTML report's browser tests (`make browser`, below).
# `make test-lowest` checks the other end of setup.cfg's ranges (README, "Versions").
PYTHON ?= python3.11
VENV := .venv
LOCK := requirements/lock.txt
WORKDIR ?= workdirs/demo
PYTEST_ARGS ?=
# Test processes (pytest-xdist; a file's tests stay in one process, in order, with its module fixtures).
# Most of the suite's time is XLA compiling on one core, so two processes halve it on CI's 2 cores;
# each holds a few GB, so more only where the memory is (TEST_WORKERS=0: one process).
TEST_WORKERS ?= 2
JAX2ONNX := jax2onnx==0.17.1
# The lowest supported versions (requirements/lowest.txt) in a venv made anew on each run.
LOWEST_VENV := workdirs/venv-lowest
# A subset that runs every part of the package at those versions in about 3 minutes: the models and
# their train steps, training with checkpoints and a resume, evaluation with every metric and
# its figures, the data pipeline, StableHLO and ONNX export.
LOWEST_TESTS := \
	tests/import_graph_test.py \
	tests/metrics \
	tests/data/pipeline_test.py \
	tests/models/rd4ad_test.py::test_train_step_updates_only_the_student \
	tests/models/rgpkd_test.py::test_train_step_changes_only_the_student[own] \
	tests/checkpointing_test.py::test_a_damaged_newest_checkpoint_is_one_error_and_moving_it_aside_resumes[emptied_metadata] \
	tests/evaluate_predict_test.py::test_evaluation_writes_metrics_and_figures \
	tests/export_deploy_test.py::test_stablehlo_equals_the_jax_model[rd4ad] \
	tests/export_deploy_test.py::test_onnx_under_onnxruntime_equals_the_jax_model[rd4ad]

.PHONY: demo test test-lowest browser clean

# The demo keeps its prepared data and caches inside the clone unless the variables are set.
demo: export RGPKD_JAX_DATA ?= $(CURDIR)/workdirs/data
demo: export RGPKD_JAX_CACHE ?= $(CURDIR)/workdirs/cache
demo: export MPLCONFIGDIR ?= $(CURDIR)/workdirs/cache/matplotlib
demo: $(VENV)/.installed-demo
	$(VENV)/bin/python -m rgpkd_jax.main --config configs/demo.py --workdir $(WORKDIR) --mode train_eval

test: browser $(VENV)/.installed-test
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The HTML report's tests open its pages in headless Chromium (docs/report.md): Debian's chromium
# package, installed here when no Chromium is found (as root, or with sudo where there is one);
# RGPKD_JAX_CHROMIUM names another executable. Where it cannot be installed, the browser tests are
# skipped with the reason, except with CI=true, where that is an error.
CHROMIUM_FOUND = $(or $(RGPKD_JAX_CHROMIUM),$(shell command -v chromium || command -v chromium-browser || command -v google-chrome))
browser:
ifeq ($(CHROMIUM_FOUND),)
	@SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	{ command -v apt-get >/dev/null && { [ -z "$$SUDO" ] || command -v sudo >/dev/null; } \
	  && $$SUDO apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	|| { echo "could not install Debian's chromium package: install a Chromium and set RGPKD_JAX_CHROMIUM to it"; \
	     [ "$$CI" != true ] || exit 1; echo "the HTML report's browser tests will be skipped"; }
endif

# Installs the lowest versions first, then the package, as a user who already has jax and flax does:
# the install must keep every one of them (the two freezes equal), then runs LOWEST_TESTS.
test-lowest:
	rm -rf $(LOWEST_VENV)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/pip install -q -r requirements/lowest.txt
	$(LOWEST_VENV)/bin/pip install -q --no-deps $(JAX2ONNX)
	$(LOWEST_VENV)/bin/pip freeze --exclude-editable > $(LOWEST_VENV)/before-install.txt
	$(LOWEST_VENV)/bin/pip install -q -e .
	$(LOWEST_VENV)/bin/pip freeze --exclude-editable > $(LOWEST_VENV)/after-install.txt
	diff $(LOWEST_VENV)/before-install.txt $(LOWEST_VENV)/after-install.txt \
	  || { echo "error: pip install -e . changed the installed versions above (setup.cfg ranges vs requirements/lowest.txt)"; exit 1; }
	$(LOWEST_VENV)/bin/python -m pytest -p no:cacheprovider $(LOWEST_TESTS) $(PYTEST_ARGS)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-demo: $(VENV)/bin/python setup.cfg pyproject.toml $(LOCK)
	$(VENV)/bin/pip install -q -c $(LOCK) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/bin/python setup.cfg pyproject.toml $(LOCK)
	$(VENV)/bin/pip install -q -c $(LOCK) -e '.[test]'
	$(VENV)/bin/pip install -q --no-deps -c $(LOCK) $(JAX2ONNX)
	touch $@ $(VENV)/.installed-demo

clean:
	rm -rf $(VENV) workdirs
