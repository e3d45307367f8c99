"""The method protocol: all that the trainer, evaluator, exporter and benchmarks know of a method.

A method is an ``nnx.Module`` subclass of :class:`Method` (docs/architecture.md "Models",
docs/extending.md). It

* builds itself from the config and the injected layer builder (:meth:`Method.from_config`);
* holds its frozen teacher as the attribute ``teacher``; everything under it, and every
  :class:`Frozen` variable (e.g. RGPKD's prompt bank), is never trained and never checkpointed
  (:data:`NOT_TRAINED`); every other ``nnx.Param`` is trained (:data:`TRAINABLE`);
* may prepare itself from one un-augmented pass over the training split (:meth:`Method.prepare`,
  RGPKD fills its prompt bank there);
* computes its features (``__call__``), its training objective (:meth:`Method.loss`,
  :meth:`Method.training_loss` for methods whose training inputs differ from their test inputs) and
  its anomaly map (:meth:`Method.anomaly_map`).
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import jax
import ml_collections
import numpy as np
from flax import nnx

from rgpkd_jax import anomaly_maps
from rgpkd_jax.models import conv_ops
from rgpkd_jax.models.features import Features


class Frozen(nnx.Variable):
    """Model state that no optimiser updates and no checkpoint holds: rebuilt by
    :meth:`Method.prepare` from the teacher and the training split (RGPKD's prompt bank)."""


# The optimised variables: every parameter outside the frozen teacher.
TRAINABLE = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("teacher")))
FROZEN = nnx.All(nnx.Param, nnx.PathContains("teacher"))
# What training never changes: the frozen teacher (parameters and BN statistics) and every Frozen
# variable. The train step takes it as an argument apart from the trained state, never donated nor
# returned; checkpoints rebuild it instead of saving it (docs/checkpoints.md).
NOT_TRAINED = nnx.Any(nnx.PathContains("teacher"), Frozen)

# config.model keys every method has, read by `models.build_model`, not by a method's from_config.
GENERIC_MODEL_KEYS = ("compute_dtype", "conv_impl", "bn_running_var", "remat")

Batches = Iterable[Mapping[str, np.ndarray]]


def method_options(config: ml_collections.ConfigDict) -> dict:
    """``config.model`` without the keys every method shares: the method's own switches."""
    options = config.model.to_dict()
    for key in GENERIC_MODEL_KEYS:
        options.pop(key, None)
    return options


class Method(nnx.Module):
    """The base of every method. Subclasses set the attributes ``teacher`` (the frozen ResNet) and
    ``conv_impl`` (``ops.name``) and implement :meth:`from_config`, ``__call__`` and :meth:`loss`;
    the other hooks have defaults."""

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs,
                    ops: conv_ops.XlaLayers) -> "Method":
        """The model of ``config`` (``config.teacher.arch`` and :func:`method_options`), every conv,
        BN and deconv built by ``ops``; its teacher randomly initialised (the caller loads it)."""
        raise NotImplementedError

    def __call__(self, images: jax.Array, *, train: bool, indices: jax.Array | None = None,
                 teacher_features: list[jax.Array] | None = None) -> Features:
        """Teacher and student features of ``images`` (NHWC, normalised). ``indices``: the batch's
        dataset indices; ``teacher_features``: the teacher's outputs for ``images`` (from the
        teacher cache), to use instead of running the teacher."""
        raise NotImplementedError

    def loss(self, features: Features, images: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The training objective of ``features`` and its named terms."""
        raise NotImplementedError

    def training_loss(self, batch: Mapping[str, jax.Array], *, rng: jax.Array,
                      teacher_features: list[jax.Array] | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
        """What one train step minimises on ``batch``. ``rng`` is a key that depends on the seed and
        the step only (so a resumed run draws the same), for methods that perturb their training
        inputs; by default the loss of the features of the batch's images."""
        del rng
        features = self(batch["image"], train=True, indices=batch.get("index"),
                        teacher_features=teacher_features)
        return self.loss(features, batch["image"])

    def anomaly_map(self, features: Features, images: jax.Array, eval_config) -> jax.Array:
        """(B, H, W) maps at the images' size; by default RD4AD's (docs/reference.md §2.5): per-level
        1 - cos, upsampled, combined (``eval.combine``) and smoothed (``eval.sigma``)."""
        return anomaly_maps.anomaly_map(features.teacher, features.student, images.shape[1:3],
                                        sigma=eval_config.sigma, combine=eval_config.combine)

    def prepare(self, training_batches: Callable[[], Batches]) -> None:
        """Readies the model from one un-augmented pass over the training split, after the teacher
        is loaded and before training or evaluation. ``training_batches()`` makes that pass (dicts
        with ``image`` and ``index``); by default nothing is needed and it is never called."""
        del training_batches

    def summary(self) -> dict:
        """Facts a report shows beside the parameter counts (e.g. RGPKD's bank size)."""
        return {}
