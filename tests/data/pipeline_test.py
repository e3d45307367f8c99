"""The grain pipeline on the embedded synthetic dataset: contract, determinism, resume, sharding."""

import time

import ml_collections
import numpy as np
import pytest

from rgpkd_jax.data import pipeline, synthetic

SIZE = 32
BATCH = 8


@pytest.fixture(scope="module")
def config(synthetic_data_dir):
    return ml_collections.ConfigDict({
        "seed": 7,
        "dataset": {"name": "synthetic", "category": "disc", "data_dir": synthetic_data_dir,
                    "manual_dir": None, "image_size": SIZE},
        "train": {"batch_size": BATCH},
        "data": {"num_workers": 0},
    })


def _take(iterator, count):
    return [next(iterator) for _ in range(count)]


def _with_decoded_cache(config, mib):
    cached = ml_collections.ConfigDict(config.to_dict())
    cached.data.decoded_cache_mib = mib
    return cached


def test_builds_offline_in_seconds(tmp_path):
    start = time.perf_counter()
    config = ml_collections.ConfigDict({"dataset": {"name": "synthetic", "category": "grid",
                                                    "data_dir": str(tmp_path), "image_size": SIZE}})
    assert pipeline.num_examples(config, "train") == synthetic.SyntheticConfig.num_train
    assert time.perf_counter() - start < 20  # about 2 s here; generous for a loaded CI machine


def test_batch_contract(config):
    batch = next(pipeline.train_iterator(config, shard_index=0, shard_count=1))
    assert set(batch) == set(pipeline.BATCH_KEYS)
    assert batch["image"].shape == (BATCH, SIZE, SIZE, 3) and batch["image"].dtype == np.float32
    assert batch["mask"].shape == (BATCH, SIZE, SIZE) and batch["mask"].dtype == np.float32
    for key in ("label", "index"):
        assert batch[key].shape == (BATCH,) and batch[key].dtype == np.int32
    for key in ("defect_type", "file_name"):
        assert batch[key].shape == (BATCH,) and batch[key].dtype.kind == "U"
    assert set(np.unique(batch["mask"])) <= {0.0, 1.0}
    # Normalised: roughly zero-centred values well outside [0, 1].
    assert batch["image"].min() < -1 and batch["image"].max() > 1


def test_mask_threshold_of_the_config_binarises_the_resized_masks(config):
    """eval.mask_threshold reaches the test batches: > 0 keeps every pixel the 128 -> 32 resize
    touched, a superset of the official > 0.5 (data-only configs without `eval` get 0.5)."""
    official = np.concatenate([b["mask"] for b in pipeline.test_batches(config, batch_size=BATCH)])
    touched_config = config.copy_and_resolve_references()
    touched_config.eval = ml_collections.ConfigDict({"mask_threshold": 0.0})
    touched = np.concatenate([b["mask"] for b in pipeline.test_batches(touched_config, batch_size=BATCH)])
    assert np.all(touched >= official) and touched.sum() > official.sum() > 0
    touched_config.eval.mask_threshold = 1.5
    with pytest.raises(ValueError, match="config.eval.mask_threshold"):
        pipeline.test_batches(touched_config, batch_size=BATCH)


def test_epochs_are_permutations_reshuffled_from_the_seed(config):
    steps = pipeline.steps_per_epoch(config)
    total = pipeline.num_examples(config, "train")
    assert steps == total // BATCH
    first = _take(pipeline.train_iterator(config, shard_index=0, shard_count=1), 2 * steps)
    epoch0 = np.concatenate([b["index"] for b in first[:steps]])
    epoch1 = np.concatenate([b["index"] for b in first[steps:]])
    assert len(set(epoch0)) == len(epoch0) == steps * BATCH  # no repeats within an epoch
    assert len(set(epoch1)) == len(epoch1)
    assert not np.array_equal(epoch0, epoch1)  # reshuffled
    assert not np.array_equal(np.sort(epoch0), np.arange(len(epoch0)))  # not in file order
    again = _take(pipeline.train_iterator(config, shard_index=0, shard_count=1), steps)
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in again]), epoch0)
    other = _take(pipeline.train_iterator(config, seed=8, shard_index=0, shard_count=1), steps)
    assert not np.array_equal(np.concatenate([b["index"] for b in other]), epoch0)


def test_index_points_at_the_record(config):
    batch = next(pipeline.train_iterator(config, shard_index=0, shard_count=1))
    everything = {}
    for b in pipeline.test_batches(config, batch_size=16, split="train"):
        for j, index in enumerate(b["index"]):
            everything[int(index)] = b["image"][j]
    for j, index in enumerate(batch["index"]):
        np.testing.assert_array_equal(batch["image"][j], everything[int(index)])


@pytest.mark.parametrize("saved_with_decoded_cache", [False, True])
def test_resume_from_state_gives_the_same_batches(config, saved_with_decoded_cache):
    """A state saved with or without the decoded cache resumes in an iterator without it."""
    saving = _with_decoded_cache(config, 64.0) if saved_with_decoded_cache else config
    iterator = pipeline.train_iterator(saving, shard_index=0, shard_count=1)
    _take(iterator, 5)  # crosses the epoch boundary (7 steps per epoch) on the way below
    state = iterator.get_state()
    expected = _take(iterator, 5)
    restored = pipeline.train_iterator(config, shard_index=0, shard_count=1)
    restored.set_state(state)
    for want, got in zip(expected, _take(restored, 5)):
        np.testing.assert_array_equal(want["index"], got["index"])
        np.testing.assert_array_equal(want["image"], got["image"])


def test_shards_together_form_the_global_batch(config):
    whole = _take(pipeline.train_iterator(config, shard_index=0, shard_count=1), 9)
    halves = [_take(pipeline.train_iterator(config, shard_index=i, shard_count=2), 9) for i in range(2)]
    for step in range(9):
        assert halves[0][step]["image"].shape[0] == BATCH // 2
        union = np.concatenate([halves[0][step]["index"], halves[1][step]["index"]])
        assert len(set(union)) == BATCH
        assert set(union) == set(whole[step]["index"])


def test_batch_size_must_divide_over_processes(config):
    with pytest.raises(ValueError, match="not divisible by the 3 jax processes"):
        pipeline.train_iterator(config, shard_index=0, shard_count=3)


def test_test_batches_are_ordered_complete_and_consistent(config):
    batches = list(pipeline.test_batches(config, batch_size=16))
    total = pipeline.num_examples(config, "test")
    assert [len(b["index"]) for b in batches] == [16] * (total // 16) + [total % 16]
    index = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(index, np.arange(total))
    names = list(np.concatenate([b["file_name"] for b in batches]))
    assert names == sorted(names)
    label = np.concatenate([b["label"] for b in batches])
    defect = np.concatenate([b["defect_type"] for b in batches])
    mask = np.concatenate([b["mask"] for b in batches])
    np.testing.assert_array_equal(label, defect != "good")
    assert not mask[label == 0].any()
    assert all(m.any() for m in mask[label == 1])  # every defect is still visible at 32 px


def test_worker_processes_give_the_same_batches(config):
    with_workers = config.copy_and_resolve_references()
    with_workers.data.num_workers = 2
    expected = _take(pipeline.train_iterator(config, shard_index=0, shard_count=1), 3)
    iterator = pipeline.train_iterator(with_workers, shard_index=0, shard_count=1)
    try:
        for want, got in zip(expected, _take(iterator, 3)):
            np.testing.assert_array_equal(want["index"], got["index"])
            np.testing.assert_array_equal(want["image"], got["image"])
    finally:
        iterator.close()


@pytest.mark.parametrize("budget_mib,fits", [(64.0, True), (0.01, False)], ids=["fits", "over_budget"])
def test_decoded_cache_decodes_each_image_once_and_gives_the_same_batches(config, monkeypatch, budget_mib, fits):
    steps = 2 * pipeline.steps_per_epoch(config)  # two epochs
    total = pipeline.num_examples(config, "train")
    decoded = []
    load = pipeline.LoadExample.__call__
    monkeypatch.setattr(pipeline.LoadExample, "__call__", lambda self, index: decoded.append(index) or load(self, index))
    got = _take(pipeline.train_iterator(_with_decoded_cache(config, budget_mib), shard_index=0, shard_count=1), steps)
    # Once per image in all; or, over the budget, once per image of every batch read (and prefetched).
    assert len(decoded) == total if fits else len(decoded) >= steps * BATCH
    monkeypatch.undo()
    expected = _take(pipeline.train_iterator(config, shard_index=0, shard_count=1), steps)
    for want, have in zip(expected, got):
        assert set(want) == set(have)
        for key in pipeline.BATCH_KEYS:
            np.testing.assert_array_equal(want[key], have[key])
            assert want[key].dtype == have[key].dtype
