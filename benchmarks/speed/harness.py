"""Our side of every benchmark: the model of a config, its jitted train step, inference and forward.

What runs is the library's own code (`rgpkd_jax.train.make_train_step`, `rgpkd_jax.evaluate.make_map_fn`)
on random inputs; each wrapper compiles once and exposes XLA's flop count and buffer sizes.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import optax
from flax import nnx

from benchmarks.speed import inputs, timing
from rgpkd_jax import evaluate, train, train_state
from rgpkd_jax.models import build_model

BANK_CHUNK = 16


def build(config, bank_entries: int = 64):
    """`config`'s model on its seed, prepared (`Method.prepare`) from random images: RGPKD's prompt
    bank gets `model.bank_size` entries, or `bank_entries` when that is 0 (= every training image)."""
    model = build_model(config, nnx.Rngs(config.seed))
    entries = config.model.get("bank_size") or bank_entries
    size = config.dataset.image_size
    model.prepare(lambda: ({"image": inputs.random_images(min(BANK_CHUNK, entries - i), size, seed=1 + i),
                            "index": np.arange(i, min(i + BANK_CHUNK, entries), dtype=np.int32)}
                           for i in range(0, entries, BANK_CHUNK)))
    return model


class TrainStep:
    """Our jitted train step (`rgpkd_jax.train.make_train_step`) on one device-resident batch;
    each call is one step (the state is donated: the new one is kept). `teacher_cache`: the step
    reads the batch's teacher features from a device cache (`train.teacher_cache=device`) of
    these images instead of running the teacher."""

    def __init__(self, model, config, images: np.ndarray, *, teacher_cache: bool = False):
        self.device_cache = tuple(model.teacher(jax.device_put(images))) if teacher_cache else ()
        graphdef, self.state, self.frozen = train_state.split(
            model, config.train, optax.constant_schedule(config.train.learning_rate))
        self.step = train.make_train_step(graphdef, seed=config.seed)
        self.batch = {"image": jax.device_put(images),
                      "index": jax.device_put(np.arange(len(images), dtype=np.int32))}

    def __call__(self):
        self.state, metrics = self.step(self.state, self.frozen, self.batch, self.device_cache)
        return metrics["loss"]

    @functools.cached_property
    def _compiled(self):
        """The step compiled once for both analyses (a WRN50 step takes ~40 s to compile on CPU)."""
        return self.step.lower(self.state, self.frozen, self.batch, self.device_cache).compile()

    def flops(self) -> float | None:
        return timing.flops(self._compiled)

    def memory(self) -> dict[str, float]:
        """XLA's buffer sizes for one step (MiB): the state it takes and its temporaries."""
        stats = self._compiled.memory_analysis()
        return {"arguments_mib": stats.argument_size_in_bytes / 2**20,
                "temporaries_mib": stats.temp_size_in_bytes / 2**20}


class Inference:
    """Forward + anomaly map + score in one jit (`rgpkd_jax.evaluate.make_map_fn`), maps to host."""

    def __init__(self, model, config):
        self.fn, self.state = evaluate.make_map_fn(model, config)

    def __call__(self, images: np.ndarray):
        maps, scores = self.fn(self.state, jax.device_put(images))
        return np.asarray(maps), np.asarray(scores)

    def compiled(self, images: np.ndarray):
        return self.fn.lower(self.state, images).compile()

    def flops(self, images: np.ndarray) -> float | None:
        return timing.flops(self.compiled(images))


def compiled_forward(model, images):
    """The model's forward alone (eval mode) compiled for `images`' shape (for its flop count)."""
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, images: nnx.merge(graphdef, state)(images, train=False))
    return forward.lower(state, images).compile()
