"""Models: the method protocol (`method.py`), the registry of methods (`registry.py`) and
`build_model`, which maps a config to a model (docs/architecture.md "Models")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from rgpkd_jax.models import conv_ops
from rgpkd_jax.models.features import Features
from rgpkd_jax.models.method import FROZEN, NOT_TRAINED, TRAINABLE, Frozen, Method
from rgpkd_jax.models.registry import get_method, list_methods, model_class
from rgpkd_jax.models.remat import set_remat

__all__ = ["Features", "FROZEN", "Frozen", "Method", "NOT_TRAINED", "TRAINABLE", "build_model", "count_params",
           "get_method", "list_methods", "model_class", "set_compute_dtype"]

COMPUTE_DTYPES = ("float32", "bfloat16", "float64")
# Layers whose `dtype` attribute is the dtype they compute in.
_COMPUTING_LAYERS = (nnx.Conv, nnx.ConvTranspose, nnx.BatchNorm, nnx.Linear)


def build_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> Method:
    """Builds ``config.method``'s model (`registry.model_class`) with a randomly initialised teacher
    (the caller loads its weights), its layers built by ``config.model.conv_impl`` (resolved here,
    once; the model's ``conv_impl`` attribute says to what), its BNs' running variance updated as
    ``config.model.bn_running_var`` says, computing in ``config.model.compute_dtype``, and its
    decoder blocks recomputed in the backward pass if ``config.model.remat`` says so."""
    model_config = config.model
    compute_dtype = model_config.get("compute_dtype", "float32")
    _check_compute_dtype(compute_dtype)
    ops = conv_ops.resolve(model_config.get("conv_impl", "auto"), model_config.get("bn_running_var", "unbiased"))
    model = model_class(config.method).from_config(config, rngs=rngs, ops=ops)
    set_compute_dtype(model, compute_dtype)
    set_remat(model, model_config.get("remat", "none"))
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


def _size(state: nnx.State) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(state)))


def count_params(model: nnx.Module) -> dict[str, int]:
    """Parameter counts (BN statistics excluded): trainable (student side) and frozen (teacher).
    Works on an ``nnx.eval_shape`` model too, so large models need not be allocated."""
    return {"trainable": _size(nnx.state(model, TRAINABLE)), "frozen": _size(nnx.state(model, FROZEN))}
