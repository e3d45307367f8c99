"""The model registry and the interface the trainer, evaluator and benchmarks rely on.

Every method is an ``nnx.Module`` with a frozen ``teacher`` attribute, ``__call__(images, *, train,
indices=None) -> Features`` and ``loss(features, images) -> (scalar, terms)``
(docs/architecture.md "Models"). Modules know nothing of configs; ``build_model`` maps one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from rgpkd_jax.models.features import Features
from rgpkd_jax.models.rd4ad import RD4AD
from rgpkd_jax.models.rgpkd import RGPKD

__all__ = ["Features", "FROZEN", "METHODS", "TRAINABLE", "build_model", "count_params", "set_compute_dtype"]


# The optimised variables: every parameter outside the frozen teacher.
TRAINABLE = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("teacher")))
FROZEN = nnx.All(nnx.Param, nnx.PathContains("teacher"))

METHODS = ("rd4ad", "sk_rd4ad", "rgpkd")
COMPUTE_DTYPES = ("float32", "bfloat16")
# Layers whose `dtype` attribute is the dtype they compute in (parameters stay float32).
_COMPUTING_LAYERS = (nnx.Conv, nnx.ConvTranspose, nnx.BatchNorm, nnx.Linear)


def build_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    """Builds ``config.method``'s model with a randomly initialised teacher (the trainer loads the
    teacher's weights afterwards), computing in ``config.model.compute_dtype``."""
    options = config.model.to_dict()
    compute_dtype = options.pop("compute_dtype", "float32")
    model = _build(config.method, config.teacher.arch, options, rngs)
    set_compute_dtype(model, compute_dtype)
    return model


def set_compute_dtype(model: nnx.Module, compute_dtype: str) -> None:
    """Makes every conv, deconv, BN and linear layer compute in ``compute_dtype``.

    Parameters, BN statistics and optimiser state stay float32 (BN reduces in float32 whatever
    its dtype); models return float32 features (``Features.in_float32``). bfloat16 is for GPUs
    and TPUs: on CPU it is emulated and slower.
    """
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"unknown config.model.compute_dtype {compute_dtype!r}; choose one of "
                         f"{COMPUTE_DTYPES}")
    dtype = None if compute_dtype == "float32" else jnp.dtype(compute_dtype)
    for _, module in nnx.iter_modules(model):
        if isinstance(module, _COMPUTING_LAYERS):
            module.dtype = dtype


def _build(method: str, arch: str, options: dict, rngs: nnx.Rngs) -> nnx.Module:
    if method in ("rd4ad", "sk_rd4ad"):
        # SK-RD4AD official single-class default rate 0.05; its `--class all` run overrides it to 0.005.
        return RD4AD(arch, rngs=rngs, skips=options["skips"], loss=options["loss"],
                     consistency_rate=options["consistency_rate"],
                     include_unused_conv4=options.get("include_unused_conv4", False))
    if method == "rgpkd":
        return RGPKD(arch, rngs=rngs, **options)
    raise ValueError(f"unknown config.method {method!r}; choose one of {METHODS}")


def _size(state: nnx.State) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(state)))


def count_params(model: nnx.Module) -> dict[str, int]:
    """Parameter counts (BN statistics excluded): trainable (student side) and frozen (teacher).
    Works on an ``nnx.eval_shape`` model too, so large models need not be allocated."""
    return {"trainable": _size(nnx.state(model, TRAINABLE)), "frozen": _size(nnx.state(model, FROZEN))}
