"""Input pipeline: `tfds.data_source` (random access into array_record) + grain.

Batch contract (the one place it is defined in code; docs/architecture.md mirrors it). A batch is
a dict of numpy arrays, B = batch size, S = `config.dataset.image_size`:

| key          | shape, dtype          | meaning                                                   |
|--------------|-----------------------|-----------------------------------------------------------|
| image        | (B, S, S, 3) float32  | ImageNet-normalised image (`preprocess.preprocess_image`) |
| mask         | (B, S, S) float32     | 0/1 ground truth, all zero for good images (and for       |
|              |                       | datasets with image labels only: `has_masks`)             |
| label        | (B,) int32            | 0 good, 1 defective                                       |
| index        | (B,) int32            | position of the example in its split                      |
| defect_type  | (B,) numpy unicode    | `good` or the defect folder name                          |
| file_name    | (B,) numpy unicode    | path relative to the dataset root                         |
| category     | (B,) numpy unicode    | the example's category (`dataset.category`, or one of a   |
|              |                       | unified run's categories: `rgpkd_jax.data.unified`)       |

Training and test batches carry the same keys.

Training (`train_iterator`): an endless grain iterator. Each epoch is a fresh permutation of the
split derived from the seed and the epoch number (grain's index shuffle), so the order is
reproducible and a restored iterator (`get_state`/`set_state`) resumes at the exact batch. With
`shard_count` jax processes, each epoch's permutation is cut to a multiple of `shard_count` and
process `i` takes positions `i, i + shard_count, ...`; the per-process batches of one step together
are exactly the global batch a single process would see. Every batch has the same shape: the last
partial batch of each epoch is dropped (`drop_remainder=True`). This deviates from the official
loader, which keeps it (docs/reference.md §7 "Batches"); a varying batch size would recompile the
jitted step, and padding would corrupt the BatchNorm statistics.

Decoded cache: without augmentation every epoch decodes and resizes the same images, which costs
more host time than a GPU step (a 1024-px PNG takes tens of milliseconds of a core to decode and
resize; an H200 trains RD4AD-WRN50 on ~600 images/s: benchmarks/NOTES.md). So the training iterator
decodes the split once, in record order, and serves every epoch from those arrays when they fit
`data.decoded_cache_mib` (float32 image and mask, ~1 MiB an image at 256 px) and no worker processes
decode (`data.num_workers=0`). The batches are the same arrays either way, and so is the iterator's
state: a checkpoint resumes with or without the cache.

Unified runs (`dataset.category` = `all` or `a+b`): the split is the union of the categories'
splits (`unified.UnionSource`, `index` counts in the union), sampled per `dataset.sampling`.

Test (`test_batches`): finite, in record order (sorted by file name), the last batch may be short.

Preparation: the first use prepares the dataset if it is not prepared yet (always possible for
`synthetic`; others need `dataset.manual_dir`, else the error names the prepare command).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import time
from typing import Iterator, Optional

import grain
import numpy as np
import tensorflow_datasets as tfds
from absl import flags, logging
from PIL import Image

import rgpkd_jax.data as data_lib
from rgpkd_jax.data import base, preprocess, unified
from rgpkd_jax.data.errors import DatasetError

BATCH_KEYS = ("image", "mask", "label", "index", "defect_type", "file_name", "category")
_TEXT_KEYS = ("defect_type", "file_name", "category")


def _dataset_config(config):
    dataset = config.dataset
    return (dataset.name, dataset.category, dataset.get("data_dir") or None,
            dataset.get("manual_dir") or None)


@contextlib.contextmanager
def _preparing(data_dir_root: str, name: str, category: str) -> Iterator[None]:
    """An exclusive lock (flock, released when the process ends however it ends) on the data dir's
    ``.<name>-<category>.prepare.lock``: processes and leaderboard tasks that find the same
    category unprepared prepare it one at a time (docs/multihost.md)."""
    created = not os.path.isdir(data_dir_root)
    os.makedirs(data_dir_root, exist_ok=True)
    path = os.path.join(data_dir_root, f".{name}-{category}.prepare.lock")
    try:
        with open(path, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logging.info("waiting for another process preparing %s/%s in %s", name, category, data_dir_root)
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield  # closing the file releases the lock
    except BaseException:
        # A failed first preparation leaves nothing behind: no lock file, no data dir it made.
        with contextlib.suppress(OSError):
            os.remove(path)
            if created:
                os.rmdir(data_dir_root)
        raise


def prepared_builder(config) -> tfds.core.DatasetBuilder:
    """The config's builder, prepared now if it was not (by one process at a time); a prepared one
    whose manual dir changed since is refused (`data_lib.check_source_unchanged`)."""
    name, category, data_dir, manual_dir = _dataset_config(config)
    builder = data_lib.get_builder(name, category, data_dir=data_dir, manual_dir=manual_dir)
    if data_lib.is_prepared(builder):
        data_lib.check_source_unchanged(builder, manual_dir)
        return builder
    with _preparing(os.fspath(builder.data_dir_root), name, category):
        # Built again: another process may have prepared it while this one waited.
        builder = data_lib.get_builder(name, category, data_dir=data_dir, manual_dir=manual_dir)
        if data_lib.is_prepared(builder):
            data_lib.check_source_unchanged(builder, manual_dir)
            return builder
        logging.info("preparing %s/%s in %s (once: later runs read the prepared records)",
                     name, category, builder.data_dir_root)
        if logging.get_verbosity() < logging.DEBUG:
            tfds.disable_progress_bar()  # a run's log stays readable; the prepare command keeps its bars
        try:
            data_lib.prepare(builder, manual_dir)
        except DatasetError as error:
            raise DatasetError(
                f"{error} To prepare it by hand: python -m rgpkd_jax.data.prepare --dataset {name} "
                f"--category {category} --manual_dir <folder> --data_dir {builder.data_dir_root}") from error
    return builder


def data_source(config, split: str):
    """Random-access source of undecoded records (`image`/`mask` stay encoded bytes); for a
    unified config the union of its categories' (`unified.UnionSource`).

    `builder.as_data_source` is what `tfds.data_source(name, ...)` calls after constructing the
    builder; we call it directly because `folder` builders carry a config made at run time.
    """
    if unified.is_unified(config):
        names = unified.category_names(config)
        return unified.UnionSource([data_source(unified.for_category(config, c), split) for c in names], names)
    builder = prepared_builder(config)
    if split not in builder.info.splits:
        raise DatasetError(f"{builder.name}/{builder.category} has no split {split!r}; it has "
                           f"{sorted(builder.info.splits)}.")
    return builder.as_data_source(
        split=split, decoders={"image": tfds.decode.SkipDecoding(), "mask": tfds.decode.SkipDecoding()})


def has_masks(config) -> bool:
    """Whether the dataset has ground-truth masks; False for image-label datasets, whose masks are
    all zero and no ground truth (`AnomalyBuilder.HAS_MASKS`), and for a folder category prepared
    without a ground_truth folder (recorded in its metadata; records prepared before it was
    recorded had masks: preparing required them). A unified config has masks when each category has."""
    if not data_lib.builder_class(config.dataset.name).HAS_MASKS:
        return False
    if unified.is_unified(config):
        return all(has_masks(unified.for_category(config, c)) for c in unified.category_names(config))
    return bool((prepared_builder(config).info.metadata or {}).get(base.HAS_MASKS_KEY, True))


def num_examples(config, split: str) -> int:
    return len(data_source(config, split))


def image_sizes(config, split: str, indices) -> dict[int, tuple[int, int]]:
    """{index: (height, width)} of the original images of records ``indices`` (from their headers):
    the batches hold them resized to the model's square, figures show them in their own aspect."""
    source = data_source(config, split)
    sizes = {}
    for index in indices:
        with Image.open(io.BytesIO(source[int(index)]["image"])) as image:
            sizes[int(index)] = (image.height, image.width)
    return sizes


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class LoadExample:
    """Record index -> preprocessed example dict (a class so grain can pickle it to workers).

    Masks are binarised at `config.eval.mask_threshold` after the resize (`preprocess_mask`)."""

    def __init__(self, source, config):
        self.source = source
        self.image_size = config.dataset.image_size
        self.mask_threshold = mask_threshold(config)
        self.category = config.dataset.category  # a union's records name their own

    def __call__(self, index: int) -> dict:
        record = self.source[int(index)]
        return {
            "image": preprocess.preprocess_image(record["image"], self.image_size),
            "mask": preprocess.preprocess_mask(record["mask"], self.image_size, self.mask_threshold),
            "label": np.int32(record["label"]),
            "index": np.int32(index),
            "defect_type": _text(record["defect_type"]),
            "file_name": _text(record["file_name"]),
            "category": record.get("category", self.category),
        }


class CachedExample:
    """Record index -> the example `LoadExample` gave for it, from the decoded split's arrays."""

    def __init__(self, arrays: dict):
        self.arrays = arrays

    def __call__(self, index: int) -> dict:
        return {key: values[int(index)] for key, values in self.arrays.items()}


def _decoded_split(config, source) -> Optional[dict]:
    """The whole split through `LoadExample`, stacked by key, when the decoded cache is on and holds
    it (module docstring); else None (every batch decodes)."""
    budget_mib = float((config.get("data") or {}).get("decoded_cache_mib", 0) or 0)
    if budget_mib <= 0 or num_workers(config) > 0:
        return None
    height, width = preprocess.size_hw(config.dataset.image_size)
    mib = len(source) * height * width * 4 * 4 / 2**20  # float32: 3 image channels and the mask
    if mib > budget_mib:
        logging.debug("the decoded training split (%.0f MiB) exceeds data.decoded_cache_mib=%.0f: "
                      "decoding every batch", mib, budget_mib)
        return None
    start = time.perf_counter()
    batches = list(_in_record_order(source, config, batch_size=64))
    arrays = {key: np.concatenate([batch[key] for batch in batches]) for key in BATCH_KEYS}
    logging.debug("decoded the training split once: %d images, %.0f MiB in %.1f s", len(source), mib,
                  time.perf_counter() - start)
    return arrays


def _stack(examples: list[dict]) -> dict:
    return {key: np.stack([e[key] for e in examples]) if key not in _TEXT_KEYS
            else np.array([e[key] for e in examples], dtype=np.str_) for key in BATCH_KEYS}


def _ensure_absl_flags_parsed(*unused_worker_index_and_count) -> None:
    """Grain reads its absl flags in the parent and in each worker process; outside `app.run`
    (tests, notebooks, worker processes) they are unparsed and reading one would raise."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def mask_threshold(config) -> float:
    """`config.eval.mask_threshold` (the official 0.5 for data-only configs without `eval`), checked."""
    threshold = (config.get("eval") or {}).get("mask_threshold", preprocess.OFFICIAL_MASK_THRESHOLD)
    preprocess.check_mask_threshold(threshold)
    return threshold


def num_workers(config) -> int:
    """`config.data.num_workers`: grain worker processes per jax process (0: threads only)."""
    data = config.get("data") or {}
    return int(data.get("num_workers", 0) or 0)


def _to_iterator(dataset: grain.MapDataset, config) -> grain.DatasetIterator:
    iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
    workers = num_workers(config)
    if workers > 0:
        _ensure_absl_flags_parsed()
        iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers),
                                        worker_init_fn=_ensure_absl_flags_parsed)
    return iter(iterable)


def train_iterator(config, *, seed: Optional[int] = None, shard_index: Optional[int] = None,
                   shard_count: Optional[int] = None, drop_remainder: bool = True) -> grain.DatasetIterator:
    """Endless, checkpointable iterator of training batches of `config.train.batch_size // shard_count`."""
    if shard_index is None or shard_count is None:
        import jax  # pylint: disable=g-import-not-at-top  (only needed for the defaults)
        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    seed = int(config.seed if seed is None else seed) % 2**32
    global_batch = int(config.train.batch_size)
    if global_batch % shard_count:
        raise DatasetError(f"train.batch_size={global_batch} is not divisible by the {shard_count} "
                           "jax processes; choose a multiple.")
    batch_size = global_batch // shard_count
    source = data_source(config, "train")
    total = len(source)
    per_shard = total // shard_count
    too_few = per_shard < batch_size if drop_remainder else per_shard == 0
    if too_few:
        raise DatasetError(f"The training split has {total} images, fewer than train.batch_size="
                           f"{global_batch} (over {shard_count} processes): lower train.batch_size.")
    if unified.sampling(config) == "balanced" and isinstance(source, unified.UnionSource):
        dataset = unified.BalancedOrder(source.sizes, seed)
    else:
        dataset = grain.MapDataset.range(total).shuffle(seed)
    dataset = dataset[: per_shard * shard_count][shard_index::shard_count]
    decoded = _decoded_split(config, source)
    dataset = dataset.map(CachedExample(decoded) if decoded is not None
                          else LoadExample(source, config))
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, batch_fn=_stack).repeat(None)
    return _to_iterator(dataset, config)


def steps_per_epoch(config, *, shard_count: int = 1, drop_remainder: bool = True) -> int:
    """Training batches per epoch, as produced by `train_iterator`."""
    per_shard = num_examples(config, "train") // shard_count
    batch_size = int(config.train.batch_size) // shard_count
    return per_shard // batch_size if drop_remainder else -(-per_shard // batch_size)


def test_batches(config, *, batch_size: int, split: str = "test") -> Iterator[dict]:
    """All examples of `split` once, in record order, in batches (the last may be smaller)."""
    return _in_record_order(data_source(config, split), config, batch_size=batch_size)


def _in_record_order(source, config, *, batch_size: int) -> Iterator[dict]:
    dataset = grain.MapDataset.range(len(source)).map(LoadExample(source, config))
    return _to_iterator(dataset.batch(batch_size, drop_remainder=False, batch_fn=_stack), config)
