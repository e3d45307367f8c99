"""conv_ops: the hand-written gradients equal JAX's own derivatives of the library operations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from rgpkd_jax.models import cast_params, conv_ops

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


@pytest.mark.parametrize("batch,size,kernel,stride,chunk", [
    (16, 12, 3, 1, True), (16, 12, 3, 2, True), (6, 9, 3, 1, True), (3, 9, 3, 2, True),  # chunked /
    (16, 12, 3, 1, False),                      # unchunked kernel grads (several devices: unchunked)
    (4, 9, 1, 1, True), (16, 15, 1, 2, True), (2, 10, 7, 2, True)])  # 1x1 matmul paths, the stem
def test_conv_values_and_gradients_equal_lax(batch, size, kernel, stride, chunk):
    pad = kernel // 2
    x = jax.random.normal(jax.random.key(0), (batch, size, size, 5))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 5, 7))
    args = ((stride, stride), ((pad, pad), (pad, pad)))

    def reference(x, w):
        return lax.conv_general_dilated(x, w, *args, dimension_numbers=NHWC)

    def ours(x, w):
        return conv_ops.CpuConv(chunk)(x, w, *args, dimension_numbers=NHWC)

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
    ours = conv_ops.BatchNorm(7, momentum=0.9, epsilon=1e-5, unbiased_running_var=False, rngs=nnx.Rngs(0))
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


def test_chunked_bfloat16_kernel_gradient_is_as_accurate_as_lax():
    """bfloat16 inputs, batch 16 (8 chunks): the kernel gradient against a float64 reference.

    XLA:CPU computes a bfloat16 convolution in float32 and rounds the result once, so lax's error
    is one bfloat16 rounding, at most 2^-8 (bfloat16's unit roundoff, 8 significant bits) of the
    largest entry. Ours sums float32 chunk gradients and rounds once too: its error may exceed
    lax's only by float32 summation order, bounded here by 1 % of lax's error (measured: equal).
    Summing bfloat16 chunk gradients in bfloat16, as before, was 3.5x (max) and 2.5x (rms) worse.
    """
    x = jax.random.normal(jax.random.key(0), (16, 16, 16, 32))
    g = jax.random.normal(jax.random.key(1), (16, 16, 16, 32))
    w = jnp.zeros((3, 3, 32, 32))
    args = ((1, 1), ((1, 1), (1, 1)))

    def kernel_gradient(conv, dtype):
        x_, g_, w_ = (a.astype(dtype) for a in (x.astype(jnp.bfloat16), g.astype(jnp.bfloat16), w))
        out = jax.vjp(lambda w: conv(x_, w, *args, dimension_numbers=NHWC), w_)[1](g_)[0]
        assert out.dtype == dtype
        return np.asarray(out.astype(jnp.float32), np.float64)

    with jax.enable_x64(True):
        reference = kernel_gradient(lax.conv_general_dilated, jnp.float64)
    ours = kernel_gradient(conv_ops.CpuConv(True), jnp.bfloat16)
    library = kernel_gradient(lax.conv_general_dilated, jnp.bfloat16)
    scale = np.abs(reference).max()
    ours_error, library_error = (np.abs(a - reference).max() for a in (ours, library))
    assert library_error <= 2.0**-8 * scale
    assert ours_error <= 1.01 * library_error, (ours_error / scale, library_error / scale)
    ours_rms, library_rms = (np.sqrt(np.mean((a - reference) ** 2)) for a in (ours, library))
    assert ours_rms <= 1.01 * library_rms, (ours_rms, library_rms)


def test_batch_norm_keeps_float64_statistics():
    """compute_dtype float64: statistics are computed in at least float32, never demoted."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (4, 3, 3, 5), jnp.float64) * 3 + 1
        bn = conv_ops.BatchNorm(5, momentum=0.9, epsilon=1e-5, dtype=jnp.float64, rngs=nnx.Rngs(0))
        cast_params(bn, jnp.float64)  # as set_compute_dtype does: nnx makes statistics float32
        y = bn(x, use_running_average=False)
        assert y.dtype == bn.mean.dtype == bn.var.dtype == jnp.float64
        np.testing.assert_allclose(bn.mean[...], 0.1 * np.mean(np.asarray(x), axis=(0, 1, 2)), rtol=1e-14)
        dx = jax.grad(lambda x: jnp.sum(jnp.sin(conv_ops.batch_norm_train(x, bn.scale[...],
                                                                        bn.bias[...], 1e-5)[0])))(x)
        assert dx.dtype == jnp.float64


# Running variance against torch: after k updates it is a convex combination of the initial 1 and
# k batch variances. Each batch variance is computed in float32 over n = 4*5*6 = 120 values per
# channel (both two-pass, mean((x - mean)^2)): rounding error at most about log2(n) * eps32 *
# (1 + mean^2/var) = 7 * 1.2e-7 * 1.12 ~ 1e-6 relative (inputs 3 * N(0, 1) + 1: mean^2/var ~ 1/9).
# RUNNING_VAR_RTOL = 1e-5 leaves a 10x margin, and is 400x below the n/(n-1) effect being tested
# (0.1 * var/(n - 1) / running var ~ 4e-3 after one update).
RUNNING_VAR_RTOL = 1e-5
BN_BUILDERS = {"xla": conv_ops.XlaLayers, "cpu": conv_ops.CpuLayers}


def _training_batches():
    return [np.asarray(jax.random.normal(jax.random.key(k), (4, 5, 6, 7)) * 3 + 1) for k in range(3)]


def _train_running_stats(bn):
    for x in _training_batches():
        bn(jnp.asarray(x), use_running_average=False)
    return np.asarray(bn.mean[...]), np.asarray(bn.var[...])


@pytest.mark.parametrize("impl", sorted(BN_BUILDERS))
def test_unbiased_running_var_equals_torch_batch_norm_2d(impl, torch):
    """The default (config.model.bn_running_var='unbiased'): PyTorch's running statistics."""
    bn = BN_BUILDERS[impl]().batch_norm(7, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
    mean, var = _train_running_stats(bn)
    reference = torch.nn.BatchNorm2d(7, momentum=0.1, eps=1e-5).train()
    with torch.no_grad():
        for x in _training_batches():
            reference(torch.from_numpy(x).permute(0, 3, 1, 2))
    np.testing.assert_allclose(var, reference.running_var.numpy(), rtol=RUNNING_VAR_RTOL)
    np.testing.assert_allclose(mean, reference.running_mean.numpy(), rtol=RUNNING_VAR_RTOL, atol=1e-6)


@pytest.mark.parametrize("impl", sorted(BN_BUILDERS))
def test_biased_running_var_equals_nnx_batch_norm(impl):
    bn = BN_BUILDERS[impl](unbiased_running_var=False).batch_norm(7, momentum=0.9, epsilon=1e-5,
                                                                  rngs=nnx.Rngs(0))
    library = nnx.BatchNorm(7, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
    for ours, theirs in zip(_train_running_stats(bn), _train_running_stats(library)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def test_unbiased_running_var_refuses_one_value_per_channel():
    bn = conv_ops.XlaLayers().batch_norm(3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="more than one value per channel"):
        bn(jnp.ones((1, 1, 1, 3)), use_running_average=False)
