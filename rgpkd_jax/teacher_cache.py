"""The frozen teacher's features of every training image, computed once (`config.train.teacher_cache`).

Exact, not an approximation: a training image's teacher features are the same in every epoch,
because the teacher is frozen (its parameters are outside `models.TRAINABLE` and its BNs always
use running statistics, `models/resnet.py`) and nothing augments training images (the pipeline
only decodes, resizes and normalises them: docs/architecture.md "Batches"). The one way a run can
see other images is a `data_source` override of the trainer (tests inject faults with it): the
cache is refused with it. The cache is filled by one pass over the training split before
training, with the training batch size (the last batch padded), and never saved in a checkpoint:
a resumed run rebuilds it (docs/architecture.md "Teacher cache").

Modes: `device` keeps each level as one (N, H, W, C) array replicated on every device and the
jitted step gathers a batch's rows by its `index` (so they come out sharded like the batch);
`host` keeps numpy arrays and adds a batch's rows to it under `HOST_KEY_PREFIX<level>` before it
is copied to the devices; `auto` picks `device` if the cache fits
`train.teacher_cache_budget_mib`, else `host` if it fits `train.teacher_cache_host_budget_mib`,
else `off`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from rgpkd_jax import sharding
from rgpkd_jax.data import pipeline

MODES = ("off", "auto", "host", "device")
HOST_KEY_PREFIX = "teacher_features_"


def resolve_mode(config, model, num_train: int, *, data_source_overridden: bool = False) -> str:
    """`config.train.teacher_cache` as `off`, `host` or `device` (`auto` decided and logged);
    a ValueError naming the option where a cache would not be exact."""
    mode = config.train.get("teacher_cache", "off")
    if mode not in MODES:
        raise ValueError(f"config.train.teacher_cache={mode!r}; choose one of {MODES}")
    if mode == "off":
        return mode
    if data_source_overridden:
        if mode == "auto":
            logging.info("teacher_cache=auto: off (a data_source replaces the training batches, "
                         "so their images may differ from the split's)")
            return "off"
        raise ValueError(f"config.train.teacher_cache={mode!r} would not be exact: a data_source "
                         "replaces the training batches, so their images may differ from the split's "
                         "cached features; set --config.train.teacher_cache=off")
    if mode != "auto":
        return mode
    mib = num_train * bytes_per_image(model, config.dataset.image_size) / 2**20
    device_budget = config.train.teacher_cache_budget_mib
    host_budget = config.train.teacher_cache_host_budget_mib
    if mib <= device_budget:
        mode, why = "device", f"fits train.teacher_cache_budget_mib={device_budget}"
    elif mib <= host_budget:
        mode, why = "host", (f"over train.teacher_cache_budget_mib={device_budget}, fits "
                             f"train.teacher_cache_host_budget_mib={host_budget}")
    else:
        mode, why = "off", (f"over train.teacher_cache_budget_mib={device_budget} and "
                            f"train.teacher_cache_host_budget_mib={host_budget}")
    logging.info("teacher_cache=auto: %s (%d training images, %.1f MiB of teacher features, %s)",
                 mode, num_train, mib, why)
    return mode


def _feature_shapes(model, image_size: int) -> list[jax.ShapeDtypeStruct]:
    """One image's teacher outputs, shallow to deep, in the dtype the teacher computes in."""
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    return nnx.eval_shape(lambda teacher, x: teacher(x), model.teacher, images)


def bytes_per_image(model, image_size: int) -> int:
    return sum(int(np.prod(s.shape)) * s.dtype.itemsize for s in _feature_shapes(model, image_size))


@nnx.jit
def _teacher_forward(teacher, images):
    return teacher(images)


def compute(model, config, num_train: int) -> list[np.ndarray]:
    """Every training image's teacher features, per level an (N, H, W, C) numpy array in the
    teacher's compute dtype, row i = the image of dataset `index` i (one un-augmented pass)."""
    batch_size = config.train.batch_size
    shapes = _feature_shapes(model, config.dataset.image_size)
    levels = [np.zeros((num_train, *s.shape[1:]), s.dtype) for s in shapes]
    filled = np.zeros(num_train, bool)
    for batch in pipeline.test_batches(config, batch_size=batch_size, split="train"):
        images, count = batch["image"], len(batch["image"])
        if count < batch_size:  # the training step's shape, so the same computation
            images = np.concatenate([images, np.repeat(images[-1:], batch_size - count, axis=0)])
        features = jax.device_get(_teacher_forward(model.teacher, jnp.asarray(images)))
        for level, values in zip(levels, features):
            level[batch["index"]] = values[:count]
        filled[batch["index"]] = True
    if not filled.all():
        raise RuntimeError(f"the teacher cache pass saw {int(filled.sum())} of {num_train} training "
                           "images; the training split changed while it was read")
    logging.info("teacher cache: the features of %d training images, %.1f MiB (%s)", num_train,
                 sum(level.nbytes for level in levels) / 2**20, levels[0].dtype)
    return levels


def to_device(levels: list[np.ndarray], mesh: Mesh) -> tuple[jax.Array, ...]:
    """The cache replicated on every device of the mesh (every process holds all of it)."""
    replicated = sharding.replicated(mesh)
    return tuple(jax.make_array_from_process_local_data(replicated, level, level.shape)
                 for level in levels)


class HostGather:
    """A training iterator whose batches also carry their images' cached teacher features, under
    `HOST_KEY_PREFIX<level>`; positions (`get_state`/`set_state`) are the inner iterator's."""

    def __init__(self, iterator, levels: list[np.ndarray]):
        self._iterator, self._levels = iterator, levels

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        batch = dict(next(self._iterator))
        for i, level in enumerate(self._levels):
            batch[f"{HOST_KEY_PREFIX}{i}"] = level[batch["index"]]
        return batch

    def get_state(self):
        return self._iterator.get_state()

    def set_state(self, state):
        self._iterator.set_state(state)


def batch_features(batch: dict, device_levels: tuple[jax.Array, ...]) -> list[jax.Array] | None:
    """Inside the jitted step: the batch's cached teacher features (from the device cache or the
    batch's host-gathered keys), or None without a cache."""
    if device_levels:
        return [jnp.take(level, batch["index"], axis=0) for level in device_levels]
    count = sum(k.startswith(HOST_KEY_PREFIX) for k in batch)
    return [batch[f"{HOST_KEY_PREFIX}{i}"] for i in range(count)] or None
