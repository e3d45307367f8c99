"""The unified setting's data: the union of several categories' splits and how it is sampled."""

import collections

import ml_collections
import numpy as np
import pytest

from rgpkd_jax.data import pipeline, synthetic, unified
from rgpkd_jax.data.errors import DatasetError
from tests.data import fixtures

SIZE = 32


def _config(data_dir, category, *, batch_size=8, sampling="natural", name="synthetic", manual_dir=None):
    return ml_collections.ConfigDict({
        "seed": 3,
        "dataset": {"name": name, "category": category, "data_dir": str(data_dir),
                    "manual_dir": manual_dir, "image_size": SIZE, "sampling": sampling},
        "train": {"batch_size": batch_size},
        "data": {"num_workers": 0},
    })


def _epoch(iterator, num_batches) -> list[str]:
    return [name for _ in range(num_batches) for name in next(iterator)["file_name"]]


def test_natural_sampling_holds_every_category_image_exactly_once_per_epoch(synthetic_data_dir):
    config = _config(synthetic_data_dir, unified.ALL)
    per_category = {c: pipeline.num_examples(unified.for_category(config, c), "train")
                    for c in synthetic.CATEGORIES}
    total = sum(per_category.values())
    assert pipeline.num_examples(config, "train") == total
    batches = -(-total // 8)
    iterator = pipeline.train_iterator(config, shard_index=0, shard_count=1, drop_remainder=False)
    first, second = _epoch(iterator, batches), _epoch(iterator, batches)
    expected = sorted(name for c in synthetic.CATEGORIES for name in _file_names(unified.for_category(config, c)))
    assert sorted(first) == expected and sorted(second) == expected
    assert first != second  # a fresh permutation of the union each epoch
    # the categories are mixed within batches, not trained one after another
    categories_of_first_batch = set(next(pipeline.train_iterator(config, shard_index=0, shard_count=1))["category"])
    assert len(categories_of_first_batch) > 1


def _file_names(config) -> list[str]:
    return [name for batch in pipeline.test_batches(config, batch_size=64, split="train")
            for name in batch["file_name"]]


def test_union_batches_name_each_image_s_category_and_index_into_the_union(synthetic_data_dir):
    config = _config(synthetic_data_dir, "grid+disc")
    source = pipeline.data_source(config, "train")
    batch = next(pipeline.train_iterator(config, shard_index=0, shard_count=1))
    assert list(batch["category"]) == list(source.category_of(batch["index"]))
    for name, category in zip(batch["file_name"], batch["category"]):
        assert name.startswith(f"{category}/train/")  # the synthetic file names start with their category


@pytest.mark.parametrize("sizes", [(3, 10, 25), (7, 7), (1, 40)])
def test_balanced_order_gives_each_category_its_share_and_cycles_its_images(sizes):
    order = unified.BalancedOrder(list(sizes), seed=5)
    total, count = sum(sizes), len(sizes)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    epochs = 6
    drawn = [order[i] for i in range(epochs * total)]
    assert len(order) == total
    for epoch in range(epochs):
        per_category = collections.Counter(
            int(np.searchsorted(offsets, i, side="right") - 1) for i in drawn[epoch * total:(epoch + 1) * total])
        shares = sorted(per_category[c] for c in range(count))
        assert shares[-1] - shares[0] <= 1 and sum(shares) == total, (epoch, per_category)
    for c, size in enumerate(sizes):  # each image of a category drawn equally often, up to the last round's cut
        seen = collections.Counter(i for i in drawn if offsets[c] <= i < offsets[c + 1])
        assert set(seen) == set(range(offsets[c], offsets[c + 1]))
        assert max(seen.values()) - min(seen.values()) <= 1, (c, seen)


def test_balanced_sampling_through_the_pipeline_on_an_mvtec_folder(tmp_path):
    """Two folder categories of 3 and 9 training images: a balanced epoch of 12 draws 6 from each."""
    manual = tmp_path / "manual"
    fixtures.write_mvtec(manual, "small", num_train=3)
    fixtures.write_mvtec(manual, "large", num_train=9)
    config = _config(tmp_path / "data", "small+large", batch_size=4, sampling="balanced", name="folder",
                     manual_dir=str(manual))
    iterator = pipeline.train_iterator(config, shard_index=0, shard_count=1)
    for _ in range(3):
        epoch = [c for _ in range(3) for c in next(iterator)["category"]]
        assert collections.Counter(epoch) == {"small": 6, "large": 6}


@pytest.mark.parametrize("sampling", unified.SAMPLINGS)
def test_a_restored_union_iterator_continues_with_the_same_batches(synthetic_data_dir, sampling):
    config = _config(synthetic_data_dir, unified.ALL, sampling=sampling)
    iterator = pipeline.train_iterator(config, shard_index=0, shard_count=1)
    for _ in range(25):  # past the first epoch (22 batches)
        next(iterator)
    state = iterator.get_state()
    expected = [next(iterator)["index"] for _ in range(3)]
    restored = pipeline.train_iterator(config, shard_index=0, shard_count=1)
    restored.set_state(state)
    np.testing.assert_array_equal([next(restored)["index"] for _ in range(3)], expected)


@pytest.mark.parametrize("sampling", unified.SAMPLINGS)
def test_two_process_shards_of_the_union_together_are_the_global_batch(synthetic_data_dir, sampling):
    config = _config(synthetic_data_dir, unified.ALL, sampling=sampling)
    whole = pipeline.train_iterator(config, shard_index=0, shard_count=1)
    shards = [pipeline.train_iterator(config, shard_index=i, shard_count=2) for i in range(2)]
    for _ in range(3):
        parts = [next(s)["index"] for s in shards]
        assert sorted(np.concatenate(parts)) == sorted(next(whole)["index"])


@pytest.mark.parametrize("category, message", [("grid+grid", "once each"), ("grid+", "once each"),
                                               ("grid+plaid", "no category 'plaid'")])
def test_a_bad_category_list_is_one_clear_error(synthetic_data_dir, category, message):
    with pytest.raises(DatasetError, match=message):
        pipeline.num_examples(_config(synthetic_data_dir, category), "train")


def test_one_category_is_not_unified_and_all_expands_to_the_dataset_s_categories(synthetic_data_dir):
    assert not unified.is_unified(_config(synthetic_data_dir, "grid"))
    assert unified.is_unified(_config(synthetic_data_dir, "grid+disc"))
    config = _config(synthetic_data_dir, unified.ALL)
    assert unified.is_unified(config) and unified.category_names(config) == list(synthetic.CATEGORIES)
