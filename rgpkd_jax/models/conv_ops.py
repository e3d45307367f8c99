"""How the models compute their convolutions, batch norms and 2x2 transposed convolutions.

Two implementations with the same parameters, state and values (`config.model.conv_impl`):

- ``"xla"``: the library layers, `nnx.Conv`, `nnx.ConvTranspose` and `nnx.BatchNorm`, with JAX's
  own derivatives. On GPU and TPU these are cuDNN convolutions and XLA's fused batch norm.
- ``"cpu"``: rewrites that XLA:CPU runs faster (benchmarks/NOTES.md, findings 1, 2, 6 and 7; they
  were measured only there). 1x1 convolutions are matmuls, kernel gradients are summed over chunks
  of two images, the 2x2 stride-2 transposed convolution has matmul gradients, and the training
  batch norm has a hand-written VJP. On a GPU they would replace single library kernels by many
  small ones.

Every batch norm updates its running variance with the unbiased batch variance, as PyTorch's
``BatchNorm2d`` does (``config.model.bn_running_var="unbiased"``, the default), or with the biased
one, as `nnx.BatchNorm` does (``"biased"``); docs/reference.md §7.2.

``"auto"`` (the default) is ``"cpu"`` when JAX's default backend is the CPU and ``"xla"``
otherwise. `resolve` turns the config value into an `XlaLayers` or `CpuLayers` object once,
when the model is built, and the model constructors hand it down to every layer they create, as
flax's ImageNet example hands down its ``conv``. Either object builds subclasses of the nnx
layers under the same attribute names, so checkpoints and `rgpkd_jax.convert` see the same tree.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

CONV_IMPLS = ("auto", "xla", "cpu")
BN_RUNNING_VARS = ("unbiased", "biased")
KERNEL_GRAD_CHUNK = 2  # images per kernel-gradient convolution (measured best of 2, 4, 8)
_NHWC = ("NHWC", "HWIO", "NHWC")


def resolve(conv_impl: str, bn_running_var: str = "unbiased") -> "XlaLayers":
    """``config.model.conv_impl`` and ``.bn_running_var`` -> the layer builders the models use
    (see the module doc).

    ``"cpu"`` sums kernel gradients over chunks of images only in a one-device process. With
    several devices the batch is sharded over them, and chunks sliced from the global batch made
    XLA's partitioner move activations between devices (collective-permutes); chunks taken
    within each device's shard (a reshape that keeps the sharded axis) avoid that, but each
    chunk's partial kernel gradient is then all-reduced separately, multiplying the bytes by the
    chunks per device. Unchunked, each device contracts its own images and one all-reduce per
    kernel sums them, as with "xla".
    """
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"unknown config.model.conv_impl {conv_impl!r}; choose one of {CONV_IMPLS}")
    if bn_running_var not in BN_RUNNING_VARS:
        raise ValueError(f"unknown config.model.bn_running_var {bn_running_var!r}; choose one of "
                         f"{BN_RUNNING_VARS}")
    unbiased = bn_running_var == "unbiased"
    if conv_impl == "auto":
        conv_impl = "cpu" if jax.default_backend() == "cpu" else "xla"
    if conv_impl == "xla":
        return XlaLayers(unbiased_running_var=unbiased)
    return CpuLayers(unbiased_running_var=unbiased, chunk_kernel_gradients=jax.device_count() == 1)


@dataclasses.dataclass(frozen=True)
class XlaLayers:
    """``conv_impl="xla"``: the nnx layers as they are, except that with
    ``unbiased_running_var`` (PyTorch's update, the default) a BN is a `RunningVarBatchNorm`."""

    name: ClassVar[str] = "xla"
    unbiased_running_var: bool = True

    def conv(self, in_features: int, out_features: int, kernel_size, **kwargs) -> nnx.Conv:
        return nnx.Conv(in_features, out_features, kernel_size, **kwargs)

    def batch_norm(self, num_features: int, **kwargs) -> nnx.BatchNorm:
        """Batch statistics with the two-pass variance, as `_moments` (docs/architecture.md,
        "Numerics: float32 gradients")."""
        if self.unbiased_running_var:
            return RunningVarBatchNorm(num_features, use_fast_variance=False, **kwargs)
        return nnx.BatchNorm(num_features, use_fast_variance=False, **kwargs)

    def deconv2x2(self, in_features: int, out_features: int, **kwargs) -> nnx.ConvTranspose:
        """A bias-free 2x2 stride-2 'VALID' transposed convolution: doubles H and W exactly."""
        return nnx.ConvTranspose(in_features, out_features, (2, 2), strides=(2, 2), padding="VALID",
                                 use_bias=False, **kwargs)


@dataclasses.dataclass(frozen=True)
class CpuLayers(XlaLayers):
    """``conv_impl="cpu"``: the same layers computed by this module's XLA:CPU rewrites.
    ``chunk_kernel_gradients``: sum kernel gradients over chunks of images (one device only)."""

    name: ClassVar[str] = "cpu"
    chunk_kernel_gradients: bool = True

    def conv(self, in_features: int, out_features: int, kernel_size, **kwargs) -> nnx.Conv:
        return nnx.Conv(in_features, out_features, kernel_size,
                        conv_general_dilated=CpuConv(self.chunk_kernel_gradients), **kwargs)

    def batch_norm(self, num_features: int, **kwargs) -> nnx.BatchNorm:
        return BatchNorm(num_features, unbiased_running_var=self.unbiased_running_var,
                         use_fast_variance=False, **kwargs)

    def deconv2x2(self, in_features: int, out_features: int, **kwargs) -> nnx.ConvTranspose:
        return ConvTranspose2x2(in_features, out_features, (2, 2), strides=(2, 2), padding="VALID",
                                use_bias=False, **kwargs)


@dataclasses.dataclass(frozen=True)
class CpuConv:
    """`conv_general_dilated` with ``chunk_kernel_gradients`` fixed: what a "cpu" `nnx.Conv` calls.
    A value, not a closure, so that equally built models have equal graph definitions."""

    chunk_kernel_gradients: bool = True

    def __call__(self, *args, **kwargs):
        return conv_general_dilated(*args, chunk_kernel_gradients=self.chunk_kernel_gradients, **kwargs)


# ---- "cpu": convolutions whose gradients XLA:CPU runs at matmul speed --------------------------

def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None, out_sharding=None, *,
                         chunk_kernel_gradients: bool = True):
    """`lax.conv_general_dilated` with a faster kernel gradient for plain NHWC convolutions.

    XLA:CPU computes a kernel gradient as one convolution that contracts over batch x height x
    width; over 16 images of 64x64 that runs at a third of the rate of the same work split into
    chunks of two images, and a 1x1 kernel gradient runs 2-10x slower than the equivalent matmul
    (benchmarks/NOTES.md, findings 2 and 6). The forward and the input gradient are XLA's own.
    """
    plain = (out_sharding is None and _is_nhwc(lhs, rhs, dimension_numbers) and feature_group_count == 1
             and batch_group_count == 1 and _is_one(lhs_dilation) and _is_one(rhs_dilation)
             and not isinstance(padding, str) and preferred_element_type is None)
    if not plain:
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, precision, preferred_element_type,
            out_sharding=out_sharding)
    if rhs.shape[:2] == (1, 1) and tuple(window_strides) == (1, 1) and _no_padding(padding):
        # A 1x1 convolution is a matmul over channels; XLA:CPU runs it 1.5-3x faster as one
        # (forward and both gradients), see benchmarks/NOTES.md finding 6.
        return jnp.einsum("nhwc,co->nhwo", lhs, rhs[0, 0], precision=precision)
    return _conv(lhs, rhs, tuple(window_strides), tuple(tuple(p) for p in padding), precision,
                 chunk_kernel_gradients)


def _no_padding(padding) -> bool:
    return all(p == (0, 0) for p in (tuple(q) for q in padding))


def _is_one(dilation) -> bool:
    return dilation is None or all(d == 1 for d in dilation)


def _is_nhwc(lhs, rhs, dimension_numbers) -> bool:
    if lhs.ndim != 4:
        return False
    wanted = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    return lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == wanted


def _plain_conv(x, w, strides, padding, precision):
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC,
                                    precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv(x, w, strides, padding, precision, chunk):
    return _plain_conv(x, w, strides, padding, precision)


def _conv_forward(x, w, strides, padding, precision, chunk):
    return _plain_conv(x, w, strides, padding, precision), (x, w)


def _conv_backward(strides, padding, precision, chunk, residuals, g):
    x, w = residuals
    conv = functools.partial(_plain_conv, strides=strides, padding=padding, precision=precision)
    dx = jax.vjp(lambda x: conv(x, w), x)[1](g)[0]
    return dx, _kernel_gradient(x, g, w, strides, padding, conv, chunk)


_conv.defvjp(_conv_forward, _conv_backward)


def _kernel_gradient(x, g, w, strides, padding, conv, chunk):
    """d(sum(g * conv(x, w))) / dw: a matmul for unpadded 1x1 kernels, else (``chunk``) a sum over
    chunks of KERNEL_GRAD_CHUNK images, or one convolution.

    Chunks are computed and summed in at least float32 and the sum is rounded once to
    ``w.dtype``: in bfloat16 it is then as accurate as XLA's single convolution, which XLA:CPU
    also computes in float32. The convolution is linear in w, so the value of w does not enter.
    """
    accumulate = jnp.promote_types(w.dtype, jnp.float32)
    if w.shape[:2] == (1, 1) and _no_padding(padding):
        h, width = g.shape[1:3]
        taps = lax.slice(x, (0, 0, 0, 0), (x.shape[0], 1 + strides[0] * (h - 1),
                                           1 + strides[1] * (width - 1), x.shape[3]), (1, *strides, 1))
        grad = jnp.einsum("nhwc,nhwo->co", taps, g, preferred_element_type=accumulate)
        return grad[None, None].astype(w.dtype)
    batch = x.shape[0]
    if not chunk or batch <= KERNEL_GRAD_CHUNK or batch % KERNEL_GRAD_CHUNK:
        return jax.vjp(lambda w: conv(x, w), w)[1](g)[0]
    chunks = batch // KERNEL_GRAD_CHUNK
    wide = functools.partial(jnp.asarray, dtype=accumulate)
    grads = [jax.vjp(lambda w: conv(wide(xc), w), wide(w))[1](wide(gc))[0]
             for xc, gc in zip(jnp.split(x, chunks), jnp.split(g, chunks))]
    return functools.reduce(jnp.add, grads).astype(w.dtype)


@jax.custom_vjp
def conv_transpose_2x2(x, kernel):
    """`lax.conv_transpose` with a (2, 2, in, out) kernel, stride 2, 'VALID', NHWC; gradients as
    matmuls.

    The 2x2 windows do not overlap, so out[2i + a, 2j + b] = x[i, j] @ kernel[1 - a, 1 - b] (the
    kernel as `lax.conv_transpose` applies it): both gradients are single matmuls, where XLA:CPU
    would run the kernel gradient of the transposed convolution as a slow window-dilated one
    (~60x slower, benchmarks/NOTES.md finding 1). The forward stays XLA's own transposed
    convolution, which is faster than the matmul form.
    """
    return lax.conv_transpose(x, kernel, (2, 2), "VALID", dimension_numbers=_NHWC)


def _conv_transpose_2x2_forward(x, kernel):
    return conv_transpose_2x2(x, kernel), (x, kernel)


def _conv_transpose_2x2_backward(residuals, g):
    x, kernel = residuals
    b, h, w, _ = x.shape
    blocks = g.reshape(b, h, 2, w, 2, g.shape[-1])  # out[2i + a, 2j + b] -> blocks[:, i, a, j, b]
    flipped = kernel[::-1, ::-1]
    dx = jnp.einsum("bhiwjo,ijco->bhwc", blocks, flipped)
    dkernel = jnp.einsum("bhwc,bhiwjo->ijco", x, blocks)[::-1, ::-1]
    return dx, dkernel


conv_transpose_2x2.defvjp(_conv_transpose_2x2_forward, _conv_transpose_2x2_backward)


class ConvTranspose2x2(nnx.ConvTranspose):
    """`nnx.ConvTranspose` for bias-free 2x2 stride-2 'VALID' kernels computed by
    `conv_transpose_2x2`: same values and parameters."""

    def __call__(self, inputs: jax.Array) -> jax.Array:
        if self.kernel_size != (2, 2) or self.strides != (2, 2) or self.use_bias:
            raise ValueError("ConvTranspose2x2 is for bias-free 2x2 stride-2 transposed convolutions only")
        inputs, kernel = self.promote_dtype((inputs, self.kernel[...]), dtype=self.dtype)
        return conv_transpose_2x2(inputs, kernel)


class RunningVarBatchNorm(nnx.BatchNorm):
    """`nnx.BatchNorm` that updates its running variance as PyTorch's ``BatchNorm2d`` does, with
    the unbiased batch variance (x n / (n - 1), n values per channel), when
    ``unbiased_running_var``; else as `nnx.BatchNorm` (biased). Normalisation, parameters and
    state tree are `nnx.BatchNorm`'s (docs/reference.md §7.2)."""

    def __init__(self, num_features: int, *, unbiased_running_var: bool = True, **kwargs):
        super().__init__(num_features, **kwargs)
        self.unbiased_running_var = unbiased_running_var

    def __call__(self, x, use_running_average=None, *, mask=None):
        use_running_average = (self.use_running_average if use_running_average is None
                               else use_running_average)
        if use_running_average or not self.unbiased_running_var:
            return super().__call__(x, use_running_average, mask=mask)
        if mask is not None or self.axis_name is not None or self.axis not in (-1, x.ndim - 1):
            raise ValueError("config.model.bn_running_var='unbiased' supports a BN over the last "
                             "axis without mask or axis_name only; use 'biased'")
        # nnx normalises and updates both statistics with the biased variance; the variance
        # update is then redone from the saved running value.
        running_var = self.var[...]
        y = super().__call__(x, use_running_average, mask=mask)
        self.var[...] = running_var
        self._update_running_var(_moments(x)[1], x)
        return y

    def _update_running_var(self, batch_var, x):
        """Running variance <- momentum-weighted average with ``batch_var`` (biased, over all but the
        last axis of ``x``), made unbiased first if so configured."""
        if self.unbiased_running_var:
            count = x.size // x.shape[-1]
            if count < 2:
                raise ValueError(f"a training-mode BN needs more than one value per channel, got input "
                                 f"{x.shape}: use a larger batch (PyTorch raises the same error)")
            batch_var = batch_var * (count / (count - 1))
        self.var[...] = jax.lax.stop_gradient(
            self.momentum * self.var[...] + (1 - self.momentum) * batch_var.astype(self.var[...].dtype))


class BatchNorm(RunningVarBatchNorm):
    """`RunningVarBatchNorm` whose training-mode normalisation has a hand-written VJP.

    Same values, parameters and running statistics as `RunningVarBatchNorm` (statistics in at
    least float32, the variance in two passes: `_moments`). XLA:CPU's derivative of the library
    version runs the normalisation's backward as several large element-wise passes with re-laid-out copies;
    `batch_norm_train` needs two: one reduction and one element-wise pass (benchmarks/NOTES.md,
    finding 7).
    """

    def __call__(self, x, use_running_average=None, *, mask=None):
        use_running_average = (self.use_running_average if use_running_average is None
                               else use_running_average)
        if (use_running_average or mask is not None or self.axis_name is not None
                or self.scale is None or self.bias is None or self.axis not in (-1, x.ndim - 1)):
            return super().__call__(x, use_running_average, mask=mask)
        out_dtype = self.dtype or jnp.result_type(x, self.scale[...])
        y, mean, var = batch_norm_train(x, self.scale[...], self.bias[...], self.epsilon)
        self.mean[...] = jax.lax.stop_gradient(
            self.momentum * self.mean[...] + (1 - self.momentum) * mean)
        self._update_running_var(var, x)
        return y.astype(out_dtype)


def _statistics_dtype(x):
    """BN statistics are computed in at least float32 (as `nnx.BatchNorm`'s); float64 stays."""
    return jnp.promote_types(x.dtype, jnp.float32)


def _moments(x):
    """Per-channel mean and biased variance, the variance in two passes, mean((x - mean)^2), as
    PyTorch computes it: the one-pass E[x^2] - E[x]^2 loses log2(mean^2 / var) bits to
    cancellation; the extra read of x costs nothing measurable (docs/architecture.md,
    "Numerics: float32 gradients")."""
    axes = tuple(range(x.ndim - 1))
    x = x.astype(_statistics_dtype(x))
    mean = jnp.mean(x, axes)
    return mean, jnp.mean(jnp.square(x - mean), axes)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x, scale, bias, epsilon):
    """Batch-statistics normalisation over all but the last axis: (y, batch mean, batch variance)."""
    mean, var = _moments(x)
    y = (x.astype(mean.dtype) - mean) * (jax.lax.rsqrt(var + epsilon) * scale) + bias
    return y, mean, var


def _batch_norm_train_forward(x, scale, bias, epsilon):
    y, mean, var = batch_norm_train(x, scale, bias, epsilon)
    return (y, mean, var), (x, mean, jax.lax.rsqrt(var + epsilon), scale)


def _batch_norm_train_backward(epsilon, residuals, cotangents):
    """The statistics only feed the running averages, which carry no gradient: their cotangents
    are ignored."""
    x, mean, inv_std, scale = residuals
    g = cotangents[0].astype(mean.dtype)
    axes = tuple(range(x.ndim - 1))
    count = x.size // x.shape[-1]
    normalised = (x.astype(mean.dtype) - mean) * inv_std
    dbias = jnp.sum(g, axes)
    dscale = jnp.sum(g * normalised, axes)
    dx = (scale * inv_std) * (g - (dbias + normalised * dscale) / count)
    return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(scale.dtype)


batch_norm_train.defvjp(_batch_norm_train_forward, _batch_norm_train_backward)
