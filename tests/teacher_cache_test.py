"""config.train.teacher_cache: cached teacher features train exactly as the teacher's own forward.

Tiny trainings on the embedded synthetic dataset with a random ResNet18 teacher at 64 px.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rgpkd_jax import metric_writer, model_setup, sharding, teacher_cache, train
from rgpkd_jax.data import pipeline
from rgpkd_jax.config_files import load_config
from rgpkd_jax.models import TRAINABLE, build_model
from tests.helpers import METHODS, REPO, tiny_config

STEPS = 3
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(tmp_path, method, mode, synthetic_data_dir, **train_options):
    config = tiny_config(method, data_dir=synthetic_data_dir, epochs=1)
    config.train.max_steps_this_run = STEPS
    config.train.teacher_cache = mode
    config.train.update(train_options)
    workdir = str(tmp_path / f"{method}_{mode}")
    train.train_and_evaluate(config, workdir, evaluate_after=False)
    model, _, step = model_setup.load_trained_model(config, workdir)
    with open(f"{workdir}/run_info.json") as f:
        resolved = json.load(f)["teacher_cache"]
    losses = [r["loss"] for r in metric_writer.read_metrics(workdir)]
    return resolved, losses, step, nnx.to_pure_dict(nnx.state(model, TRAINABLE))


# The cached features are the teacher's own outputs for the same images, computed by the same
# ops at the same batch size (the last batch is padded), so the steps see the same values and do
# the same arithmetic: on one machine the runs agree bit for bit, and any difference is a bug
# (a wrong row of the cache, a stale or missing feature, retrieval on other features).
# Where the rows come from (device or host) is the same for every method, so the host cache is
# run with RGPKD only (and on two devices below); each method's own use of the features (SK-RD4AD's
# skips, RGPKD's retrieval) is covered by the device cache.
@pytest.mark.parametrize("method", METHODS)
def test_cached_teacher_trains_bit_identically(tmp_path, synthetic_data_dir, method):
    modes = ("device", "host") if method == "rgpkd" else ("device",)
    _, off_losses, off_step, off_params = _train(tmp_path, method, "off", synthetic_data_dir)
    assert len(off_losses) == STEPS and off_step == STEPS
    for mode in modes:
        resolved, losses, step, params = _train(tmp_path, method, mode, synthetic_data_dir)
        assert resolved == mode
        assert step == off_step
        assert losses == off_losses, mode
        for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(off_params)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f"{mode} {path}")


@pytest.mark.parametrize("category", ["grid", "grid+disc"])  # one category; the unified setting's union
def test_cache_rows_are_the_teacher_features_of_each_index(synthetic_data_dir, category):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir, category=category)
    model, _ = model_setup.setup_model(config)
    num_train = pipeline.num_examples(config, "train")
    levels = teacher_cache.compute(model, config, num_train)
    batch = next(pipeline.train_iterator(config, seed=1))  # shuffled: indices out of order
    expected = jax.device_get(model.teacher(batch["image"]))
    for level, want in zip(levels, expected):
        np.testing.assert_array_equal(level[batch["index"]], want)


def test_explicit_cache_is_refused_with_a_data_source_override(tmp_path, synthetic_data_dir):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    config.train.teacher_cache = "device"
    with pytest.raises(ValueError, match=r"config\.train\.teacher_cache='device' would not be exact"):
        train.train_and_evaluate(config, str(tmp_path), evaluate_after=False,
                                 data_source=lambda: pipeline.train_iterator(config, seed=0))


@pytest.mark.parametrize("device_mib, host_mib, expected", [
    (4.0, 4.0, "device"), (1.0, 4.0, "host"), (1.0, 1.0, "off")])
def test_auto_picks_by_the_budgets(synthetic_data_dir, device_mib, host_mib, expected):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    model, _ = model_setup.setup_model(config)
    # ResNet18 at 64 px: 64x16x16 + 128x8x8 + 256x4x4 float32 = 112 KiB per image.
    assert teacher_cache.bytes_per_image(model, 64) == (64 * 256 + 128 * 64 + 256 * 16) * 4
    config.train.teacher_cache = "auto"
    config.train.teacher_cache_budget_mib = device_mib
    config.train.teacher_cache_host_budget_mib = host_mib
    # 20 images: 2.19 MiB, between the budgets 1 and 4.
    assert teacher_cache.resolve_mode(config, model, 20) == expected
    assert teacher_cache.resolve_mode(config, model, 20, data_source_overridden=True) == "off"


def test_a_mvtec_sized_union_at_256_px_is_cached_where_it_fits_and_not_where_it_does_not():
    """The unified setting on MVTec AD: 3,629 training images. A WRN50 teacher at 256 px gives
    256x64x64 + 512x32x32 + 1024x16x16 float32 per image (7 MiB): 25,403 MiB for the union, over the
    default budgets (trains uncached, exactly), on the device with a budget an H200 allows
    (docs/unified.md "Memory")."""
    config = load_config(os.path.join(REPO, "configs", "rd4ad.py:mvtec_ad/all"))
    model = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0)))  # shapes only: no weights, no data
    per_image = (256 * 64 * 64 + 512 * 32 * 32 + 1024 * 16 * 16) * 4
    assert teacher_cache.bytes_per_image(model, 256) == per_image
    config.train.teacher_cache = "auto"
    assert teacher_cache.resolve_mode(config, model, 3629) == "off"
    config.train.teacher_cache_budget_mib = 3629 * per_image / 2**20 + 1
    assert teacher_cache.resolve_mode(config, model, 3629) == "device"


def test_resumed_cached_run_matches_an_uninterrupted_uncached_run(tmp_path, synthetic_data_dir):
    """The cache is not in the checkpoint (the train state has no place for it) and a resumed run
    rebuilds it: 3 + 3 cached steps over two runs equal 6 uncached steps in one."""
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir, epochs=1)
    config.train.max_steps_this_run = 6
    straight = str(tmp_path / "straight")
    train.train_and_evaluate(config, straight, evaluate_after=False)
    config.train.max_steps_this_run = 3
    config.train.teacher_cache = "device"
    resumed = str(tmp_path / "resumed")
    for _ in range(2):
        train.train_and_evaluate(config, resumed, evaluate_after=False)
    losses = {w: [r["loss"] for r in metric_writer.read_metrics(w)] for w in (straight, resumed)}
    assert len(losses[straight]) == 6 and losses[resumed] == losses[straight]
    (a, _, step_a), (b, _, step_b) = (model_setup.load_trained_model(config, w) for w in (straight, resumed))
    assert step_a == step_b == 6
    for x, y in zip(jax.tree.leaves(nnx.state(a, TRAINABLE)), jax.tree.leaves(nnx.state(b, TRAINABLE))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


_TWO_DEVICE_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    assert jax.device_count() == 2, jax.devices()
    from rgpkd_jax import metric_writer, train
    from tests.helpers import tiny_config
    out = {}
    for mode in ("off", "device", "host"):
        workdir = os.path.join(sys.argv[1], mode)
        config = tiny_config("rgpkd", data_dir=sys.argv[2], epochs=1)
        config.train.max_steps_this_run, config.train.teacher_cache = 3, mode
        train.train_and_evaluate(config, workdir, evaluate_after=False)
        out[mode] = [r["loss"] for r in metric_writer.read_metrics(workdir)]
    print("LOSSES=" + json.dumps(out))
""")


def test_cache_on_two_devices_gathers_each_shards_rows(tmp_path, synthetic_data_dir):
    """With the batch sharded over 2 devices, each device must get its own images' cached features
    (RGPKD: also for retrieval, with the batch's own indices excluded): the same losses as the
    teacher computed in the step. The cache was computed at the global batch on one device and
    the step's teacher at half of it on each; XLA:CPU computes each image alone in both, so the
    values are equal bit for bit."""
    result = subprocess.run([sys.executable, "-c", _TWO_DEVICE_SCRIPT, str(tmp_path), str(synthetic_data_dir)],
                            cwd=REPO, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr[-4000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("LOSSES=")][-1]
    losses = json.loads(line[len("LOSSES="):])
    assert len(losses["off"]) == STEPS
    assert losses["device"] == losses["off"] and losses["host"] == losses["off"]


def test_bfloat16_host_features_reach_the_devices():
    """A bfloat16 teacher's cached features (numpy kind 'V') are copied with the batch; strings
    (file names) still stay on the host."""
    batch = {"image": np.zeros((2, 4, 4, 3), np.float32), "file_name": np.array(["a", "b"]),
             f"{teacher_cache.HOST_KEY_PREFIX}0": np.ones((2, 2, 2, 8), jnp.bfloat16)}
    placed = sharding.shard_batch(batch, sharding.make_mesh())
    assert sorted(placed) == ["image", f"{teacher_cache.HOST_KEY_PREFIX}0"]
    assert placed[f"{teacher_cache.HOST_KEY_PREFIX}0"].dtype == jnp.bfloat16
