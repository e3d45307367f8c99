"""RGPKD as we interpret it (docs/rgpkd.md).

Frozen ResNet18 teacher (F1, F2, F3), a U-Net student (``unet.py``) that matches them and
reconstructs the image, and a bank of the training images' teacher features from which each input
retrieves its nearest neighbours as prompts (``prompt.py``). The student has its own encoder that
sees the image (``student_encoder="own"``, default), or its encoder side is the frozen teacher
feeding RD4AD's one-class bottleneck (``"teacher"``). Every part is a switch in
``config.model``: ``student_encoder``, ``prompts``, ``reconstruction``, ``skips``, ``top_k``,
``bank_size``, ``bank_dtype``, ``rec_weight``, ``base_width``, ``distill_loss``.

Before training or evaluating with prompts on, the bank is filled from the training split:
``model.prepare(training_batches)`` (the method protocol's preparation: one un-augmented pass of
dicts with ``image`` and ``index``).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from rgpkd_jax import anomaly_maps, losses
from rgpkd_jax.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, denormalize
from rgpkd_jax.models import conv_ops
from rgpkd_jax.models.features import Features
from rgpkd_jax.models.method import Batches, Method, method_options
from rgpkd_jax.models.prompt import PromptMemory, pooled_key
from rgpkd_jax.models.resnet import DEFAULT_TAPS, ResNet
from rgpkd_jax.models.unet import STUDENT_ENCODERS, TeacherEncoderStudent, UNetStudent, check_image_size

DISTILL_LOSSES = ("cosine", "mse")


def unnormalise(images: jax.Array) -> jax.Array:
    """ImageNet-normalised NHWC images -> the [0, 1] images the reconstruction head predicts."""
    return images * jnp.asarray(IMAGENET_STD) + jnp.asarray(IMAGENET_MEAN)


def _check_options(distill_loss: str, top_k: int, bank_size: int, rec_weight: float,
                   student_encoder: str) -> None:
    if student_encoder not in STUDENT_ENCODERS:
        raise ValueError(f"config.model.student_encoder={student_encoder!r}; choose one of {STUDENT_ENCODERS}")
    if distill_loss not in DISTILL_LOSSES:
        raise ValueError(f"config.model.distill_loss={distill_loss!r}; choose one of {DISTILL_LOSSES}")
    if top_k < 1:
        raise ValueError(f"config.model.top_k={top_k}; it must be >= 1 (1 = the single nearest image)")
    if bank_size < 0:
        raise ValueError(f"config.model.bank_size={bank_size}; use 0 for every training image or a positive cap")
    if rec_weight < 0:
        raise ValueError(f"config.model.rec_weight={rec_weight}; it must be >= 0")


class _Reservoir:
    """Keeps a uniform random subset of at most ``capacity`` entries from a stream (Algorithm R),
    so the bank never holds more than ``capacity`` images, on the host either; capacity None = all."""

    def __init__(self, capacity: int | None, seed: int):
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.seen = 0
        self.slots: list[tuple] = []

    def add(self, entry: tuple) -> None:
        if self.capacity is None or len(self.slots) < self.capacity:
            self.slots.append(entry)
        else:
            slot = self.rng.integers(0, self.seen + 1)
            if slot < self.capacity:
                self.slots[slot] = entry
        self.seen += 1


@functools.partial(nnx.jit, static_argnames="dtype")
def _bank_entries(teacher: ResNet, images: jax.Array, dtype: str) -> tuple[list[jax.Array], jax.Array]:
    """A batch's bank entries: teacher F1..F3 in the bank's dtype, and float32 retrieval keys."""
    features = teacher(images)
    return [f.astype(dtype) for f in features], pooled_key(features[-1])


class RGPKD(Method):
    """``__call__(images, *, train, indices=None, teacher_features=None) -> Features``;
    ``loss(features, images)``; ``prepare`` fills the prompt bank; ``anomaly_map`` adds the weighted
    reconstruction error (``eval.reconstruction_weight``) to RD4AD's map.

    The keyword arguments are ``config.model``'s switches (:meth:`from_config` passes them);
    ``bank_seed`` seeds the subset kept when ``bank_size`` caps the bank. ``ops`` builds every conv,
    BN and deconv (`conv_ops.resolve`; None: "auto"); ``conv_impl`` records which ("xla" or "cpu").
    """

    def __init__(self, teacher_arch: str = "resnet18", *, rngs: nnx.Rngs, prompts: bool = True,
                 reconstruction: bool = True, skips: bool = True, top_k: int = 1, bank_size: int = 0,
                 bank_dtype: str = "float32", rec_weight: float = 1.0, base_width: int = 64,
                 distill_loss: str = "cosine", bank_seed: int = 0, student_encoder: str = "own",
                 ops: conv_ops.XlaLayers | None = None):
        _check_options(distill_loss, top_k, bank_size, rec_weight, student_encoder)
        ops = conv_ops.resolve("auto") if ops is None else ops
        self.conv_impl = ops.name
        self.teacher = ResNet(teacher_arch, rngs=rngs, num_layers=3, ops=ops)
        channels = tuple(self.teacher.tap_channels[t] for t in DEFAULT_TAPS)
        student_options = dict(base_width=base_width, teacher_channels=channels, skips=skips,
                               reconstruction=reconstruction,
                               prompt_channels=channels if prompts else None, rngs=rngs, ops=ops)
        self.student_encoder = student_encoder
        if student_encoder == "teacher":
            self.student = TeacherEncoderStudent(teacher_arch, **student_options)
        else:
            self.student = UNetStudent(**student_options)
        self.prompts = PromptMemory(channels, bank_dtype) if prompts else None
        self.top_k = top_k
        self.bank_size = bank_size
        self.bank_seed = bank_seed
        self.rec_weight = rec_weight
        self.distill_loss = distill_loss

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs,
                    ops: conv_ops.XlaLayers) -> "RGPKD":
        return cls(config.teacher.arch, rngs=rngs, ops=ops, **method_options(config))

    def teacher_features(self, images: jax.Array) -> list[jax.Array]:
        """F1, F2, F3 with running BN statistics and no gradient path into the teacher."""
        return [jax.lax.stop_gradient(f) for f in self.teacher(images)]

    def __call__(self, images: jax.Array, *, train: bool, indices: jax.Array | None = None,
                 teacher_features: list[jax.Array] | None = None) -> Features:
        """``teacher_features`` (the teacher's F1..F3 for ``images``, e.g. from
        `rgpkd_jax.teacher_cache`) replace the teacher's forward pass, for the prompt retrieval too."""
        check_image_size(images)
        teacher = (self.teacher_features(images) if teacher_features is None
                   else [jax.lax.stop_gradient(f) for f in teacher_features])
        prompts = None
        if self.prompts is not None:
            if train and indices is None:
                raise ValueError("RGPKD training with prompts needs each image's dataset index (the "
                                 "batch's 'index') to keep an image from retrieving itself")
            _, prompts = self.prompts.retrieve(teacher[-1], top_k=self.top_k,
                                               exclude_indices=indices if train else None)
        # The teacher-encoder student sees the image only through the teacher's (gradient-free) features.
        student_input = teacher if self.student_encoder == "teacher" else images
        student, reconstruction = self.student(student_input, prompts, train=train)
        return Features(teacher, student, reconstruction).at_least_float32()

    def loss(self, features: Features, images: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Sum over levels of the distillation distance, plus, with reconstruction on,
        rec_weight * (MSE + 1 - SSIM) against the un-normalised [0, 1] image."""
        distill = losses.distillation_loss(features.teacher, features.student, self.distill_loss)
        terms = {"distill": distill}
        total = distill
        if features.reconstruction is not None:
            target = unnormalise(images)
            terms["rec_mse"] = losses.mse(features.reconstruction, target)
            terms["rec_ssim"] = losses.ssim(features.reconstruction, target)
            total = total + self.rec_weight * (terms["rec_mse"] + 1.0 - terms["rec_ssim"])
        return total, terms

    def anomaly_map(self, features: Features, images: jax.Array, eval_config) -> jax.Array:
        """RD4AD's map, plus ``eval.reconstruction_weight`` x the smoothed reconstruction error."""
        maps = super().anomaly_map(features, images, eval_config)
        if eval_config.reconstruction_weight and features.reconstruction is not None:
            error = anomaly_maps.reconstruction_error_map(features.reconstruction, denormalize(images))
            maps = maps + eval_config.reconstruction_weight * anomaly_maps.gaussian_blur(
                error, sigma=eval_config.sigma)
        return maps

    def prepare(self, training_batches: Callable[[], Batches]) -> None:
        """Fills the prompt bank from one pass over the training split (nothing to do with prompts
        off). Batches are dicts with ``image`` (normalised NHWC) and ``index``. With
        ``config.model.bank_size`` > 0, a seeded uniform subset of that many images is kept."""
        if self.prompts is None:
            return

        reservoir = _Reservoir(self.bank_size or None, self.bank_seed)
        for batch in training_batches():
            features, keys = jax.device_get(
                _bank_entries(self.teacher, jnp.asarray(batch["image"]), self.prompts.dtype))
            for i, index in enumerate(np.asarray(batch["index"])):
                # Copies, so a replaced entry does not keep its whole batch alive.
                reservoir.add(([f[i].copy() for f in features], keys[i].copy(), int(index)))
        if not reservoir.slots:
            raise ValueError("RGPKD's prompt bank got no training batches; the training split is empty")
        reservoir.slots.sort(key=lambda entry: entry[2])
        self.prompts.set([np.stack([e[0][level] for e in reservoir.slots]) for level in range(3)],
                         np.array([e[2] for e in reservoir.slots]),
                         keys=np.stack([e[1] for e in reservoir.slots]))
        logging.info("RGPKD prompt bank: %d of %d training images, %.1f MiB (%s)",
                     self.prompts.size, reservoir.seen, self.prompts.nbytes / 2**20, self.prompts.dtype)

    def summary(self) -> dict:
        return {"prompt_bank_entries": int(self.prompts.size)} if self.prompts is not None else {}
