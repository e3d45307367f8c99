"""`config.model.conv_impl`: "xla" (the nnx library layers) and "cpu" (conv_ops' XLA:CPU rewrites)
build the same parameter tree and compute the same values; "auto" picks "cpu" on a CPU backend;
and "cpu" on a data-parallel mesh of several devices communicates only by all-reduces.

The value comparisons run in float64 (`compute_dtype="float64"`), where the two implementations
differ only by the order of their float64 sums. A sum of n terms in another order differs by at
most n * 2^-53 * sum(|terms|) (Higham, "Accuracy and Stability of Numerical Algorithms", 4.2).
The longest sums here have n = 4 images x 64 x 64 pixels = 16384 terms (the reconstruction
head's kernel gradient), so n * 2^-53 = 1.8e-12, and every value passes through fewer than 50
such sums: F64_RTOL = 1e-10 of the largest entry bounds the difference (measured: 5e-15).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rgpkd_jax import torch_state
from rgpkd_jax.models import TRAINABLE, build_model, conv_ops, model_class, set_compute_dtype
from tests.helpers import METHODS, prepare_on, tiny_config, training_loss

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
F64_RTOL = 1e-10
# A gradient that is zero up to rounding (the attention key bias: softmax ignores a shift shared by
# all logits) has only rounding noise as its own scale; differences are measured against at least
# this fraction of the largest gradient entry of the whole model.
SCALE_FLOOR = 1e-3



def _model(method: str, ops: conv_ops.XlaLayers):
    """The method's tiny model, every layer built by `ops`."""
    return model_class(method).from_config(tiny_config(method, data_dir="unused"), rngs=nnx.Rngs(0), ops=ops)


def test_auto_is_cpu_on_a_cpu_backend_and_unknown_values_are_errors():
    assert jax.default_backend() == "cpu"
    assert conv_ops.resolve("auto") == conv_ops.CpuLayers(chunk_kernel_gradients=True)
    assert conv_ops.resolve("cpu").name == "cpu"
    assert conv_ops.resolve("xla") == conv_ops.XlaLayers()
    with pytest.raises(ValueError, match=r"config.model.conv_impl 'cudnn'.*'auto', 'xla', 'cpu'"):
        conv_ops.resolve("cudnn")


@pytest.mark.parametrize("method", METHODS)
def test_build_model_resolves_conv_impl_once_and_records_it(method):
    config = tiny_config(method, data_dir="unused")
    assert config.model.conv_impl == "auto"
    for value, resolved in (("auto", "cpu"), ("cpu", "cpu"), ("xla", "xla")):
        config.model.conv_impl = value
        model = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0)))
        assert model.conv_impl == resolved
        layers = [m for _, m in nnx.iter_modules(model)
                  if isinstance(m, (nnx.Conv, nnx.ConvTranspose, nnx.BatchNorm))]
        # xla's BN is nnx's, with PyTorch's running-variance update (config.model.bn_running_var)
        library = [type(m) in (nnx.Conv, nnx.ConvTranspose, nnx.BatchNorm, conv_ops.RunningVarBatchNorm)
                   and getattr(m, "conv_general_dilated", jax.lax.conv_general_dilated)
                   is jax.lax.conv_general_dilated for m in layers]
        assert all(library) if resolved == "xla" else not any(library)
    config.model.conv_impl = "fast"
    with pytest.raises(ValueError, match="config.model.conv_impl"):
        build_model(config, nnx.Rngs(0))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("conv_impl", ["xla", "cpu"])
def test_bn_running_var_reaches_every_batch_norm(method, conv_impl):
    config = tiny_config(method, data_dir="unused")
    config.model.conv_impl = conv_impl
    assert config.model.bn_running_var == "unbiased"  # PyTorch's, as the official code
    for value, unbiased in (("unbiased", True), ("biased", False)):
        config.model.bn_running_var = value
        model = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0)))
        norms = [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm)]
        assert norms and all(getattr(m, "unbiased_running_var", False) == unbiased for m in norms)
    config.model.bn_running_var = "sample"
    with pytest.raises(ValueError, match="config.model.bn_running_var 'sample'"):
        build_model(config, nnx.Rngs(0))


@pytest.mark.parametrize("method", METHODS)
def test_both_implementations_build_the_same_tree(method):
    """Same paths, shapes, dtypes and initial values; the same torch names for convert.py."""
    xla, cpu = (nnx.eval_shape(lambda: _model(method, ops))
                for ops in (conv_ops.XlaLayers(), conv_ops.CpuLayers()))
    a, b = nnx.to_pure_dict(nnx.state(xla)), nnx.to_pure_dict(nnx.state(cpu))
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), a) == jax.tree.map(lambda x: (x.shape, x.dtype), b)
    assert torch_state.torch_layout(xla) == torch_state.torch_layout(cpu)


def test_both_implementations_draw_the_same_initial_values():
    xla, cpu = (_model("rd4ad", ops) for ops in (conv_ops.XlaLayers(), conv_ops.CpuLayers()))
    jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(xla)),
                 nnx.to_pure_dict(nnx.state(cpu)))


def _assert_trees_close(actual, expected, rtol, floor=0.0):
    """Leaf by leaf: max |a - e| <= rtol * max(max |e|, floor)."""
    for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
        scale = max(float(np.abs(e).max(initial=0.0)), floor)
        err = float(np.abs(np.asarray(a, np.float64) - np.asarray(e, np.float64)).max(initial=0.0))
        assert err <= rtol * scale, (jax.tree_util.keystr(path), err, scale)


def _train_forward_and_gradients(model, images, indices):
    """Loss and its terms, TRAINABLE gradients and the BN running statistics after one training
    forward: everything a train step computes before the optimiser."""

    @nnx.jit
    def step(model, images):
        (loss, terms), grads = nnx.value_and_grad(
            lambda m: training_loss(m, images, indices), argnums=nnx.DiffState(0, TRAINABLE), has_aux=True)(model)
        return loss, terms, grads

    loss, terms, grads = step(model, images)
    return jax.tree.map(np.asarray, dict(loss=loss, terms=terms, grads=nnx.to_pure_dict(grads),
                                         stats=nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))))


@pytest.mark.parametrize("method", METHODS)
def test_xla_and_cpu_give_the_same_values_in_float64(method):
    """A batch of 4 (two kernel-gradient chunks of 2) at 64 px, in float64: the loss and its terms,
    gradients and updated BN running statistics agree to F64_RTOL (module docstring)."""
    with jax.enable_x64(True):
        images = jax.random.normal(jax.random.key(0), (4, 64, 64, 3), jnp.float64)
        indices = jnp.arange(4)
        results = []
        for ops in (conv_ops.XlaLayers(), conv_ops.CpuLayers()):
            model = _model(method, ops)
            set_compute_dtype(model, "float64")
            prepare_on(model, np.asarray(images))
            results.append(_train_forward_and_gradients(model, images, indices))
        xla, cpu = results
    for leaf in jax.tree.leaves(xla):
        assert leaf.dtype == np.float64
    floor = SCALE_FLOOR * max(float(np.abs(g).max()) for g in jax.tree.leaves(xla["grads"]))
    _assert_trees_close(cpu["grads"], xla["grads"], F64_RTOL, floor)
    _assert_trees_close({k: cpu[k] for k in ("loss", "terms", "stats")},
                        {k: xla[k] for k in ("loss", "terms", "stats")}, F64_RTOL)
    # The training forward did update the running statistics (their means start at 0).
    assert any(np.abs(m).max() > 0 for m in jax.tree.leaves(xla["stats"]))


# Compiles the RD4AD train step's gradient (value_and_grad of the loss, batch sharded on a
# ('data',) mesh of 4 CPU devices, state replicated, as rgpkd_jax.train runs it) and reports the
# cross-device collectives in the optimised HLO: count and bytes per device of each kind.
_COLLECTIVES_SCRIPT = textwrap.dedent("""
    import collections, json, math, os, re, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp
    from flax import nnx
    from rgpkd_jax import sharding
    from rgpkd_jax.models import TRAINABLE, build_model
    from tests.helpers import tiny_config
    assert jax.device_count() == 4, jax.devices()
    KINDS = "all-reduce|collective-permute|all-to-all|all-gather|reduce-scatter|collective-broadcast"
    ITEMSIZE = {"f64": 8, "f32": 4, "bf16": 2, "s32": 4, "u32": 4, "pred": 1}

    def collectives(hlo):
        counts, nbytes = collections.Counter(), collections.Counter()
        for m in re.finditer(r"= (.*?) (" + KINDS + r")(?:-start)?\\(", hlo):
            counts[m.group(2)] += 1
            nbytes[m.group(2)] += sum(ITEMSIZE[t] * math.prod(int(d) for d in dims.split(",") if d)
                                      for t, dims in re.findall(r"(\\w+)\\[([\\d,]*)\\]", m.group(1)))
        return dict(counts), dict(nbytes)

    out = {}
    for conv_impl in sys.argv[1:]:
        config = tiny_config("rd4ad", data_dir="unused")
        config.model.conv_impl = conv_impl
        model = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0)))
        graphdef, state = nnx.split(model)
        mesh = sharding.make_mesh()

        def step(state, images):
            model = nnx.merge(graphdef, state)
            loss_fn = lambda m: m.loss(m(images, train=True), images)
            (loss, _), grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, TRAINABLE),
                                                  has_aux=True)(model)
            return loss, grads, nnx.state(model, nnx.BatchStat)

        state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                            sharding=sharding.replicated(mesh)), state)
        size = config.dataset.image_size
        images = jax.ShapeDtypeStruct((16, size, size, 3), jnp.float32,
                                      sharding=sharding.batch_sharded(mesh))
        hlo = jax.jit(step).lower(state, images).compile().as_text()
        counts, nbytes = collectives(hlo)
        out[conv_impl] = dict(resolved=model.conv_impl, counts=counts, bytes=nbytes,
                              convolutions=len(re.findall(r" convolution\\(", hlo)))
    print("COLLECTIVES=" + json.dumps(out))
""")


def test_cpu_impl_on_four_devices_communicates_only_by_all_reduce():
    """With the batch sharded over 4 devices, conv_impl="cpu" must not move activations between
    devices (kernel-gradient chunks that cut the sharded batch did: 384 collective-permutes) and
    must all-reduce no more bytes than the library layers (chunks within each device's shard
    doubled them). Measured: 37 all-reduces of 61.6 MB per device for "cpu", 38 for "xla"."""
    result = subprocess.run([sys.executable, "-c", _COLLECTIVES_SCRIPT, "cpu", "xla"], cwd=REPO,
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr[-4000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("COLLECTIVES=")][-1]
    found = json.loads(line[len("COLLECTIVES="):])
    print(found)
    cpu, xla = found["cpu"], found["xla"]
    assert cpu["resolved"] == "cpu" and xla["resolved"] == "xla"
    for impl in (cpu, xla):
        assert set(impl["counts"]) == {"all-reduce"}, impl
    gradient_bytes = 4 * sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(
        nnx.eval_shape(lambda: build_model(tiny_config("rd4ad", data_dir="unused"), nnx.Rngs(0))),
        TRAINABLE)))
    # Each gradient is all-reduced once; BN statistics and the loss add ~0.1 %.
    assert gradient_bytes <= cpu["bytes"]["all-reduce"] <= 1.01 * gradient_bytes, (cpu, gradient_bytes)
    assert cpu["bytes"]["all-reduce"] <= xla["bytes"]["all-reduce"] * 1.001, (cpu, xla)
    assert cpu["counts"]["all-reduce"] <= xla["counts"]["all-reduce"], (cpu, xla)
