"""RGPKD's students (our interpretation; docs/rgpkd.md): two U-Nets that differ in their encoder side.

``UNetStudent`` (``config.model.student_encoder="own"``, the default) has its own, randomly
initialised encoder that sees the image. The authors' encoder was an ImageNet ResNet18, a copy of
the teacher, whose skips could pass the teacher's own features to the matched outputs
(docs/reference.md §4.3 item 7); ours is structurally unlike the teacher: plain double-conv stages
(3x3 conv + BN + ReLU, twice) that downsample with a stride-2 conv, no residuals, no max-pool.
With ``base_width`` w:

    encoder  stride  2    4    8    16   32
             width   w    w    2w   4w   8w     (w = 64: the ResNet18 stage widths)

``TeacherEncoderStudent`` (``student_encoder="teacher"``): the encoder side is the frozen teacher
itself; its F1..F3 meet in RD4AD's one-class bottleneck (``ocbe.OCBE``, stride 32), so the student
sees the image only through the teacher's features squeezed through that bottleneck, as RD4AD's
student does. Decoder widths 4w, 2w, w at strides 16, 8, 4.

The decoder of both climbs back: at strides 16, 8 and 4 a stage upsamples (2x2 stride-2 transposed
conv + BN + ReLU), fuses the retrieved prompt by cross-attention (if prompts are on), concatenates
the encoder feature of the same stride (if skips are on), and merges with a double conv; a 1x1
conv projects the result to the teacher's channels. The reconstruction head continues to full
resolution and ends in a sigmoid, so it predicts the [0, 1] image. With the teacher as encoder, a
same-stride skip would hand each stage its own target, so ``skips`` there are SK-RD4AD's
non-corresponding ones: the teacher feature of a stage's *input* stride (one level deeper than its
output) is concatenated before the stage upsamples (F3 into the stride-8 stage, F2 into the
stride-4 stage); its reconstruction head has no skip.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from rgpkd_jax.models import conv_ops
from rgpkd_jax.models.decoder import deconv2x2
from rgpkd_jax.models.ocbe import OCBE
from rgpkd_jax.models.prompt import CrossAttentionFusion
from rgpkd_jax.models.remat import RematBlocks
from rgpkd_jax.models.resnet import batch_norm, conv, spec_for

DOWNSAMPLING = 32  # the encoder's deepest stride: image sides must be multiples of it
SKIP_STAGES = (3, 2, 1)  # encoder stages (strides 16, 8, 4) met by the decoder stages, deepest first
STUDENT_ENCODERS = ("teacher", "own")


def check_image_size(images: jax.Array) -> None:
    if images.shape[1] % DOWNSAMPLING or images.shape[2] % DOWNSAMPLING:
        raise ValueError(f"RGPKD's U-Net needs image sides that are multiples of {DOWNSAMPLING}; got "
                         f"{images.shape[1]}x{images.shape[2]} (set config.dataset.image_size, e.g. 256)")


def _check_prompts(student, prompts) -> None:
    uses_prompts = student.decoder[0].fusion is not None
    if uses_prompts != (prompts is not None):
        raise ValueError("this student was built with prompts="
                         f"{uses_prompts} but was called {'without' if uses_prompts else 'with'} prompts")


def _check_widths(base_width: int, teacher_channels: Sequence[int],
                  prompt_channels: Sequence[int] | None) -> None:
    if base_width < 1:
        raise ValueError(f"config.model.base_width must be a positive integer, got {base_width}")
    if len(teacher_channels) != 3 or (prompt_channels is not None and len(prompt_channels) != 3):
        raise ValueError("the U-Net student matches exactly three teacher levels (strides 4, 8, 16)")


def encoder_widths(base_width: int) -> tuple[int, ...]:
    """Widths of the encoder stages at strides 2, 4, 8, 16, 32."""
    return (base_width, base_width, 2 * base_width, 4 * base_width, 8 * base_width)


class DoubleConv(nnx.Module):
    """(3x3 conv -> BN -> ReLU) twice; the first conv carries the stage's stride."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, rngs: nnx.Rngs, ops: conv_ops.XlaLayers):
        self.conv1 = conv(ops, in_ch, out_ch, 3, stride, rngs)
        self.bn1 = batch_norm(ops, out_ch, rngs)
        self.conv2 = conv(ops, out_ch, out_ch, 3, 1, rngs)
        self.bn2 = batch_norm(ops, out_ch, rngs)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
        return nnx.relu(self.bn2(self.conv2(x), use_running_average=not train))


class Upsample(nnx.Module):
    """2x2 stride-2 transposed conv ('VALID': exactly doubles H and W) -> BN -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, rngs: nnx.Rngs, ops: conv_ops.XlaLayers):
        self.deconv = deconv2x2(ops, in_ch, out_ch, rngs, kernel_init=nnx.initializers.lecun_normal())
        self.bn = batch_norm(ops, out_ch, rngs)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        return nnx.relu(self.bn(self.deconv(x), use_running_average=not train))


class DecoderStage(nnx.Module):
    """Upsample -> [prompt cross-attention] -> [concat encoder skip] -> double conv -> 1x1 projection."""

    def __init__(self, in_ch: int, out_ch: int, skip_ch: int, teacher_ch: int,
                 prompt_ch: int | None, rngs: nnx.Rngs, ops: conv_ops.XlaLayers):
        self.up = Upsample(in_ch, out_ch, rngs, ops)
        self.fusion = CrossAttentionFusion(out_ch, prompt_ch, rngs) if prompt_ch else None
        self.merge = DoubleConv(out_ch + skip_ch, out_ch, 1, rngs, ops)
        self.project = ops.conv(out_ch, teacher_ch, (1, 1), padding=((0, 0), (0, 0)), rngs=rngs)

    def __call__(self, x: jax.Array, skip: jax.Array | None, prompt: jax.Array | None, *,
                 train: bool) -> tuple[jax.Array, jax.Array]:
        """Returns (decoded features for the next stage, projection matched to the teacher)."""
        x = self.up(x, train=train)
        if self.fusion is not None:
            x = self.fusion(x, prompt)
        if skip is not None:
            x = jnp.concatenate([x, skip], axis=-1)
        x = self.merge(x, train=train)
        return x, self.project(x)


class ReconstructionHead(nnx.Module):
    """Stride 4 -> 2 (upsample, [skip], double conv) -> 1 (upsample, 3x3 conv, sigmoid)."""

    def __init__(self, in_ch: int, skip_ch: int, rngs: nnx.Rngs, ops: conv_ops.XlaLayers):
        width = max(in_ch // 2, 1)
        self.up_half = Upsample(in_ch, width, rngs, ops)
        self.merge = DoubleConv(width + skip_ch, width, 1, rngs, ops)
        self.up_full = Upsample(width, width, rngs, ops)
        self.to_rgb = ops.conv(width, 3, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)

    def __call__(self, x: jax.Array, skip: jax.Array | None, *, train: bool) -> jax.Array:
        x = self.up_half(x, train=train)
        if skip is not None:
            x = jnp.concatenate([x, skip], axis=-1)
        x = self.merge(x, train=train)
        return nnx.sigmoid(self.to_rgb(self.up_full(x, train=train)))


class UNetStudent(RematBlocks, nnx.Module):
    """The student. ``teacher_channels`` and ``prompt_channels`` are ordered shallow to deep
    (strides 4, 8, 16); ``prompt_channels=None`` builds no fusion modules at all. ``ops`` builds
    the convolutions, BNs and deconvolutions (`conv_ops.resolve`; None: "auto"). Its decoder
    stages are what ``config.model.remat=decoder`` recomputes (`remat.RematBlocks`)."""

    def __init__(self, *, base_width: int, teacher_channels: Sequence[int], skips: bool = True,
                 reconstruction: bool = True, prompt_channels: Sequence[int] | None = None,
                 rngs: nnx.Rngs, ops: conv_ops.XlaLayers | None = None):
        ops = conv_ops.resolve("auto") if ops is None else ops
        _check_widths(base_width, teacher_channels, prompt_channels)
        widths = encoder_widths(base_width)
        self.skips = skips
        ins = (3,) + widths[:-1]
        self.encoder = nnx.List([DoubleConv(i, o, 2, rngs, ops) for i, o in zip(ins, widths)])
        # Decoder stages, deepest first; stage i ends at the stride of encoder stage SKIP_STAGES[i]
        # (16, 8, 4), takes that stage's output as its skip and matches teacher level
        # SKIP_STAGES[i] - 1 (F3, F2, F1).
        prompt_channels = prompt_channels or (None,) * 3
        self.decoder = nnx.List([
            DecoderStage(widths[e + 1], widths[e], widths[e] if skips else 0,
                         teacher_channels[e - 1], prompt_channels[e - 1], rngs, ops)
            for e in SKIP_STAGES])
        self.reconstruction = (ReconstructionHead(widths[1], widths[0] if skips else 0, rngs, ops)
                               if reconstruction else None)

    def __call__(self, images: jax.Array, prompts: Sequence[jax.Array] | None = None, *,
                 train: bool) -> tuple[list[jax.Array], jax.Array | None]:
        """images (B, H, W, 3), prompts [P1, P2, P3] or None -> ([S1, S2, S3] shallow to deep,
        reconstruction (B, H, W, 3) in [0, 1] or None)."""
        _check_prompts(self, prompts)
        check_image_size(images)
        encoded = []
        x = images
        for stage in self.encoder:
            x = stage(x, train=train)
            encoded.append(x)
        outputs = []
        for e, stage in zip(SKIP_STAGES, self.decoder):
            skip = encoded[e] if self.skips else None
            prompt = prompts[e - 1] if prompts is not None else None
            x, projected = self.call_block(stage, x, skip, prompt, train=train)
            outputs.append(projected)
        reconstruction = None
        if self.reconstruction is not None:
            reconstruction = self.reconstruction(x, encoded[0] if self.skips else None, train=train)
        return outputs[::-1], reconstruction


class TeacherEncoderStudent(RematBlocks, nnx.Module):
    """The student whose encoder side is the frozen teacher: [F1, F2, F3] -> OCBE (one-class
    bottleneck, 512 x expansion channels at stride 32) -> decoder stages at strides 16, 8, 4 of
    widths 4w, 2w, w (w = ``base_width``) -> [S1, S2, S3]; the reconstruction head continues from
    stride 4. ``prompt_channels=None`` builds no fusion modules; ``skips`` are SK-RD4AD's
    non-corresponding ones (module docstring). ``ops`` as for ``UNetStudent``."""

    def __init__(self, arch: str, *, base_width: int, teacher_channels: Sequence[int], skips: bool = True,
                 reconstruction: bool = True, prompt_channels: Sequence[int] | None = None,
                 rngs: nnx.Rngs, ops: conv_ops.XlaLayers | None = None):
        ops = conv_ops.resolve("auto") if ops is None else ops
        _check_widths(base_width, teacher_channels, prompt_channels)
        self.skips = skips
        self.bottleneck = OCBE(arch, rngs=rngs, ops=ops)
        widths = (4 * base_width, 2 * base_width, base_width)  # outputs at strides 16, 8, 4
        ins = (512 * spec_for(arch).block.expansion,) + widths[:-1]
        levels = (2, 1, 0)  # teacher level each stage matches: F3, F2, F1
        # A stage's skip is the teacher level one deeper than the one it matches (none for F3's stage).
        skip_channels = [teacher_channels[l + 1] if skips and l < 2 else 0 for l in levels]
        prompt_channels = prompt_channels or (None,) * 3
        self.decoder = nnx.List([
            DecoderStage(i + s, o, 0, teacher_channels[l], prompt_channels[l], rngs, ops)
            for i, s, o, l in zip(ins, skip_channels, widths, levels)])
        self.reconstruction = ReconstructionHead(widths[-1], 0, rngs, ops) if reconstruction else None

    def __call__(self, teacher: Sequence[jax.Array], prompts: Sequence[jax.Array] | None = None, *,
                 train: bool) -> tuple[list[jax.Array], jax.Array | None]:
        """teacher [F1, F2, F3] (gradient-free), prompts [P1, P2, P3] or None -> ([S1, S2, S3],
        reconstruction (B, H, W, 3) in [0, 1] or None)."""
        _check_prompts(self, prompts)
        x = self.bottleneck(teacher, train=train)
        outputs = []
        for level, stage in zip((2, 1, 0), self.decoder):
            if self.skips and level < 2:
                x = jnp.concatenate([x, teacher[level + 1].astype(x.dtype)], axis=-1)
            x, projected = self.call_block(stage, x, None, prompts[level] if prompts is not None else None,
                                           train=train)
            outputs.append(projected)
        reconstruction = self.reconstruction(x, None, train=train) if self.reconstruction is not None else None
        return outputs[::-1], reconstruction
