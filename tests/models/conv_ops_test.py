"""conv_ops: the hand-written gradients equal JAX's own derivatives of the library operations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from rgpkd_jax.models import conv_ops

NHWC = ("NHWC", "HWIO", "NHWC")
GRAD_RTOL = 2e-6  # relative to the largest gradient entry: float32 summation order only


def _grads(fn, *args):
    """Gradients of a scalar that mixes the output non-linearly, for every argument."""
    weights = jax.random.normal(jax.random.key(9), jax.eval_shape(fn, *args).shape)
    return jax.grad(lambda *a: jnp.sum(jnp.sin(fn(*a)) * weights), argnums=tuple(range(len(args))))(*args)


def _assert_close(actual, expected):
    for a, e in zip(actual, expected):
        scale = float(jnp.abs(e).max())
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=0, atol=GRAD_RTOL * scale)


@pytest.mark.parametrize("batch,size,kernel,stride", [
    (16, 12, 3, 1), (16, 12, 3, 2), (6, 9, 3, 1), (3, 9, 3, 2),  # chunked / unchunked kernel grads
    (4, 9, 1, 1), (16, 15, 1, 2), (2, 10, 7, 2)])                 # 1x1 matmul paths, the stem
def test_conv_values_and_gradients_equal_lax(batch, size, kernel, stride):
    pad = kernel // 2
    x = jax.random.normal(jax.random.key(0), (batch, size, size, 5))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 5, 7))
    args = ((stride, stride), ((pad, pad), (pad, pad)))

    def reference(x, w):
        return lax.conv_general_dilated(x, w, *args, dimension_numbers=NHWC)

    def ours(x, w):
        return conv_ops.conv_general_dilated(x, w, *args, dimension_numbers=NHWC)

    np.testing.assert_allclose(ours(x, w), reference(x, w), rtol=1e-5, atol=1e-5)
    _assert_close(_grads(ours, x, w), _grads(reference, x, w))


def test_conv_falls_back_to_lax_for_other_forms():
    """Grouped, dilated, NCHW and 'SAME'-padded convolutions go to lax unchanged."""
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
    w = jax.random.normal(jax.random.key(1), (3, 3, 2, 6))
    kwargs = dict(window_strides=(1, 1), padding="SAME", dimension_numbers=NHWC, feature_group_count=2)
    np.testing.assert_array_equal(conv_ops.conv_general_dilated(x, w, **kwargs),
                                  lax.conv_general_dilated(x, w, **kwargs))


def test_conv_transpose_2x2_equals_lax_conv_transpose():
    x = jax.random.normal(jax.random.key(0), (3, 5, 6, 4))
    k = jax.random.normal(jax.random.key(1), (2, 2, 4, 7))

    def reference(x, k):
        return lax.conv_transpose(x, k, (2, 2), "VALID", dimension_numbers=NHWC)

    np.testing.assert_array_equal(conv_ops.conv_transpose_2x2(x, k), reference(x, k))
    _assert_close(_grads(conv_ops.conv_transpose_2x2, x, k), _grads(reference, x, k))


def test_batch_norm_equals_nnx_batch_norm_in_both_modes():
    x = jax.random.normal(jax.random.key(0), (4, 5, 6, 7)) * 3 + 1
    ours = conv_ops.BatchNorm(7, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
    library = nnx.BatchNorm(7, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
    for m in (ours, library):
        m.scale[...] = jnp.arange(1.0, 8.0)
        m.bias[...] = jnp.arange(7.0) / 10

    def grads(module):
        return nnx.grad(lambda m, x: jnp.sum(jnp.sin(m(x, use_running_average=False))
                                             * jnp.cos(x)), argnums=(0, 1))(nnx.clone(module), x)

    (ours_params, ours_dx), (lib_params, lib_dx) = grads(ours), grads(library)
    _assert_close([ours_dx, ours_params["scale"][...], ours_params["bias"][...]],
                  [lib_dx, lib_params["scale"][...], lib_params["bias"][...]])
    for train in (True, False):  # training updates the running statistics identically
        np.testing.assert_allclose(ours(x, use_running_average=not train),
                                   library(x, use_running_average=not train), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ours.mean[...], library.mean[...], rtol=1e-6)
        np.testing.assert_allclose(ours.var[...], library.var[...], rtol=1e-6)
