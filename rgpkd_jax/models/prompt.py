"""RGPKD's prompt bank, retrieval and cross-attention fusion (our interpretation; docs/rgpkd.md).

The authors' code (docs/reference.md §4.2-4.3) keeps every training image's teacher F1..F3, retrieves
the nearest one by a raw dot product of student features, and fuses it through averaged affinity
scalars, only in training. We keep the bank, and choose the rest: retrieval by the cosine
similarity of pooled, normalised *teacher* F3 (fixed while the student trains), top-k with the
query's own entry excluded in training, and cross-attention from decoder positions to the prompt's
positions with a residual, applied in training *and* at test time.

The bank is model state but never optimised: its arrays are :class:`PromptBank` variables, a kind
of ``models.Frozen``, not ``nnx.Param``, so ``models.TRAINABLE`` skips them and
``models.NOT_TRAINED`` (what checkpoints leave out) holds them. Their shapes are fixed once the
bank is set, so the jitted train and eval steps see static shapes.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rgpkd_jax.models.method import Frozen

BANK_DTYPES = ("float32", "float16")


class PromptBank(Frozen):
    """An array of the prompt bank: state that no optimiser updates and no checkpoint holds."""


def pooled_key(deepest: jax.Array) -> jax.Array:
    """(B, H, W, C) teacher F3 -> (B, C): the spatial mean, L2-normalised, in at least float32."""
    pooled = jnp.mean(deepest.astype(jnp.promote_types(deepest.dtype, jnp.float32)), axis=(1, 2))
    return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-8)


def bank_bytes_per_image(channels: Sequence[int], image_size: int, dtype: str,
                         strides: Sequence[int] = (4, 8, 16)) -> int:
    """Bytes one bank entry holds: its three feature maps in ``dtype``, plus the float32 key and the
    int32 dataset index. ResNet18 at 256 px: 458,752 values, 1,836,036 B (fp32), 918,532 B (fp16)."""
    values = sum(c * (image_size // s) ** 2 for c, s in zip(channels, strides))
    return values * np.dtype(dtype).itemsize + 4 * channels[-1] + 4


class PromptMemory(nnx.Module):
    """The bank: per level an (N, H, W, C) array of teacher features, the (N, C) retrieval keys and
    the (N,) dataset indices of the entries. Empty (N = 0) until :meth:`set` fills it."""

    def __init__(self, channels: Sequence[int], dtype: str = "float32"):
        if dtype not in BANK_DTYPES:
            raise ValueError(f"config.model.bank_dtype={dtype!r}; choose one of {BANK_DTYPES}")
        self.channels = tuple(channels)
        self.dtype = dtype
        self.features = nnx.List([PromptBank(jnp.zeros((0, 0, 0, c), dtype)) for c in self.channels])
        self.keys = PromptBank(jnp.zeros((0, self.channels[-1]), jnp.float32))
        self.entry_indices = PromptBank(jnp.zeros((0,), jnp.int32))

    @property
    def size(self) -> int:
        return self.entry_indices.shape[0]

    @property
    def nbytes(self) -> int:
        variables = [*self.features, self.keys, self.entry_indices]
        return sum(v[...].size * v[...].dtype.itemsize for v in variables)

    def set(self, features: Sequence[jax.Array], indices: jax.Array, keys: jax.Array | None = None) -> None:
        """Installs N entries: teacher features [F1, F2, F3] (each (N, H, W, C)) and their dataset
        indices. ``keys`` defaults to :func:`pooled_key` of F3 as given; pass keys computed from the
        float32 features when ``features`` were already cast to float16."""
        if len(features) != len(self.channels):
            raise ValueError(f"prompt bank: expected {len(self.channels)} feature levels, got {len(features)}")
        indices = np.asarray(indices)
        count = indices.shape[0] if indices.ndim == 1 else -1
        for level, (f, c) in enumerate(zip(features, self.channels)):
            if f.ndim != 4 or f.shape[0] != count or f.shape[-1] != c:
                raise ValueError(f"prompt bank level {level + 1}: expected ({count}, H, W, {c}) matching "
                                 f"{indices.shape} indices, got {tuple(f.shape)}")
        if len(np.unique(indices)) != count:
            raise ValueError("prompt bank: dataset indices must be unique (one entry per training image); "
                             "build the bank from one pass over the training split")
        if keys is None:
            keys = pooled_key(features[-1])
        for variable, f in zip(self.features, features):
            variable.set_value(jnp.asarray(f, self.dtype))
        self.keys.set_value(jnp.asarray(keys, jnp.float32))
        self.entry_indices.set_value(jnp.asarray(indices, jnp.int32))

    def retrieve(self, query_deepest: jax.Array, *, top_k: int,
                 exclude_indices: jax.Array | None = None) -> tuple[jax.Array, list[jax.Array]]:
        """Nearest entries to each query by cosine similarity of pooled teacher F3.

        Returns the (B, top_k) bank positions, best first, and per level the mean of the top_k
        entries' features in float32. Entries whose dataset index equals the query's entry of
        ``exclude_indices`` are never returned (training: an image must not get itself as prompt).
        """
        needed = top_k + (exclude_indices is not None)
        if self.size < needed:
            raise ValueError(
                f"the prompt bank holds {self.size} entries but retrieval needs at least {needed} "
                f"(top_k={top_k}{', plus the excluded image itself' if exclude_indices is not None else ''}); "
                "call model.prepare(training batches) first, or raise config.model.bank_size / lower top_k")
        similarity = jnp.matmul(pooled_key(query_deepest), self.keys[...].T,
                                precision=jax.lax.Precision.HIGHEST)
        if exclude_indices is not None:
            is_self = self.entry_indices[...][None, :] == jnp.asarray(exclude_indices)[:, None]
            similarity = jnp.where(is_self, -jnp.inf, similarity)
        _, positions = jax.lax.top_k(similarity, top_k)
        prompts = [jnp.mean(f[...][positions].astype(jnp.float32), axis=1) for f in self.features]
        return positions, prompts


class CrossAttentionFusion(nnx.Module):
    """``x + W_o softmax(Q K^T / sqrt(C)) V``: each decoder position attends over all positions of the
    retrieved prompt. Q from the decoder features, K and V from the prompt; the projections are 1x1
    (a Linear over the channel axis). One head, no positional encoding: the prompt is matched by
    content, so a part that moved between the prompt image and the input is still found."""

    def __init__(self, channels: int, prompt_channels: int, rngs: nnx.Rngs):
        self.query = nnx.Linear(channels, channels, rngs=rngs)
        self.key = nnx.Linear(prompt_channels, channels, rngs=rngs)
        self.value = nnx.Linear(prompt_channels, channels, rngs=rngs)
        self.out = nnx.Linear(channels, channels, rngs=rngs)

    def __call__(self, x: jax.Array, prompt: jax.Array) -> jax.Array:
        b, h, w, c = x.shape

        def tokens(t: jax.Array) -> jax.Array:  # (B, H, W, C) -> (B, HW, heads=1, C)
            return t.reshape(b, -1, 1, c)

        attended = jax.nn.dot_product_attention(
            tokens(self.query(x)), tokens(self.key(prompt)), tokens(self.value(prompt)))
        return x + self.out(attended.reshape(b, h, w, c))
