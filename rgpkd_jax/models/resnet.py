"""torchvision ResNets in Flax NNX, used as frozen teachers.

Module and attribute names mirror torchvision's state-dict keys (``layer1.0.downsample.0``), so a
torchvision checkpoint maps onto this tree key by key (see ``rgpkd_jax.torch_state``). Tensors are
NHWC. Padding is PyTorch's explicit symmetric padding, never 'SAME' (docs/reference.md §7).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
from flax import nnx

from rgpkd_jax.models import conv_ops

BN_MOMENTUM = 0.9  # PyTorch momentum 0.1
BN_EPSILON = 1e-5
TAPS = ("layer1", "layer2", "layer3", "layer4")
DEFAULT_TAPS = ("layer1", "layer2", "layer3")

# torchvision's init: Kaiming normal, fan_out, ReLU gain; untruncated.
kaiming_fan_out = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(ops: conv_ops.XlaLayers, in_ch: int, out_ch: int, kernel: int, stride: int,
         rngs: nnx.Rngs) -> nnx.Conv:
    """A bias-free conv with PyTorch's padding (kernel // 2 on each side), built by ``ops``."""
    pad = kernel // 2
    return ops.conv(in_ch, out_ch, (kernel, kernel), strides=(stride, stride),
                    padding=((pad, pad), (pad, pad)), use_bias=False, kernel_init=kaiming_fan_out,
                    rngs=rngs)


def batch_norm(ops: conv_ops.XlaLayers, num_features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """PyTorch's BatchNorm2d defaults, built by ``ops``."""
    return ops.batch_norm(num_features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, rngs=rngs)


class BasicBlock(nnx.Module):
    """Two 3x3 convs with a residual; torchvision ``BasicBlock`` (expansion 1)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, base_width: int, rngs: nnx.Rngs,
                 ops: conv_ops.XlaLayers):
        if base_width != 64:
            raise ValueError("BasicBlock supports only width_per_group=64 (as torchvision)")
        self.conv1 = conv(ops, inplanes, planes, 3, stride, rngs)
        self.bn1 = batch_norm(ops, planes, rngs)
        self.conv2 = conv(ops, planes, planes, 3, 1, rngs)
        self.bn2 = batch_norm(ops, planes, rngs)
        self.downsample = _shortcut(inplanes, planes * self.expansion, stride, rngs, ops)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        bn = dict(use_running_average=not train)
        out = nnx.relu(self.bn1(self.conv1(x), **bn))
        out = self.bn2(self.conv2(out), **bn)
        return residual(out, self.downsample, x, train)


class Bottleneck(nnx.Module):
    """1x1 -> 3x3 (strided, the "v1.5" variant) -> 1x1; torchvision ``Bottleneck`` (expansion 4)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, base_width: int, rngs: nnx.Rngs,
                 ops: conv_ops.XlaLayers):
        width = int(planes * (base_width / 64.0))
        self.conv1 = conv(ops, inplanes, width, 1, 1, rngs)
        self.bn1 = batch_norm(ops, width, rngs)
        self.conv2 = conv(ops, width, width, 3, stride, rngs)
        self.bn2 = batch_norm(ops, width, rngs)
        self.conv3 = conv(ops, width, planes * self.expansion, 1, 1, rngs)
        self.bn3 = batch_norm(ops, planes * self.expansion, rngs)
        self.downsample = _shortcut(inplanes, planes * self.expansion, stride, rngs, ops)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        bn = dict(use_running_average=not train)
        out = nnx.relu(self.bn1(self.conv1(x), **bn))
        out = nnx.relu(self.bn2(self.conv2(out), **bn))
        out = self.bn3(self.conv3(out), **bn)
        return residual(out, self.downsample, x, train)


def _shortcut(inplanes: int, outplanes: int, stride: int, rngs: nnx.Rngs,
              ops: conv_ops.XlaLayers) -> nnx.List | None:
    """torchvision's ``downsample = Sequential(conv1x1, BN)`` when the shape changes, else None."""
    if stride == 1 and inplanes == outplanes:
        return None
    return nnx.List([conv(ops, inplanes, outplanes, 1, stride, rngs), batch_norm(ops, outplanes, rngs)])


def residual(out: jax.Array, shortcut: nnx.List | None, x: jax.Array, train: bool) -> jax.Array:
    """ReLU(out + shortcut(x)), the end of every residual block of the teacher and the decoder:
    ``shortcut`` is the (conv, BN) pair that brings ``x`` to ``out``'s shape, or None (identity)."""
    if shortcut is not None:
        x = shortcut[1](shortcut[0](x), use_running_average=not train)
    return nnx.relu(out + x)


def make_layer(block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int,
               blocks: int, stride: int, base_width: int, rngs: nnx.Rngs,
               ops: conv_ops.XlaLayers) -> nnx.List:
    """A ResNet stage: the first block may stride/project, the others keep the shape."""
    layers = [block(inplanes, planes, stride, base_width, rngs, ops)]
    layers += [block(planes * block.expansion, planes, 1, base_width, rngs, ops) for _ in range(1, blocks)]
    return nnx.List(layers)


def run_layer(layer: nnx.List, x: jax.Array, *, train: bool = False) -> jax.Array:
    for blk in layer:
        x = blk(x, train=train)
    return x


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]
    width_per_group: int = 64

    @property
    def tap_channels(self) -> dict[str, int]:
        e = self.block.expansion
        return {"layer1": 64 * e, "layer2": 128 * e, "layer3": 256 * e, "layer4": 512 * e}


ARCHS: dict[str, ResNetSpec] = {
    "resnet18": ResNetSpec(BasicBlock, (2, 2, 2, 2)),
    "resnet34": ResNetSpec(BasicBlock, (3, 4, 6, 3)),
    "resnet50": ResNetSpec(Bottleneck, (3, 4, 6, 3)),
    "wide_resnet50_2": ResNetSpec(Bottleneck, (3, 4, 6, 3), width_per_group=128),
}


def spec_for(arch: str) -> ResNetSpec:
    try:
        return ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown teacher architecture {arch!r}; choose one of {sorted(ARCHS)}") from None


class ResNet(nnx.Module):
    """A torchvision ResNet trunk (no avgpool/fc), used as a feature extractor.

    ``__call__`` always uses the BN running statistics: a teacher never updates them, whatever
    mode the surrounding model is in. ``ops`` builds the layers (`conv_ops.resolve`; None: "auto").
    """

    def __init__(self, arch: str, *, rngs: nnx.Rngs, num_layers: int = 4,
                 ops: conv_ops.XlaLayers | None = None):
        spec = spec_for(arch)
        ops = conv_ops.resolve("auto") if ops is None else ops
        self.arch = arch
        self.tap_channels = {k: v for k, v in spec.tap_channels.items() if k in TAPS[:num_layers]}
        self.conv1 = conv(ops, 3, 64, 7, 2, rngs)
        self.bn1 = batch_norm(ops, 64, rngs)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), spec.layers)):
            if i >= num_layers:
                break
            layer = make_layer(spec.block, inplanes, planes, blocks, 1 if i == 0 else 2,
                               spec.width_per_group, rngs, ops)
            setattr(self, TAPS[i], layer)
            inplanes = planes * spec.block.expansion

    def __call__(self, x: jax.Array, taps: Sequence[str] = DEFAULT_TAPS) -> list[jax.Array]:
        """Returns the requested stage outputs (NHWC), computing no stage beyond the deepest."""
        unknown = [t for t in taps if t not in self.tap_channels]
        if unknown:
            raise ValueError(f"unknown tap(s) {unknown} for {self.arch}; available: {list(self.tap_channels)}")
        x = nnx.relu(self.bn1(self.conv1(x), use_running_average=True))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        deepest = max(TAPS.index(t) for t in taps)
        outputs = {}
        for name in TAPS[: deepest + 1]:
            x = run_layer(getattr(self, name), x, train=False)
            outputs[name] = x
        return [outputs[t] for t in taps]
