"""The model registry and the interface the trainer, evaluator and benchmarks rely on.

Every method is an ``nnx.Module`` with a frozen ``teacher`` attribute, ``__call__(images, *, train,
indices=None, teacher_features=None) -> Features`` and ``loss(features, images) -> (scalar, terms)``
(docs/architecture.md "Models"). Modules know nothing of configs; ``build_model`` maps one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from rgpkd_jax.models import conv_ops
from rgpkd_jax.models.features import Features
from rgpkd_jax.models.prompt import PromptBank
from rgpkd_jax.models.rd4ad import RD4AD
from rgpkd_jax.models.remat import set_remat
from rgpkd_jax.models.rgpkd import RGPKD

__all__ = ["Features", "FROZEN", "METHODS", "NOT_TRAINED", "TRAINABLE", "build_model", "count_params", "set_compute_dtype"]


# The optimised variables: every parameter outside the frozen teacher.
TRAINABLE = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("teacher")))
FROZEN = nnx.All(nnx.Param, nnx.PathContains("teacher"))
# What training never changes: the frozen teacher (parameters and BN statistics) and RGPKD's prompt
# bank. The train step takes it as an argument apart from the trained state, never donated nor
# returned; checkpoints rebuild it instead of saving it (docs/checkpoints.md).
NOT_TRAINED = nnx.Any(nnx.PathContains("teacher"), PromptBank)

METHODS = ("rd4ad", "sk_rd4ad", "rgpkd")
COMPUTE_DTYPES = ("float32", "bfloat16", "float64")
# Layers whose `dtype` attribute is the dtype they compute in.
_COMPUTING_LAYERS = (nnx.Conv, nnx.ConvTranspose, nnx.BatchNorm, nnx.Linear)


def build_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    """Builds ``config.method``'s model with a randomly initialised teacher (the trainer loads the
    teacher's weights afterwards), its layers built by ``config.model.conv_impl`` (resolved here,
    once; the model's ``conv_impl`` attribute says to what), its BNs' running variance updated as
    ``config.model.bn_running_var`` says, computing in ``config.model.compute_dtype``, and its
    decoder blocks recomputed in the backward pass if ``config.model.remat`` says so."""
    options = config.model.to_dict()
    compute_dtype = options.pop("compute_dtype", "float32")
    _check_compute_dtype(compute_dtype)
    remat = options.pop("remat", "none")
    ops = conv_ops.resolve(options.pop("conv_impl", "auto"), options.pop("bn_running_var", "unbiased"))
    model = _build(config.method, config.teacher.arch, options, rngs, ops)
    set_compute_dtype(model, compute_dtype)
    set_remat(model, remat)
    return model


def _check_compute_dtype(compute_dtype: str) -> None:
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"unknown config.model.compute_dtype {compute_dtype!r}; choose one of "
                         f"{COMPUTE_DTYPES}")
    if compute_dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("config.model.compute_dtype 'float64' needs 64-bit JAX: set "
                         "jax.config.update('jax_enable_x64', True) (or JAX_ENABLE_X64=1) first")


def set_compute_dtype(model: nnx.Module, compute_dtype: str) -> None:
    """Makes every conv, deconv, BN and linear layer compute in ``compute_dtype``.

    float32 and bfloat16: parameters, BN statistics and optimiser state stay float32 (BN reduces
    in at least float32 whatever its dtype); models return float32 features
    (``Features.at_least_float32``). bfloat16 is for GPUs and TPUs: on CPU it is emulated and slower.

    float64 (needs ``jax_enable_x64``) casts the parameters and BN statistics to float64 too, so
    the whole model computes in float64: for tests that compare runs whose float32 reduction order
    differs. Going back to float32 or bfloat16 casts them back to float32.
    """
    _check_compute_dtype(compute_dtype)
    dtype = {"float32": None, "bfloat16": jnp.bfloat16, "float64": jnp.float64}[compute_dtype]
    for _, module in nnx.iter_modules(model):
        if isinstance(module, _COMPUTING_LAYERS):
            module.dtype = dtype
    cast_params(model, jnp.float64 if compute_dtype == "float64" else jnp.float32)


def cast_params(model: nnx.Module, dtype) -> None:
    """Casts the model's floating parameters and BN statistics to ``dtype`` in place."""
    for _, variable in nnx.iter_graph(model):
        if isinstance(variable, (nnx.Param, nnx.BatchStat)):
            value = variable.get_value()
            if jnp.issubdtype(value.dtype, jnp.floating) and value.dtype != dtype:
                variable.set_value(value.astype(dtype))


def _build(method: str, arch: str, options: dict, rngs: nnx.Rngs,
           ops: conv_ops.XlaLayers) -> nnx.Module:
    if method in ("rd4ad", "sk_rd4ad"):
        # SK-RD4AD official single-class default rate 0.05; its `--class all` run overrides it to 0.005.
        return RD4AD(arch, rngs=rngs, skips=options["skips"], loss=options["loss"],
                     consistency_rate=options["consistency_rate"],
                     consistency_sizes=options.get("consistency_sizes", "fixed"),
                     include_unused_conv4=options.get("include_unused_conv4", False), ops=ops)
    if method == "rgpkd":
        return RGPKD(arch, rngs=rngs, ops=ops, **options)
    raise ValueError(f"unknown config.method {method!r}; choose one of {METHODS}")


def _size(state: nnx.State) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(state)))


def count_params(model: nnx.Module) -> dict[str, int]:
    """Parameter counts (BN statistics excluded): trainable (student side) and frozen (teacher).
    Works on an ``nnx.eval_shape`` model too, so large models need not be allocated."""
    return {"trainable": _size(nnx.state(model, TRAINABLE)), "frozen": _size(nnx.state(model, FROZEN))}
