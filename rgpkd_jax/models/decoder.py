"""RD4AD's reverse ("de-ResNet") student decoder, with SK-RD4AD's optional skips.

Attribute names mirror the official ``de_resnet.py`` state-dict keys (``layer1.0.conv1``,
``layer1.0.upsample.0``), so an official ``decoder`` checkpoint maps key by key. docs/reference.md
§2.2 (structure, init) and §3.2 (skips).

Transposed convolutions are ``nnx.ConvTranspose`` with the default ``transpose_kernel=False``: the
kernel is (kh, kw, in, out), and a PyTorch ``ConvTranspose2d`` weight (in, out, kh, kw) maps onto it
transposed and flipped spatially.
"""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from rgpkd_jax.models import conv_ops
from rgpkd_jax.models.remat import RematBlocks
from rgpkd_jax.models.resnet import batch_norm, conv, residual, spec_for

# PyTorch's default ConvTranspose2d init, kept by the official code (its init loop only matches
# nn.Conv2d): kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), where torch takes fan_in from weight
# dim 1 (out_channels) times kh*kw. That is Flax's fan_out of a (kh, kw, in, out) kernel.
torch_deconv_default_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")

DECODER_PLANES = (256, 128, 64)  # D1, D2, D3


def deconv2x2(ops: conv_ops.XlaLayers, in_ch: int, out_ch: int, rngs: nnx.Rngs,
              kernel_init=torch_deconv_default_init) -> nnx.ConvTranspose:
    """2x2 stride-2 bias-free transposed conv, built by ``ops``: doubles H and W exactly."""
    return ops.deconv2x2(in_ch, out_ch, kernel_init=kernel_init, rngs=rngs)


class DeBasicBlock(nnx.Module):
    """Official decoder ``BasicBlock``: the first block of a stage upsamples with a deconv in place of
    the strided 3x3 conv."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, upsample: bool, base_width: int, rngs: nnx.Rngs,
                 ops: conv_ops.XlaLayers):
        if base_width != 64:
            raise ValueError("decoder BasicBlock supports only width_per_group=64 (as the official code)")
        self.conv1 = (deconv2x2(ops, inplanes, planes, rngs) if upsample
                      else conv(ops, inplanes, planes, 3, 1, rngs))
        self.bn1 = batch_norm(ops, planes, rngs)
        self.conv2 = conv(ops, planes, planes, 3, 1, rngs)
        self.bn2 = batch_norm(ops, planes, rngs)
        self.upsample = _upsample_shortcut(inplanes, planes * self.expansion, upsample, rngs, ops)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        bn = dict(use_running_average=not train)
        out = nnx.relu(self.bn1(self.conv1(x), **bn))
        out = self.bn2(self.conv2(out), **bn)
        return residual(out, self.upsample, x, train)


class DeBottleneck(nnx.Module):
    """Official decoder ``Bottleneck``: 1x1 -> (deconv 2x2 s2 | conv 3x3) -> 1x1, width planes*base/64."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, upsample: bool, base_width: int, rngs: nnx.Rngs,
                 ops: conv_ops.XlaLayers):
        width = int(planes * (base_width / 64.0))
        self.conv1 = conv(ops, inplanes, width, 1, 1, rngs)
        self.bn1 = batch_norm(ops, width, rngs)
        self.conv2 = (deconv2x2(ops, width, width, rngs) if upsample
                      else conv(ops, width, width, 3, 1, rngs))
        self.bn2 = batch_norm(ops, width, rngs)
        self.conv3 = conv(ops, width, planes * self.expansion, 1, 1, rngs)
        self.bn3 = batch_norm(ops, planes * self.expansion, rngs)
        self.upsample = _upsample_shortcut(inplanes, planes * self.expansion, upsample, rngs, ops)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        bn = dict(use_running_average=not train)
        out = nnx.relu(self.bn1(self.conv1(x), **bn))
        out = nnx.relu(self.bn2(self.conv2(out), **bn))
        out = self.bn3(self.conv3(out), **bn)
        return residual(out, self.upsample, x, train)


def _upsample_shortcut(inplanes: int, outplanes: int, upsample: bool, rngs: nnx.Rngs,
                       ops: conv_ops.XlaLayers) -> nnx.List | None:
    """Official ``upsample = Sequential(deconv2x2, BN)`` on the first block of each stage."""
    if not upsample:
        if inplanes != outplanes:
            raise ValueError(f"a non-upsampling decoder block needs in == out channels, got {inplanes}, {outplanes}")
        return None
    return nnx.List([deconv2x2(ops, inplanes, outplanes, rngs), batch_norm(ops, outplanes, rngs)])


class Decoder(RematBlocks, nnx.Module):
    """Reverse ResNet: stages D1 (``layer1``), D2, D3 with planes 256, 128, 64, each doubling H, W.

    Block counts are the teacher's first three stage counts **in forward order** (WRN50: 3, 4, 6),
    an official quirk kept on purpose. ``__call__`` returns [D3, D2, D1] to pair with the teacher's
    [E1, E2, E3].

    ``skips`` (SK-RD4AD): D2's input is ReLU(D1 + E3) and D3's is ReLU(D2 + E2); the returned
    features are the stage outputs before the addition. Parameter-free, so RD4AD is this decoder
    with ``skips=False``. ``ops`` builds the layers (`conv_ops.resolve`; None: "auto"). Its blocks
    are what ``config.model.remat=decoder`` recomputes (`remat.RematBlocks`).
    """

    def __init__(self, arch: str, *, rngs: nnx.Rngs, skips: bool = False,
                 ops: conv_ops.XlaLayers | None = None):
        spec = spec_for(arch)
        ops = conv_ops.resolve("auto") if ops is None else ops
        block = DeBottleneck if spec.block.expansion == 4 else DeBasicBlock
        inplanes = 512 * block.expansion
        for name, planes, blocks in zip(("layer1", "layer2", "layer3"), DECODER_PLANES, spec.layers[:3]):
            outplanes = planes * block.expansion
            stage = [block(inplanes, planes, True, spec.width_per_group, rngs, ops)]
            stage += [block(outplanes, planes, False, spec.width_per_group, rngs, ops)
                      for _ in range(1, blocks)]
            setattr(self, name, nnx.List(stage))
            inplanes = outplanes
        self.skips = skips

    def __call__(self, embedding: jax.Array, teacher: Sequence[jax.Array] | None = None, *,
                 train: bool) -> list[jax.Array]:
        if self.skips and teacher is None:
            raise ValueError("a decoder with skips (SK-RD4AD) needs the teacher features [E1, E2, E3]")
        d1 = self.run_blocks(self.layer1, embedding, train=train)
        d2 = self.run_blocks(self.layer2, nnx.relu(d1 + teacher[2]) if self.skips else d1, train=train)
        d3 = self.run_blocks(self.layer3, nnx.relu(d2 + teacher[1]) if self.skips else d2, train=train)
        return [d3, d2, d1]
