import os
import shutil
import sys

import pytest

# Float32 matmuls and convolutions at full float32 precision in this process and the subprocesses
# it starts, set before anything imports jax: the suite compares float32 results with references
# at tolerances derived for float32 arithmetic, and on NVIDIA GPUs XLA's default computes them in
# TF32 (docs/architecture.md, "Numerics"). CPUs compute float32 either way. The library never sets
# it: users get the backend's default. `JAX_DEFAULT_MATMUL_PRECISION=default pytest ...` runs the
# suite at that default instead.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")

from benchmarks.report import browser  # noqa: E402
from tests.helpers import import_oracle  # noqa: E402 - after the precision is set

# One persistent XLA compilation cache for the whole run (subprocesses inherit it): the suite
# builds the same small models and steps many times, and recompiling them dominated its time.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory):
    """A TFDS data dir holding the embedded synthetic dataset, prepared once per session."""
    return str(tmp_path_factory.mktemp("tfds_data"))


@pytest.fixture(scope="module")
def module_tmp_path(request, tmp_path_factory):
    """A folder shared by one test module's tests, deleted after the module unless one of its tests
    failed (the per-test tmp_path is handled by `tmp_path_retention_policy` in setup.cfg)."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    failed_before = request.session.testsfailed
    yield path
    if request.session.testsfailed == failed_before:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def torch():
    return import_oracle("torch")


@pytest.fixture(scope="session")
def torchvision():
    return import_oracle("torchvision")


@pytest.fixture(scope="session")
def chromium():
    """The Chromium the HTML report's tests open pages in. Without one they skip, except on CI
    (CI=true), where a missing browser must fail the run rather than skip what it checks."""
    try:
        executable = browser.find_chromium()
    except browser.BrowserError as error:
        reason = str(error)
    else:
        if executable is not None:
            return executable
        reason = f"no Chromium on PATH ({', '.join(browser.CHROMIUM_NAMES)})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; install it with: {browser.INSTALL_HINT}")
    pytest.skip(reason)
