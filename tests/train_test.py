"""The train loop: data parallelism, resume, determinism, frozen teacher, NaN handling.

These run real (tiny) trainings on the embedded synthetic dataset with a random ResNet18 teacher
at 64 px; they check mechanics, not accuracy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from flax import nnx

from rgpkd_jax import metric_writer, model_setup, models, train, train_loop, train_state
from rgpkd_jax.data import pipeline
from rgpkd_jax.models.prompt import PromptBank
from tests.helpers import METHODS, prepare_on, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _losses(workdir):
    return [r["loss"] for r in metric_writer.read_metrics(workdir)]


def _final_params(workdir, config):
    model, _, step = model_setup.load_trained_model(config, workdir)
    return step, nnx.to_pure_dict(nnx.state(model))


def _assert_trees_close(a, b, rtol):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-7, err_msg=str(path))


_MULTI_DEVICE_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=" + sys.argv[1]
    import jax
    jax.config.update("jax_enable_x64", True)
    assert jax.device_count() == int(sys.argv[1]), jax.devices()
    from rgpkd_jax import metric_writer, train
    from rgpkd_jax.models import list_methods
    from tests.helpers import tiny_config
    out = {}
    for method in list_methods():
        workdir = os.path.join(sys.argv[2], method)
        config = tiny_config(method, data_dir=sys.argv[3], epochs=1, batch_size=8, log_every_steps=1)
        config.model.compute_dtype = "float64"
        # Plain SGD: Adam's first steps are sign-like on near-zero gradients and would turn any
        # rounding difference into a difference of 2 lr.
        config.train.optimizer, config.train.learning_rate = "sgd", 0.01
        config.train.schedule, config.train.max_steps_this_run = "constant", 3
        train.train_and_evaluate(config, workdir, evaluate_after=False)
        out[method] = [r["loss"] for r in metric_writer.read_metrics(workdir)]
        if method == "rd4ad":  # and a unified run: one model on two categories, balanced
            config.dataset.category, config.dataset.sampling = "grid+disc", "balanced"
            train.train_and_evaluate(config, workdir + "-unified", evaluate_after=False)
            out["rd4ad unified"] = [r["loss"] for r in metric_writer.read_metrics(workdir + "-unified")]
    print("LOSSES=" + json.dumps(out))
""")

# 1 and 4 devices sum the batch (BN statistics, loss mean, gradient all-reduce) in different orders,
# so they agree only up to rounding. In float32 that was measured at up to 1.6e-5 relative after
# 3 steps on an AVX2 machine (eps32 = 6e-8: an amplification of ~270 over the trajectory), and it
# differs between CPUs. The runs are therefore made in float64 (eps64 = 1.1e-16): the same
# amplification gives ~3e-14, so RTOL leaves a margin of >3e4 while a real error (a wrong shard,
# BN statistics of one device only, an unaveraged loss) changes the loss at the 1e-3 level.
RTOL_FLOAT64 = 1e-9


def _start_on_devices(n, workdir, data_dir) -> tuple[subprocess.Popen, str]:
    """The script on ``n`` devices, its output into a file (not a pipe: it never waits on a reader)."""
    log = f"{workdir}.log"
    with open(log, "w") as out:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-c", _MULTI_DEVICE_SCRIPT, str(n), str(workdir), str(data_dir)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": REPO})
    return process, log


def _device_losses(run: tuple[subprocess.Popen, str]) -> dict:
    process, log = run
    returncode = process.wait(timeout=900)
    output = open(log).read()
    assert returncode == 0, output[-4000:]
    line = [l for l in output.splitlines() if l.startswith("LOSSES=")][-1]
    return json.loads(line[len("LOSSES="):])


def test_four_devices_match_one_device(tmp_path, synthetic_data_dir):
    pipeline.prepared_builder(tiny_config("rd4ad", data_dir=synthetic_data_dir))  # the two runs only read it
    # side by side: each spends most of its time compiling, on one core
    runs = [_start_on_devices(n, tmp_path / name, synthetic_data_dir) for n, name in ((1, "one"), (4, "four"))]
    one, four = (_device_losses(run) for run in runs)
    for method in one:
        assert len(one[method]) == 3, method
        assert abs(one[method][-1] - one[method][0]) > 1e-4 * abs(one[method][0]), "no training happened"
        np.testing.assert_allclose(four[method], one[method], rtol=RTOL_FLOAT64, err_msg=method)


class _KilledIterator:
    """Delegates to a grain iterator but dies (like a preempted job) after `limit` batches."""

    def __init__(self, inner, limit):
        self.inner, self.left = inner, limit

    def __iter__(self):
        return self

    def __next__(self):
        if self.left == 0:
            raise KeyboardInterrupt("simulated kill")
        self.left -= 1
        return next(self.inner)

    def get_state(self):
        return self.inner.get_state()

    def set_state(self, state):
        self.inner.set_state(state)


@pytest.mark.parametrize("category, sampling", [("grid", "natural"), ("grid+disc", "balanced")])
def test_kill_and_resume_matches_uninterrupted_run(tmp_path, synthetic_data_dir, category, sampling):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir, epochs=2, checkpoint_every_steps=3,
                         log_every_steps=1, category=category)
    config.dataset.sampling = sampling
    train.train_and_evaluate(config, str(tmp_path / "straight"), evaluate_after=False)
    with open(tmp_path / "straight" / "run_info.json") as f:
        assert json.load(f)["conv_impl"] == "cpu"  # `auto`, resolved on this CPU-only machine

    resumed = str(tmp_path / "resumed")
    make = lambda: pipeline.train_iterator(config, seed=config.seed)  # noqa: E731
    with pytest.raises(KeyboardInterrupt):  # killed at step 5, after the checkpoint of step 3
        train.train_and_evaluate(config, resumed, evaluate_after=False,
                                 data_source=lambda: _KilledIterator(make(), 5))
    assert _losses(resumed)[-1] == _losses(str(tmp_path / "straight"))[4]
    train.train_and_evaluate(config, resumed, evaluate_after=False)

    np.testing.assert_allclose(_losses(resumed), _losses(str(tmp_path / "straight")), rtol=1e-6)
    assert [r["step"] for r in metric_writer.read_metrics(resumed)] == list(
        range(1, len(_losses(resumed)) + 1))
    step_a, params_a = _final_params(str(tmp_path / "straight"), config)
    step_b, params_b = _final_params(resumed, config)
    assert step_a == step_b
    _assert_trees_close(params_a, params_b, rtol=1e-6)


def test_seed_determines_the_loss_trajectory(tmp_path, synthetic_data_dir):
    def run(seed, name):
        config = tiny_config("rd4ad", data_dir=synthetic_data_dir, epochs=1, log_every_steps=1, seed=seed)
        train.train_and_evaluate(config, str(tmp_path / name), evaluate_after=False)
        return _losses(str(tmp_path / name))

    first, again, other = run(0, "a"), run(0, "b"), run(1, "c")
    assert first == again
    assert not np.allclose(first, other)


@pytest.mark.parametrize("method", METHODS)
def test_teacher_is_unchanged_by_training(tmp_path, synthetic_data_dir, method):
    config = tiny_config(method, data_dir=synthetic_data_dir, epochs=1)
    model, _ = model_setup.setup_model(config)
    before = nnx.to_pure_dict(nnx.state(model.teacher))
    train.train_and_evaluate(config, str(tmp_path), evaluate_after=False)
    after_model, _, _ = model_setup.load_trained_model(config, str(tmp_path))
    after = nnx.to_pure_dict(nnx.state(after_model.teacher))
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))
    student_before = nnx.to_pure_dict(nnx.state(model, models.TRAINABLE))
    student_after = nnx.to_pure_dict(nnx.state(after_model, models.TRAINABLE))
    assert any(not np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(student_before), jax.tree.leaves(student_after)))


class _PoisonedIterator(_KilledIterator):
    """Feeds NaN images from batch number `limit` on."""

    def __next__(self):
        batch = dict(next(self.inner))
        if self.left == 0:
            batch["image"] = np.full_like(batch["image"], np.nan)
        else:
            self.left -= 1
        return batch


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, synthetic_data_dir):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir, epochs=2, checkpoint_every_steps=2,
                         log_every_steps=1)
    make = lambda: pipeline.train_iterator(config, seed=config.seed)  # noqa: E731
    with pytest.raises(train_loop.NonFiniteLossError, match=r"at step 5.*checkpoint \(step 4\)"):
        train.train_and_evaluate(config, str(tmp_path), evaluate_after=False,
                                 data_source=lambda: _PoisonedIterator(make(), 4))
    _, _, step = model_setup.load_trained_model(config, str(tmp_path))
    assert step == 4
    params = nnx.to_pure_dict(nnx.state(model_setup.load_trained_model(config, str(tmp_path))[0]))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_profile_dir_writes_a_trace_of_a_few_steps(tmp_path, synthetic_data_dir):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir, epochs=1)
    config.profile_dir = str(tmp_path / "trace")
    train.train_and_evaluate(config, str(tmp_path / "run"), evaluate_after=False)
    traces = [f for _, _, files in os.walk(config.profile_dir) for f in files if f.endswith(".xplane.pb")]
    assert traces, "no profiler trace written"


@pytest.mark.parametrize("method", METHODS)
def test_train_step_donates_only_what_training_changes(tmp_path, method):
    """The step's donated state holds no teacher variable and no prompt bank; those come in a
    separate argument that the step reads, leaves valid (not donated) and unchanged."""
    import optax

    config = tiny_config(method, data_dir=tmp_path)
    model = models.build_model(config, nnx.Rngs(0))
    images = np.random.default_rng(0).random((2, 64, 64, 3), np.float32)
    batch = {"image": images, "index": prepare_on(model, images)}
    graphdef, state, frozen = train_state.split(model, config.train, optax.constant_schedule(1e-3))
    paths = [path for path, _ in nnx.to_flat_state(state)]
    assert not [p for p in paths if "teacher" in p], "teacher variables in the donated state"
    assert not [p for p, v in nnx.to_flat_state(state) if isinstance(v, PromptBank)]
    frozen_vars = list(nnx.to_flat_state(frozen))
    assert frozen_vars and all("teacher" in p or isinstance(v, PromptBank) for p, v in frozen_vars)
    before = jax.tree.map(np.array, nnx.to_pure_dict(frozen))
    step = train.make_train_step(graphdef, seed=0)
    for _ in range(2):
        state, metrics = step(state, frozen, batch)
    assert np.isfinite(float(metrics["loss"]))
    after = nnx.to_pure_dict(frozen)  # raises if a frozen buffer had been donated (deleted)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(a, np.asarray(b), err_msg=str(path))
