"""Training losses: distillation distances (RD4AD / SK-RD4AD), MSE and SSIM.

Feature lists are paired level by level (``teacher[i]`` with ``student[i]``, NHWC, shallow to deep;
see docs/architecture.md). Everything follows the official PyTorch code (docs/reference.md §2.3, §3.2),
not the papers' equations, because the published numbers come from the code.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rgpkd_jax.anomaly_maps import align_corners_matrix, cosine_similarity

DISTILLATION_MODES = ("cosine", "cosine_per_pixel", "mse", "mix")


def _check_pairs(teacher: Sequence[jax.Array], student: Sequence[jax.Array]) -> None:
    if len(teacher) != len(student):
        raise ValueError(f"teacher has {len(teacher)} feature levels but student has {len(student)}")
    for level, (t, s) in enumerate(zip(teacher, student)):
        if t.shape != s.shape:
            raise ValueError(f"level {level}: teacher shape {t.shape} != student shape {s.shape}")


def _flatten_per_sample(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


def flattened_cosine_distance(teacher: Sequence[jax.Array], student: Sequence[jax.Array]) -> jax.Array:
    """Official RD4AD ``loss_fucntion``: per level, 1 - cos of the whole flattened per-sample map,
    averaged over the batch; levels summed without weights."""
    _check_pairs(teacher, student)
    return sum(jnp.mean(1.0 - cosine_similarity(_flatten_per_sample(t), _flatten_per_sample(s)))
               for t, s in zip(teacher, student))


def per_pixel_cosine_distance(teacher: Sequence[jax.Array], student: Sequence[jax.Array]) -> jax.Array:
    """The papers' form: 1 - cos over channels at each position, averaged over batch and positions;
    levels summed. Trains worse than the flattened form (hq-deng/RD4AD#22); kept for ablations."""
    _check_pairs(teacher, student)
    return sum(jnp.mean(1.0 - cosine_similarity(t, s, axis=-1)) for t, s in zip(teacher, student))


def mse(x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean squared error over all elements (``torch.nn.MSELoss()``)."""
    if x.shape != y.shape:
        raise ValueError(f"mse: shapes differ, {x.shape} vs {y.shape}")
    return jnp.mean(jnp.square(x - y))


def distillation_loss(teacher: Sequence[jax.Array], student: Sequence[jax.Array],
                      mode: str = "cosine") -> jax.Array:
    """Sum over levels of the chosen distance; ``mse`` and ``mix`` are SK-RD4AD's ``--L2 1`` and
    ``--L2 2`` (mix = 0.5 MSE + 0.5 (1 - flattened cos))."""
    if mode == "cosine":
        return flattened_cosine_distance(teacher, student)
    if mode == "cosine_per_pixel":
        return per_pixel_cosine_distance(teacher, student)
    _check_pairs(teacher, student)
    level_mse = sum(mse(t, s) for t, s in zip(teacher, student))
    if mode == "mse":
        return level_mse
    if mode == "mix":
        return 0.5 * level_mse + 0.5 * flattened_cosine_distance(teacher, student)
    raise ValueError(f"unknown distillation loss {mode!r} (config.model.loss); choose one of {DISTILLATION_MODES}")


def resize_bilinear_align_corners(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of NHWC ``x`` to ``size`` with ``align_corners=True`` (PyTorch
    ``F.interpolate``); ``jax.image.resize`` uses half-pixel centres and would not match."""
    rows = jnp.asarray(align_corners_matrix(x.shape[1], size[0]))
    cols = jnp.asarray(align_corners_matrix(x.shape[2], size[1]))
    x = jnp.einsum("oh,bhwc->bowc", rows, x, precision=jax.lax.Precision.HIGHEST)
    return jnp.einsum("pw,bowc->bopc", cols, x, precision=jax.lax.Precision.HIGHEST)


CONSISTENCY_SIZES = ("fixed", "per_level")
# The official loss_function_2 resizes level 1 to 64 x 64 and level 2 to 32 x 32, whatever the
# image size: levels 0 and 1's sizes at 256 px (docs/reference.md §3.2).
OFFICIAL_CONSISTENCY_SIZES = (64, 32)


def consistency_loss(teacher: Sequence[jax.Array], student: Sequence[jax.Array],
                     sizes: str = "fixed") -> jax.Array:
    """SK-RD4AD's inter-group consistency term (official ``loss_function_2``).

    For each pair of neighbouring levels k, k+1: | MSE(up(t[k+1]), up(s[k+1])) - MSE(t[k], s[k]) |,
    where up is an align_corners bilinear resize; the terms are summed. ``sizes`` (config.model.
    consistency_sizes): ``fixed`` resizes to the official fixed 64 (k = 0) and 32 (k = 1), which are
    level k's sizes at 256 px only; ``per_level`` resizes to level k's size at any image size.
    """
    _check_pairs(teacher, student)
    if sizes not in CONSISTENCY_SIZES:
        raise ValueError(f"unknown config.model.consistency_sizes {sizes!r}; choose one of {CONSISTENCY_SIZES}")
    if sizes == "fixed" and len(teacher) != len(OFFICIAL_CONSISTENCY_SIZES) + 1:
        raise ValueError(f"config.model.consistency_sizes='fixed' is defined for 3 feature levels, got "
                         f"{len(teacher)}; use 'per_level'")
    total = 0.0
    for k in range(len(teacher) - 1):
        size = (OFFICIAL_CONSISTENCY_SIZES[k],) * 2 if sizes == "fixed" else teacher[k].shape[1:3]
        deeper = mse(resize_bilinear_align_corners(teacher[k + 1], size),
                     resize_bilinear_align_corners(student[k + 1], size))
        total = total + jnp.abs(deeper - mse(teacher[k], student[k]))
    return total


def _gaussian_window(win_size: int, sigma: float) -> np.ndarray:
    radius = (win_size - 1) // 2
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return taps / taps.sum()


def _depthwise_valid(x: jax.Array, kernel: np.ndarray) -> jax.Array:
    """Separable depthwise filtering with a 1-D kernel, 'VALID' on both spatial axes."""
    channels = x.shape[-1]
    k = jnp.asarray(kernel, x.dtype)
    spec = ("NHWC", "HWIO", "NHWC")
    for shape in ((k.size, 1, 1, 1), (1, k.size, 1, 1)):
        x = jax.lax.conv_general_dilated(
            x, jnp.broadcast_to(k.reshape(shape), shape[:3] + (channels,)), (1, 1), "VALID",
            dimension_numbers=spec, feature_group_count=channels, precision=jax.lax.Precision.HIGHEST)
    return x


def ssim(x: jax.Array, y: jax.Array, *, data_range: float = 1.0, win_sigma: float = 1.5,
         win_size: int = 11) -> jax.Array:
    """Gaussian-window SSIM of NHWC images, the mean over the batch of each image's SSIM.

    Equals ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=-1)`` per image: skimage filters with a
    2*int(3.5*sigma+0.5)+1 tap Gaussian (11 for sigma 1.5) and then crops (win_size-1)//2 pixels from
    each border before averaging, so only positions whose window lies inside the image count; a
    'VALID' filter computes exactly those. With a ``win_size`` other than that tap count, the window
    has ``win_size`` taps (the pytorch_msssim convention) and skimage would differ.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim expects two NHWC arrays of equal shape, got {x.shape} and {y.shape}")
    if win_size % 2 == 0 or min(x.shape[1:3]) < win_size:
        raise ValueError(f"ssim: win_size must be odd and at most the image side; got win_size={win_size} "
                         f"for images of {x.shape[1]}x{x.shape[2]}")
    # At least float32 (bfloat16 inputs are promoted); float64 stays float64 (tests compare in it).
    dtype = jnp.promote_types(jnp.promote_types(x.dtype, y.dtype), jnp.float32)
    x = x.astype(dtype)
    y = y.astype(dtype)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    moments = _depthwise_valid(jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1),
                               _gaussian_window(win_size, win_sigma))
    mu_x, mu_y, xx, yy, xy = jnp.split(moments, 5, axis=-1)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return jnp.mean(ssim_map)
