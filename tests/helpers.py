"""Shared test helpers: tiny configs of the real config files."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from rgpkd_jax.config_files import load_config
from rgpkd_jax.models import list_methods

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every registered method: cross-method tests parametrize over it (tests/method_coverage_test.py
# fails on a hard-coded list), so a new method is tested without touching the tests.
METHODS = list_methods()


def tiny_config(method: str, *, data_dir: str, category: str | None = None, seed: int = 0,
                epochs: int = 1, batch_size: int = 8, log_every_steps: int = 1,
                checkpoint_every_steps: int = 1000, num_visualise: int = 0):
    """configs/<method>.py in its `tiny` form on the synthetic dataset, with a random teacher."""
    from rgpkd_jax.data import synthetic
    category = category or synthetic.CATEGORIES[0]
    config = load_config(os.path.join(REPO, "configs", f"{method}.py:synthetic/{category},tiny"))
    config.dataset.data_dir = str(data_dir)
    config.teacher.weights = "random"
    config.seed = seed
    config.train.epochs = epochs
    config.train.batch_size = batch_size
    config.train.log_every_steps = log_every_steps
    config.train.checkpoint_every_steps = checkpoint_every_steps
    config.eval.num_visualise = num_visualise
    return config


def import_oracle(name: str):
    """A reference library (torch, torchvision): only the tests that compare with it ask for it.
    Without it they skip, except in CI (CI=true), where the test extra installs it and a missing
    one is an error rather than a silent skip."""
    if os.environ.get("CI"):
        import importlib
        return importlib.import_module(name)
    return pytest.importorskip(name)


def make_unwritable(directory, monkeypatch):
    """chmod the folder read-only; as root, where chmod does not stop writes, fail file creation."""
    os.makedirs(directory, exist_ok=True)
    if os.geteuid() == 0:
        def refuse(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's keyword
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)
        monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    else:
        os.chmod(directory, 0o555)


# Variable name -> (numpy Generator method, its two arguments): values of the kind training leaves.
_TRAINED_LIKE = {"bias": ("normal", 0.0, 0.2), "mean": ("normal", 0.0, 0.3),
                 "scale": ("uniform", 0.5, 1.5), "var": ("uniform", 0.5, 2.0)}


def as_if_trained(model, seed: int = 0) -> None:
    """Gives the model's trained part (the teacher aside) values of the kind training leaves:
    non-zero biases, BN scales and statistics away from 1 and 0. A freshly built model has zero
    biases and unit BN statistics, under which a dropped bias or a wrong BN fold changes nothing
    (the ONNX export dropped every Linear's bias until a test checked a model like this)."""
    from flax import nnx

    rng = np.random.default_rng(seed)
    for path, variable in nnx.iter_graph(model):
        draw = _TRAINED_LIKE.get(path[-1]) if path else None
        if draw is None or "teacher" in path or not isinstance(variable, (nnx.Param, nnx.BatchStat)):
            continue
        method, a, b = draw
        value = variable.get_value()
        variable.set_value(getattr(rng, method)(a, b, value.shape).astype(value.dtype))


def training_loss(model, images, indices, seed: int = 0):
    """(loss, terms) of one training step's objective on `images`, as `rgpkd_jax.train`'s step
    computes it (`Method.training_loss`, with a key of `seed`)."""
    import jax
    return model.training_loss({"image": images, "index": indices}, rng=jax.random.key(seed))


def prepare_on(model, images) -> np.ndarray:
    """Prepares the method from `images` (dataset indices 0..n-1) as from the training split
    (`Method.prepare`: RGPKD fills its prompt bank). Returns the indices to pass with `images`."""
    indices = np.arange(len(images), dtype=np.int32)
    model.prepare(lambda: [{"image": np.asarray(images), "index": indices}])
    return indices


def run_module(module: str, *args, cwd: str = REPO, env: dict | None = None, timeout: int = 900):
    """``python -m <module> *args`` as a user runs it, with this checkout's package importable."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": REPO, **(env or {})})


def one_error_line(run) -> str:
    """The one ``error:`` line a failed command printed, checking that it failed, printed no
    traceback and said nothing after it."""
    assert run.returncode != 0, run.stdout[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.stderr.rstrip().endswith(errors[0]), run.stderr[-3000:]
    return errors[0]
