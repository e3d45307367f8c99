"""Anomaly maps and image scores from teacher / student features, as the RD4AD evaluation code.

docs/reference.md §2.5: per level ``1 - cos(teacher, student)`` over channels, bilinear upsampling
with ``align_corners=True`` to the image size, sum over levels (product as an option), then
``scipy.ndimage.gaussian_filter(sigma=4)`` (truncate 4, 'reflect' border); image score = max.

Upsampling and Gaussian smoothing are both linear and separable, so each is one small matrix per
axis, built once in numpy (float64, then float32) and applied with two matrix multiplies at full
float32 precision. The blur matrix folds scipy's 'reflect' border (half-sample symmetric, numpy's
``pad(mode='symmetric')``) into its columns, repeating the reflection when the kernel radius
exceeds the image size, exactly as scipy does. Everything is jit-compiled; features are NHWC.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

COSINE_EPS = 1e-8  # torch.nn.functional.cosine_similarity default
DEFAULT_SIGMA = 4.0
DEFAULT_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter default
COMBINE_MODES = ("sum", "product")
SCORE_MODES = ("max", "topk_mean")
_HIGHEST = jax.lax.Precision.HIGHEST  # no TF32 / bf16 passes on GPU and TPU


def cosine_similarity(x: jax.Array, y: jax.Array, axis: int = -1, eps: float = COSINE_EPS) -> jax.Array:
    """``torch.nn.functional.cosine_similarity``: each norm is clamped at ``eps`` separately."""
    x_norm = jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), eps)
    y_norm = jnp.maximum(jnp.linalg.norm(y, axis=axis, keepdims=True), eps)
    return jnp.sum((x / x_norm) * (y / y_norm), axis=axis)


def cosine_distance_map(teacher: jax.Array, student: jax.Array, eps: float = COSINE_EPS) -> jax.Array:
    """``1 - cos`` along channels of two (B, h, w, C) features -> (B, h, w).

    As torch >= 1.12 ``F.cosine_similarity(t, s, dim=1, eps)``: each vector is divided by its
    norm clamped below at ``eps``, then the products are summed.
    """
    if teacher.shape != student.shape or teacher.ndim != 4:
        raise ValueError(f"teacher {teacher.shape} and student {student.shape} features must both "
                         "be (B, h, w, C) with equal shapes.")
    return 1.0 - cosine_similarity(teacher, student, axis=-1, eps=eps)


@functools.lru_cache(maxsize=64)
def align_corners_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) bilinear weights sampling ``src = dst * (in - 1) / (out - 1)``.

    Source positions and weights are computed in float32 as torch does (its rounding moves
    64 -> 256 upsampled values by up to 1e-5 against exact arithmetic).
    """
    one = np.float32(1)
    scale = np.float32(in_size - 1) / np.float32(out_size - 1) if out_size > 1 else np.float32(0)
    src = scale * np.arange(out_size, dtype=np.float32)
    low = np.minimum(src.astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = src - low.astype(np.float32)
    matrix = np.zeros((out_size, in_size), dtype=np.float32)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, low), one - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"size must be an int or (H, W) of positive ints; got {size!r}.")
    return pair


def _apply_per_axis(x: jax.Array, rows: np.ndarray, cols: np.ndarray) -> jax.Array:
    """``rows @ x[b] @ cols.T`` for every b of a (B, h, w) array."""
    return jnp.einsum("Hh,bhw,Ww->bHW", jnp.asarray(rows), x, jnp.asarray(cols), precision=_HIGHEST)


def upsample_align_corners(x: jax.Array, size: int | Sequence[int]) -> jax.Array:
    """Bilinear resize of (B, h, w) to (B, H, W) with ``align_corners=True`` (torch semantics)."""
    if x.ndim != 3:
        raise ValueError(f"upsample_align_corners expects (B, h, w); got {x.shape}.")
    out_h, out_w = _size_pair(size)
    return _apply_per_axis(x, align_corners_matrix(x.shape[1], out_h),
                           align_corners_matrix(x.shape[2], out_w))


def gaussian_kernel1d(sigma: float, truncate: float = DEFAULT_TRUNCATE) -> np.ndarray:
    """scipy's kernel: radius ``int(truncate * sigma + 0.5)``, exp(-x^2 / 2 sigma^2), sum 1."""
    radius = int(truncate * sigma + 0.5)
    taps = np.exp(-0.5 / (sigma * sigma) * np.arange(-radius, radius + 1) ** 2)
    return taps / taps.sum()


def _reflect(index: np.ndarray, size: int) -> np.ndarray:
    """scipy 'reflect' (d c b a | a b c d | d c b a ...) for any offset, repeating as needed."""
    index = np.mod(index, 2 * size)
    return np.where(index >= size, 2 * size - 1 - index, index)


@functools.lru_cache(maxsize=64)
def _gaussian_matrix(size: int, sigma: float, truncate: float) -> np.ndarray:
    """(size, size) matrix of a 1-D scipy ``gaussian_filter1d`` with mode='reflect'."""
    kernel = gaussian_kernel1d(sigma, truncate)
    radius = kernel.size // 2
    outputs = np.arange(size)[:, None]
    sources = _reflect(outputs + np.arange(-radius, radius + 1)[None, :], size)
    matrix = np.zeros((size, size))
    np.add.at(matrix, (np.broadcast_to(outputs, sources.shape), sources),
              np.broadcast_to(kernel, sources.shape))
    return matrix.astype(np.float32)


def gaussian_blur(x: jax.Array, sigma: float = DEFAULT_SIGMA,
                  truncate: float = DEFAULT_TRUNCATE) -> jax.Array:
    """``scipy.ndimage.gaussian_filter(x[b], sigma, truncate=truncate)`` for each b of (B, H, W).

    ``sigma=0`` returns ``x`` unchanged (as scipy). Any radius works, including one larger than
    the image (the reflection repeats, as in scipy).
    """
    if x.ndim != 3:
        raise ValueError(f"gaussian_blur expects (B, H, W); got {x.shape}.")
    if sigma < 0 or truncate < 0:
        raise ValueError(f"sigma and truncate must be >= 0; got sigma={sigma}, truncate={truncate}.")
    if sigma == 0:
        return x
    return _apply_per_axis(x, _gaussian_matrix(x.shape[1], float(sigma), float(truncate)),
                           _gaussian_matrix(x.shape[2], float(sigma), float(truncate)))


@functools.partial(jax.jit, static_argnames=("out_size", "sigma", "truncate", "combine"))
def anomaly_map(teacher_feats: Sequence[jax.Array], student_feats: Sequence[jax.Array],
                out_size: int | tuple[int, int], *, sigma: float = DEFAULT_SIGMA,
                truncate: float = DEFAULT_TRUNCATE, combine: str = "sum") -> jax.Array:
    """RD4AD's smoothed anomaly map (B, H, W) from per-level NHWC features (shallow to deep).

    ``combine='sum'`` is what the RD4AD evaluation uses; ``'product'`` is the ``cal_anomaly_map``
    default ('mul'). ``sigma=0`` skips the smoothing.
    """
    if len(teacher_feats) != len(student_feats) or not teacher_feats:
        raise ValueError(f"need one student feature per teacher feature; got {len(teacher_feats)} "
                         f"teacher and {len(student_feats)} student levels.")
    if combine not in COMBINE_MODES:
        raise ValueError(f"combine must be one of {COMBINE_MODES}; got {combine!r}.")
    size = _size_pair(out_size)
    maps = [upsample_align_corners(cosine_distance_map(t, s), size)
            for t, s in zip(teacher_feats, student_feats)]
    combined = functools.reduce(jnp.add if combine == "sum" else jnp.multiply, maps)
    return gaussian_blur(combined, sigma, truncate)


@functools.partial(jax.jit, static_argnames=("mode", "k"))
def image_scores(maps: jax.Array, mode: str = "max", k: int = 1) -> jax.Array:
    """Image anomaly score per map of (B, H, W): the max (RD4AD), or the mean of the top ``k``."""
    if mode not in SCORE_MODES:
        raise ValueError(f"score mode must be one of {SCORE_MODES}; got {mode!r}.")
    flat = maps.reshape(maps.shape[0], -1)
    if mode == "max":
        return flat.max(axis=1)
    if not 1 <= k <= flat.shape[1]:
        raise ValueError(f"topk_mean needs 1 <= k <= H*W = {flat.shape[1]}; got k={k}.")
    return jax.lax.top_k(flat, k)[0].mean(axis=1)


@jax.jit
def reconstruction_error_map(reconstruction: jax.Array, image01: jax.Array) -> jax.Array:
    """Per-pixel squared error averaged over channels, (B, H, W, C) x2 -> (B, H, W).

    For RGPKD's optional reconstruction term; ``image01`` is the un-normalised image in [0, 1].
    """
    if reconstruction.shape != image01.shape or reconstruction.ndim != 4:
        raise ValueError(f"reconstruction {reconstruction.shape} and image {image01.shape} must "
                         "both be (B, H, W, C) with equal shapes.")
    return jnp.mean(jnp.square(reconstruction - image01), axis=-1)
