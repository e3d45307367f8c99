"""RD4AD and SK-RD4AD: frozen teacher -> OCBE -> reverse decoder (docs/reference.md §2, §3).

One class serves both: SK-RD4AD is RD4AD with the decoder's skips on and (by default) the
inter-level consistency term in the loss; both are switches, so ablations mix them freely.
"""

from __future__ import annotations

import jax
import ml_collections
from flax import nnx

from rgpkd_jax import losses
from rgpkd_jax.models import conv_ops
from rgpkd_jax.models.features import Features
from rgpkd_jax.models.decoder import Decoder
from rgpkd_jax.models.method import Method
from rgpkd_jax.models.ocbe import OCBE
from rgpkd_jax.models.resnet import ResNet

LOSS_MODES = ("cosine", "cosine_per_pixel", "mse", "mix")


class RD4AD(Method):
    """``teacher`` (ResNet layers 1-3, frozen), ``bn`` (OCBE) and ``decoder``; the attribute names
    ``bn`` and ``decoder`` are the official checkpoint's two state dicts.

    loss: ``cosine`` (official flattened), ``cosine_per_pixel`` (the papers' equation), ``mse``, ``mix``
    (SK-RD4AD ``--L2`` 1 and 2). ``consistency_rate``: weight of SK-RD4AD's consistency term (0 = off);
    ``consistency_sizes``: its resize, ``fixed`` (official) or ``per_level`` (`losses.consistency_loss`).
    ``ops`` builds every conv, BN and deconv (`conv_ops.resolve`; None: "auto"); ``conv_impl``
    records which ("xla" or "cpu").
    """

    def __init__(self, arch: str, *, rngs: nnx.Rngs, skips: bool = False, loss: str = "cosine",
                 consistency_rate: float = 0.0, consistency_sizes: str = "fixed",
                 include_unused_conv4: bool = False,
                 ops: conv_ops.XlaLayers | None = None):
        if loss not in LOSS_MODES:
            raise ValueError(f"unknown config.model.loss {loss!r}; choose one of {LOSS_MODES}")
        if consistency_rate < 0:
            raise ValueError(f"config.model.consistency_rate must be >= 0, got {consistency_rate}")
        if consistency_sizes not in losses.CONSISTENCY_SIZES:
            raise ValueError(f"unknown config.model.consistency_sizes {consistency_sizes!r}; choose one of "
                             f"{losses.CONSISTENCY_SIZES}")
        ops = conv_ops.resolve("auto") if ops is None else ops
        self.conv_impl = ops.name
        self.teacher = ResNet(arch, rngs=rngs, num_layers=3, ops=ops)
        self.bn = OCBE(arch, rngs=rngs, include_unused_conv4=include_unused_conv4, ops=ops)
        self.decoder = Decoder(arch, rngs=rngs, skips=skips, ops=ops)
        self.loss_mode = loss
        self.consistency_rate = float(consistency_rate)
        self.consistency_sizes = consistency_sizes

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs,
                    ops: conv_ops.XlaLayers) -> "RD4AD":
        """RD4AD (``configs/rd4ad.py``) or SK-RD4AD (``configs/sk_rd4ad.py``: skips on and a
        consistency rate; the official single-class rate 0.05, its ``--class all`` run 0.005)."""
        m = config.model
        return cls(config.teacher.arch, rngs=rngs, skips=m.skips, loss=m.loss,
                   consistency_rate=m.consistency_rate,
                   consistency_sizes=m.get("consistency_sizes", "fixed"),
                   include_unused_conv4=m.get("include_unused_conv4", False), ops=ops)

    def __call__(self, images: jax.Array, *, train: bool, indices: jax.Array | None = None,
                 teacher_features: list[jax.Array] | None = None) -> Features:
        """``indices`` is part of the shared interface and unused here; ``teacher_features``
        (the teacher's outputs for ``images``, e.g. from `rgpkd_jax.teacher_cache`) replace the
        teacher's forward pass."""
        teacher = [jax.lax.stop_gradient(f) for f in (
            self.teacher(images) if teacher_features is None else teacher_features)]
        student = self.decoder(self.bn(teacher, train=train), teacher, train=train)
        return Features(teacher=teacher, student=student, reconstruction=None).at_least_float32()

    def loss(self, features: Features, images: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        distillation = losses.distillation_loss(features.teacher, features.student, self.loss_mode)
        terms = {"distillation": distillation}
        total = distillation
        if self.consistency_rate:
            terms["consistency"] = losses.consistency_loss(features.teacher, features.student,
                                                             self.consistency_sizes)
            total = total + self.consistency_rate * terms["consistency"]
        return total, terms
