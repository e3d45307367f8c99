"""RD4AD's one-class bottleneck embedding (OCBE = MFF + OCE), official ``resnet.py: BN_layer``.

Attribute names mirror the official state-dict keys of the ``bn`` module (``conv1``, ``bn1``, ...,
``bn_layer.0.conv1``, ``bn_layer.0.downsample.0``), so an official checkpoint maps key by key
(``rgpkd_jax.models.official_checkpoint``). docs/reference.md §2.1.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from rgpkd_jax.models import conv_ops
from rgpkd_jax.models.resnet import batch_norm, conv, make_layer, run_layer, spec_for


def oce_blocks(arch: str) -> int:
    """Official OCE depth: ``BN_layer(AttnBasicBlock, 2)`` for ResNet18, 3 blocks otherwise."""
    return 2 if arch == "resnet18" else 3


class OCBE(nnx.Module):
    """Fuses the teacher taps [E1, E2, E3] into one compact 8x-smaller embedding (at 256 px:
    WRN50 2048x8x8, ResNet18 512x8x8).

    MFF: E1 -> two strided 3x3 convs, E2 -> one strided 3x3 conv, E3 as is; concatenated in that
    order. OCE: one ResNet stage (planes 512, stride 2) over the concatenation. The official blocks
    are named Attn* but have no attention, so the plain teacher blocks are reused; for WRN50 they
    inherit width_per_group=128 (inner width 1024).

    ``include_unused_conv4`` creates the official ``conv4``/``bn4``, which the official forward never
    uses; they only make parameter counts (and checkpoints) match the official module. ``ops``
    builds the layers (`conv_ops.resolve`; None: "auto").
    """

    def __init__(self, arch: str, *, rngs: nnx.Rngs, include_unused_conv4: bool = False,
                 ops: conv_ops.XlaLayers | None = None):
        spec = spec_for(arch)
        ops = conv_ops.resolve("auto") if ops is None else ops
        e = spec.block.expansion
        self.conv1 = conv(ops, 64 * e, 128 * e, 3, 2, rngs)
        self.bn1 = batch_norm(ops, 128 * e, rngs)
        self.conv2 = conv(ops, 128 * e, 256 * e, 3, 2, rngs)
        self.bn2 = batch_norm(ops, 256 * e, rngs)
        self.conv3 = conv(ops, 128 * e, 256 * e, 3, 2, rngs)
        self.bn3 = batch_norm(ops, 256 * e, rngs)
        self.bn_layer = make_layer(spec.block, 3 * 256 * e, 512, oce_blocks(arch), 2,
                                   spec.width_per_group, rngs, ops)
        if include_unused_conv4:
            self.conv4 = conv(ops, 1024 * e, 512 * e, 1, 1, rngs)
            self.bn4 = batch_norm(ops, 512 * e, rngs)
        self.has_unused_conv4 = include_unused_conv4

    def __call__(self, features: Sequence[jax.Array], *, train: bool) -> jax.Array:
        e1, e2, e3 = features
        bn = dict(use_running_average=not train)
        a = nnx.relu(self.bn1(self.conv1(e1), **bn))
        a = nnx.relu(self.bn2(self.conv2(a), **bn))
        b = nnx.relu(self.bn3(self.conv3(e2), **bn))
        return run_layer(self.bn_layer, jnp.concatenate([a, b, e3], axis=-1), train=train)
