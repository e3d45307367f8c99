"""RD++ (Tien et al., CVPR 2023): RD4AD with a projection layer between the frozen teacher and the
OCBE, trained with three extra losses on simplex-noise pseudo-anomalies (docs/reference.md §11,
docs/rd_pp.md).

Train step (official ``main.py``): the teacher sees the clean images and noisy copies; the
projection layer maps both; the OCBE and decoder reconstruct the teacher's clean features from the
projected clean ones (RD4AD's flattened cosine loss); the projection losses (optimal transport
within the batch, reconstruction of clean projections from noisy ones, contrast between noisy
teacher features and clean projections) are added with weight 0.2. Test: teacher -> projection ->
OCBE -> decoder on clean images, RD4AD's anomaly map.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from rgpkd_jax import losses, sinkhorn
from rgpkd_jax.anomaly_maps import cosine_similarity
from rgpkd_jax.deploy.images import IMAGENET_STD
from rgpkd_jax.models import conv_ops, simplex_noise
from rgpkd_jax.models.decoder import Decoder
from rgpkd_jax.models.features import Features
from rgpkd_jax.models.method import Method
from rgpkd_jax.models.ocbe import OCBE
from rgpkd_jax.models.resnet import ResNet, spec_for

LEAKY_SLOPE = 0.01            # torch.nn.LeakyReLU()
INSTANCE_NORM_EPS = 1e-5      # torch.nn.InstanceNorm2d (affine-free, no running statistics)
# Revisit_RDLoss: (ssot + 0.01 reconstruction + 0.1 contrast) / 1.11.
PROJECTION_TERM_WEIGHTS = {"ssot": 1.0, "reconstruction": 0.01, "contrast": 0.1}
SINKHORN = {"blur": 0.05, "diameter": 1e7, "scaling": 0.95}   # geomloss.SamplesLoss arguments
CONTRAST_MARGIN = 0.5         # torch.nn.CosineEmbeddingLoss(margin=0.5), target -1
EMBEDDING_LOSS_EPS = 1e-12    # added to each squared norm by torch's cosine_embedding_loss
NOISE_AMPLITUDE = 0.2         # noise added to the [0, 1] image: 0.2 x octave noise
NOISE_OCTAVES, NOISE_PERSISTENCE = 6, 0.6


@dataclasses.dataclass(frozen=True)
class UniformInit:
    """U(-bound, bound): PyTorch's default Conv2d init for weights and biases is
    U(+-1/sqrt(fan_in)). A value, not a closure, so equally built models have equal graphdefs."""

    bound: float

    def __call__(self, key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -self.bound, self.bound)


def instance_norm(x: jax.Array) -> jax.Array:
    """Affine-free instance norm of NHWC ``x`` over H, W (biased variance), in at least float32."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + INSTANCE_NORM_EPS)


class ProjLayer(nnx.Module):
    """Official ``ProjLayer`` for ``channels`` (C): four 3x3 convs with bias, C -> C/2 -> C/4 -> C/2
    -> C, each followed by the instance norm and LeakyReLU(0.01). The convs are ``proj[0..3]``
    (the official ``proj.0``, ``proj.3``, ``proj.6``, ``proj.9``).

    ``lr_scale`` (s): each conv stores its weight and bias divided by s and multiplies its output
    by s. The function and the initial distribution are the official ones; an Adam step on the
    stored values moves the effective ones s times as far, so with one optimiser the projection
    layer trains at s x the learning rate of the rest (docs/rd_pp.md "Two learning rates").
    """

    def __init__(self, channels: int, *, lr_scale: float, rngs: nnx.Rngs, ops: conv_ops.XlaLayers):
        widths = (channels, channels // 2, channels // 4, channels // 2, channels)
        convs = []
        for inputs, outputs in zip(widths[:-1], widths[1:]):
            init = UniformInit(1.0 / (lr_scale * np.sqrt(9 * inputs)))
            convs.append(ops.conv(inputs, outputs, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                                  use_bias=True, kernel_init=init, bias_init=init, rngs=rngs))
        self.proj = nnx.List(convs)
        self.lr_scale = float(lr_scale)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.proj:
            x = jax.nn.leaky_relu(instance_norm(self.lr_scale * conv(x)), LEAKY_SLOPE)
        return x


class MultiProjection(nnx.Module):
    """Official ``MultiProjectionLayer``: one :class:`ProjLayer` per teacher level (``proj_a``,
    ``proj_b``, ``proj_c``), each keeping its level's shape. The official code builds it for
    WRN50 (``base=64``: 256, 512, 1024 channels); other teachers get their own channel counts."""

    def __init__(self, arch: str, *, lr_scale: float, rngs: nnx.Rngs, ops: conv_ops.XlaLayers):
        channels = spec_for(arch).tap_channels
        self.proj_a = ProjLayer(channels["layer1"], lr_scale=lr_scale, rngs=rngs, ops=ops)
        self.proj_b = ProjLayer(channels["layer2"], lr_scale=lr_scale, rngs=rngs, ops=ops)
        self.proj_c = ProjLayer(channels["layer3"], lr_scale=lr_scale, rngs=rngs, ops=ops)

    def __call__(self, features: Sequence[jax.Array]) -> list[jax.Array]:
        return [self.proj_a(features[0]), self.proj_b(features[1]), self.proj_c(features[2])]


def _flatten(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


def ssot_loss(projected: Sequence[jax.Array], permutation: jax.Array) -> jax.Array:
    """Self-supervised optimal transport: per level, the Sinkhorn divergence between the batch's
    softmax-normalised flattened projections and the same rows in ``permutation`` order, each
    sample one point of a cloud of B points; summed over levels. The two clouds are one set of
    points, so it is zero up to rounding (docs/reference.md §11.8)."""
    total = 0.0
    for level in projected:
        points = jax.nn.softmax(_flatten(level), axis=-1)
        total = total + sinkhorn.sinkhorn_divergence(points[None], points[permutation][None], **SINKHORN)[0]
    return total


def contrast_loss(noisy_teacher: Sequence[jax.Array], projected: Sequence[jax.Array]) -> jax.Array:
    """torch's ``CosineEmbeddingLoss(margin=0.5)`` with target -1 on the flattened noisy teacher
    features and clean projections: mean over the batch of max(0, cos - 0.5), summed over levels."""
    total = 0.0
    for noisy, clean in zip(noisy_teacher, projected):
        a, b = _flatten(noisy), _flatten(clean)
        cos = jnp.sum(a * b, axis=1) / jnp.sqrt((jnp.sum(a * a, axis=1) + EMBEDDING_LOSS_EPS)
                                                * (jnp.sum(b * b, axis=1) + EMBEDDING_LOSS_EPS))
        total = total + jnp.mean(jnp.maximum(cos - CONTRAST_MARGIN, 0.0))
    return total


def projection_loss(noisy_teacher: Sequence[jax.Array], projected_noisy: Sequence[jax.Array],
                    projected: Sequence[jax.Array], permutation: jax.Array) -> tuple[jax.Array, dict]:
    """Official ``Revisit_RDLoss``: (ssot + 0.01 reconstruction + 0.1 contrast) / 1.11, and its
    terms. Reconstruction is the per-position 1 - cos between noisy and clean projections."""
    terms = {"ssot": ssot_loss(projected, permutation),
             "reconstruction": losses.per_pixel_cosine_distance(projected_noisy, projected),
             "contrast": contrast_loss(noisy_teacher, projected)}
    total = sum(PROJECTION_TERM_WEIGHTS[k] * v for k, v in terms.items())
    return total / sum(PROJECTION_TERM_WEIGHTS.values()), terms


class RDPlusPlus(Method):
    """``teacher`` (ResNet layers 1-3, frozen), ``proj`` (:class:`MultiProjection`), ``bn`` (OCBE)
    and ``decoder``: the official checkpoint's ``proj``, ``bn`` and ``decoder``.

    ``noise_seed`` seeds the OpenSimplex permutation table, fixed for the run as in the official
    data set object. ``micro_batches``: the train batch is split into this many parts, each run
    through the model with its own BN statistics and its loss summed (the official gradient
    accumulation: ``accumulation_steps = 2`` of batch 16). ``proj_lr_ratio``: the projection layer's
    learning rate over the others' (official 0.001 / 0.005). ``proj_loss_weight``: official 0.2.
    """

    def __init__(self, arch: str, *, rngs: nnx.Rngs, noise_seed: int = 0, micro_batches: int = 2,
                 proj_lr_ratio: float = 0.2, proj_loss_weight: float = 0.2,
                 ops: conv_ops.XlaLayers | None = None):
        if micro_batches < 1:
            raise ValueError(f"config.model.micro_batches must be >= 1, got {micro_batches}")
        if proj_lr_ratio <= 0:
            raise ValueError(f"config.model.proj_lr_ratio must be > 0, got {proj_lr_ratio}")
        ops = conv_ops.resolve("auto") if ops is None else ops
        self.conv_impl = ops.name
        self.teacher = ResNet(arch, rngs=rngs, num_layers=3, ops=ops)
        self.proj = MultiProjection(arch, lr_scale=proj_lr_ratio, rngs=rngs, ops=ops)
        self.bn = OCBE(arch, rngs=rngs, ops=ops)
        self.decoder = Decoder(arch, rngs=rngs, ops=ops)
        self.noise_permutation = tuple(int(v) for v in simplex_noise.permutation_table(noise_seed))
        self.micro_batches = int(micro_batches)
        self.proj_loss_weight = float(proj_loss_weight)

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs,
                    ops: conv_ops.XlaLayers) -> "RDPlusPlus":
        """RD++ of ``configs/rd_pp.py``; the noise table is seeded by ``config.seed``."""
        m = config.model
        if config.train.batch_size % m.micro_batches:
            raise ValueError(f"config.train.batch_size={config.train.batch_size} must be a multiple of "
                             f"config.model.micro_batches={m.micro_batches}")
        return cls(config.teacher.arch, rngs=rngs, noise_seed=config.seed, micro_batches=m.micro_batches,
                   proj_lr_ratio=m.proj_lr_ratio, proj_loss_weight=m.proj_loss_weight, ops=ops)

    def _teacher(self, images: jax.Array, teacher_features: list[jax.Array] | None) -> list[jax.Array]:
        return [jax.lax.stop_gradient(f) for f in (
            self.teacher(images) if teacher_features is None else teacher_features)]

    def __call__(self, images: jax.Array, *, train: bool, indices: jax.Array | None = None,
                 teacher_features: list[jax.Array] | None = None) -> Features:
        """Teacher features and the student's reconstruction of them from their projections;
        ``indices`` is unused."""
        teacher = self._teacher(images, teacher_features)
        student = self.decoder(self.bn(self.proj(teacher), train=train), train=train)
        return Features(teacher=teacher, student=student, reconstruction=None).at_least_float32()

    def loss(self, features: Features, images: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The distillation term alone (RD4AD's flattened cosine): all that ``features`` hold. The
        training objective is :meth:`training_loss`."""
        distillation = losses.flattened_cosine_distance(features.teacher, features.student)
        return distillation, {"distillation": distillation}

    def pseudo_anomalies(self, images: jax.Array, key: jax.Array) -> jax.Array:
        """``images`` (normalised NHWC) with one simplex-noise patch each, added as the official
        code adds 0.2 x noise to the [0, 1] image before normalising (docs/rd_pp.md)."""
        if images.shape[1] != images.shape[2]:
            raise ValueError(f"RD++'s pseudo-anomalies need square images, got {images.shape[1:3]}")
        geometry = simplex_noise.PatchGeometry.for_image_size(images.shape[1])
        dtype = jnp.promote_types(images.dtype, jnp.float32)
        field = simplex_noise.octave_noise(
            (images.shape[-1], geometry.max_side, geometry.max_side), jnp.asarray(self.noise_permutation),
            octaves=NOISE_OCTAVES, persistence=NOISE_PERSISTENCE, dtype=dtype)
        sizes, corners = geometry.draw(key, images.shape[0])
        noise = simplex_noise.paste_patches(field, sizes, corners, geometry.image_size)
        return (images + NOISE_AMPLITUDE * noise / jnp.asarray(IMAGENET_STD, dtype)).astype(images.dtype)

    def training_inputs(self, images: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """What ``key`` draws for one part of a batch: the images with their noise patches, and
        the SSOT shuffle (a permutation of the part's rows)."""
        noise_key, shuffle_key = jax.random.split(key)
        return self.pseudo_anomalies(images, noise_key), jax.random.permutation(shuffle_key, images.shape[0])

    def objective(self, images: jax.Array, noisy_images: jax.Array, permutation: jax.Array,
                  teacher_features: list[jax.Array] | None = None) -> tuple[jax.Array, dict]:
        """The official loss of one batch (``main.py``'s ``loss``): the distillation term +
        ``proj_loss_weight`` x :func:`projection_loss`, BN in training mode; and its terms."""
        teacher = self._teacher(images, teacher_features)
        noisy_teacher = self._teacher(noisy_images, None)
        projected, projected_noisy = self.proj(teacher), self.proj(noisy_teacher)
        student = self.decoder(self.bn(projected, train=True), train=True)
        distillation, terms = self.loss(Features(teacher, student).at_least_float32(), images)
        proj_total, proj_terms = projection_loss(*jax.tree.map(
            lambda x: x.astype(jnp.promote_types(x.dtype, jnp.float32)),
            (noisy_teacher, projected_noisy, projected)), permutation)
        return distillation + self.proj_loss_weight * proj_total, {**terms, "projection": proj_total, **proj_terms}

    def training_loss(self, batch: Mapping[str, jax.Array], *, rng: jax.Array,
                      teacher_features: list[jax.Array] | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The official objective, distillation + 0.2 x projection loss, summed over the
        ``micro_batches`` parts of the batch (their gradients add up as the official two
        accumulated batches' do); the terms are averaged over the parts. ``rng`` draws each image's
        noise patch and each part's SSOT shuffle."""
        images = batch["image"]
        if images.shape[0] % self.micro_batches:
            raise ValueError(f"a batch of {images.shape[0]} images does not split into "
                             f"config.model.micro_batches={self.micro_batches} equal parts")
        size = images.shape[0] // self.micro_batches
        total, terms = 0.0, []
        for part, key in enumerate(jax.random.split(rng, self.micro_batches)):
            rows = slice(part * size, (part + 1) * size)
            cached = None if teacher_features is None else [f[rows] for f in teacher_features]
            part_total, part_terms = self.objective(images[rows], *self.training_inputs(images[rows], key),
                                                    teacher_features=cached)
            total = total + part_total
            terms.append(part_terms)
        return total, jax.tree.map(lambda *values: sum(values) / len(values), *terms)
