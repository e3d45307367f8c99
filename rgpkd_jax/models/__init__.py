"""The model registry and the interface the trainer, evaluator and benchmarks rely on.

Every method is an ``nnx.Module`` with a frozen ``teacher`` attribute, ``__call__(images, *, train,
indices=None) -> Features`` and ``loss(features, images) -> (scalar, terms)``
(docs/architecture.md "Models"). Modules know nothing of configs; ``build_model`` maps one.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from flax import nnx


class Features(NamedTuple):
    """What a model returns: paired feature lists, shallow to deep (``teacher[i]`` and
    ``student[i]`` have equal shapes), and the reconstruction (RGPKD) or None."""

    teacher: list[jax.Array]
    student: list[jax.Array]
    reconstruction: jax.Array | None = None


# The optimised variables: every parameter outside the frozen teacher.
TRAINABLE = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("teacher")))
FROZEN = nnx.All(nnx.Param, nnx.PathContains("teacher"))

METHODS = ("rd4ad", "sk_rd4ad", "rgpkd")


def build_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    """Builds ``config.method``'s model with a randomly initialised teacher (the trainer loads the
    teacher's weights afterwards)."""
    if config.method in ("rd4ad", "sk_rd4ad"):
        from rgpkd_jax.models.rd4ad import RD4AD
        m = config.model
        # SK-RD4AD official single-class default rate 0.05; its `--class all` run overrides it to 0.005.
        return RD4AD(config.teacher.arch, rngs=rngs, skips=m.skips, loss=m.loss,
                     consistency_rate=m.consistency_rate,
                     include_unused_conv4=m.get("include_unused_conv4", False))
    if config.method == "rgpkd":
        from rgpkd_jax.models.rgpkd import RGPKD
        return RGPKD(config.teacher.arch, rngs=rngs, **config.model.to_dict())
    raise ValueError(f"unknown config.method {config.method!r}; choose one of {METHODS}")


def _size(state: nnx.State) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(state)))


def count_params(model: nnx.Module) -> dict[str, int]:
    """Parameter counts (BN statistics excluded): trainable (student side) and frozen (teacher).
    Works on an ``nnx.eval_shape`` model too, so large models need not be allocated."""
    return {"trainable": _size(nnx.state(model, TRAINABLE)), "frozen": _size(nnx.state(model, FROZEN))}
