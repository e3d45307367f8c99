"""The traced inference function as jax2onnx should see it: same values, ONNX that onnxruntime runs
(and runs fast).

:func:`onnx_ready` traces a function to one flat jaxpr (nested jits and custom-derivative
functions inlined: only the forward matters), then replays it primitive by primitive inside
``jax2onnx.to_onnx``'s trace with these changes:

* whatever depends on constants alone (BN statistics, reshaped weights) is computed once here and
  enters the graph as a constant;
* inference batch norm after a convolution or a 1x1 convolution, ``(conv(x, W) - mean) * s + b``
  with per-channel constants, becomes ``conv(x, W * s) + (b - mean * s)``: one Add that
  onnxruntime fuses into the Conv, instead of three element-wise passes;
* ``max(x, 0)`` becomes ``jax.nn.relu`` (ONNX Relu, which onnxruntime fuses into the Conv);
* a 4-D NHWC max pool becomes a 3-D one over (N * C, H, W): jax2onnx lowers the 4-D form to a 4-D
  ONNX MaxPool that onnxruntime refuses ("Unsupported pooling size");
* a product of an activation (rank >= 3) with a matrix becomes a 2-D product, which jax2onnx
  lowers to Gemm instead of Einsum (onnxruntime runs Einsum slower).

Replaying the jaxpr also keeps jax2onnx's flax-level rewrites away from our modules (its
``nnx.max_pool`` patch does not take flax 0.12's positional arguments).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jax_core

_NESTED = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "jaxpr", "custom_vjp_call": "call_jaxpr",
           "custom_jvp_call": "call_jaxpr", "custom_vjp_call_jaxpr": "fun_jaxpr"}


def onnx_ready(fn: Callable, spec: jax.ShapeDtypeStruct) -> Callable:
    """``fn`` (one array in, a tuple of arrays out) as a function for ``jax2onnx.to_onnx(.., [spec])``."""
    nested = jax.make_jaxpr(fn)(spec)
    flat = jax.make_jaxpr(lambda x: _inline(nested.jaxpr, nested.consts, [x]))(spec)
    plan = _Plan.of(flat)
    return lambda images: tuple(plan.replay(images))


def _inline(jaxpr: jax_core.Jaxpr, consts, args) -> list:
    env = dict(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        inputs = [_read(env, v) for v in eqn.invars]
        sub = eqn.params.get(_NESTED.get(eqn.primitive.name, ""))
        if sub is not None:
            outputs = _inline(sub.jaxpr, sub.consts, inputs)
        else:
            outputs = _bind(eqn, inputs)
        env.update(zip(eqn.outvars, outputs))
    return [_read(env, v) for v in jaxpr.outvars]


def _read(env: dict, var):
    return var.val if isinstance(var, jax_core.Literal) else env[var]


def _bind(eqn, inputs) -> list:
    # Call primitives were inlined above, so `params` bind as they are: no `get_bind_params`, whose
    # return type changed between jax 0.8 and 0.10 (README, "Versions").
    out = eqn.primitive.bind(*inputs, **eqn.params)
    return out if eqn.primitive.multiple_results else [out]


@dataclasses.dataclass
class _Fold:
    """A linear op (index ``linear``) whose output feeds sub -> mul -> add with per-channel constants."""
    weights: jax.Array      # the op's rhs scaled by the BN factor
    bias: jax.Array         # (C,) added after it
    output: jax_core.Var    # the add's output


@dataclasses.dataclass
class _Plan:
    jaxpr: jax_core.Jaxpr
    known: dict             # var -> constant value
    folds: dict             # index of the linear eqn -> _Fold
    skip: set               # indices of the sub, mul, add eqns that a fold replaces

    @classmethod
    def of(cls, closed: jax_core.ClosedJaxpr) -> "_Plan":
        jaxpr = closed.jaxpr
        known = dict(zip(jaxpr.constvars, closed.consts))
        for eqn in jaxpr.eqns:  # constant propagation, outside any trace
            if all(isinstance(v, jax_core.Literal) or v in known for v in eqn.invars):
                known.update(zip(eqn.outvars, _bind(eqn, [_read(known, v) for v in eqn.invars])))
        plan = cls(jaxpr, known, {}, set())
        plan._find_batch_norm_folds()
        return plan

    def _find_batch_norm_folds(self) -> None:
        eqns = self.jaxpr.eqns
        producer = {out: i for i, eqn in enumerate(eqns) for out in eqn.outvars}
        uses = collections.Counter(v for eqn in eqns for v in eqn.invars if isinstance(v, jax_core.Var))
        uses.update(v for v in self.jaxpr.outvars if isinstance(v, jax_core.Var))

        def single_source(var):
            """The eqn index producing ``var`` if var is computed (not constant) and used once."""
            if isinstance(var, jax_core.Var) and var not in self.known and uses[var] == 1:
                return producer.get(var)
            return None

        for i_add, add in enumerate(eqns):
            if add.primitive is not lax.add_p:
                continue
            r, s = self._split(add, commutative=True)
            i_mul = single_source(r)
            if i_mul is None or eqns[i_mul].primitive is not lax.mul_p:
                continue
            m, q = self._split(eqns[i_mul], commutative=True)
            i_sub = single_source(m)
            if i_sub is None or eqns[i_sub].primitive is not lax.sub_p:
                continue
            y, k = self._split(eqns[i_sub], commutative=False)
            i_lin = single_source(y)
            if i_lin is None or i_lin in self.folds:
                continue
            channels = y.aval.shape[-1]
            if not all(self._per_channel(c, channels) for c in (s, q, k)):
                continue
            scale = self._value(q).reshape(channels)
            weights = self._scaled_weights(eqns[i_lin], scale)
            if weights is None:
                continue
            bias = self._value(s).reshape(channels) - self._value(k).reshape(channels) * scale
            self.folds[i_lin] = _Fold(weights, bias.astype(y.aval.dtype), add.outvars[0])
            self.skip.update((i_sub, i_mul, i_add))

    def _split(self, eqn, *, commutative: bool):
        """(computed operand, constant operand) of a binary op; (None, None) if it is not so."""
        a, b = eqn.invars
        if self._is_known(b) and not self._is_known(a):
            return a, b
        if commutative and self._is_known(a) and not self._is_known(b):
            return b, a
        return None, None

    def _is_known(self, var) -> bool:
        return isinstance(var, jax_core.Literal) or var in self.known

    def _value(self, var):
        return jnp.asarray(_read(self.known, var))

    def _per_channel(self, var, channels: int) -> bool:
        if var is None:
            return False
        shape = jnp.shape(self._value(var))
        return len(shape) >= 1 and shape[-1] == channels and all(d == 1 for d in shape[:-1])

    def _scaled_weights(self, eqn, scale):
        """The rhs of a convolution / matrix product with output channels last, times ``scale``."""
        if len(eqn.invars) != 2 or eqn.invars[1] not in self.known:
            return None
        w = self._value(eqn.invars[1])
        if eqn.primitive is lax.conv_general_dilated_p:
            p = eqn.params
            dims = p["dimension_numbers"]
            if (p["feature_group_count"] != 1 or p["batch_group_count"] != 1
                    or dims.out_spec[1] != eqn.outvars[0].aval.ndim - 1):
                return None
            axis = dims.rhs_spec[0]  # the kernel's output-feature axis
        elif eqn.primitive is lax.dot_general_p:
            (_, rhs_contract), (lhs_batch, _) = eqn.params["dimension_numbers"]
            if w.ndim != 2 or lhs_batch or tuple(rhs_contract) != (0,):
                return None
            axis = 1
        else:
            return None
        shape = [1] * w.ndim
        shape[axis] = scale.shape[0]
        return (w * scale.reshape(shape)).astype(w.dtype)

    def replay(self, images) -> list:
        env = {self.jaxpr.invars[0]: images}
        for i, eqn in enumerate(self.jaxpr.eqns):
            if i in self.skip or all(v in self.known for v in eqn.outvars):
                continue
            inputs = [self._value(v) if self._is_known(v) else env[v] for v in eqn.invars]
            if i in self.folds:
                fold = self.folds[i]
                out = _rewritten(eqn, [inputs[0], fold.weights])[0]
                env[fold.output] = out + fold.bias
                continue
            env.update(zip(eqn.outvars, _rewritten(eqn, inputs)))
        return [self._value(v) if self._is_known(v) else env[v] for v in self.jaxpr.outvars]


def _rewritten(eqn, inputs) -> list:
    """One primitive, in the form that converts to good ONNX."""
    if eqn.primitive is lax.max_p and any(map(_is_zero, eqn.invars)):
        other = [x for v, x in zip(eqn.invars, inputs) if not _is_zero(v)]
        if len(other) == 1 and tuple(other[0].shape) == tuple(eqn.outvars[0].aval.shape):
            return [jax.nn.relu(other[0])]
    if eqn.primitive is lax.reduce_window_max_p and jnp.ndim(inputs[0]) == 4:
        return [_max_pool_3d(inputs[0], **eqn.params)]
    if eqn.primitive is lax.dot_general_p and _is_matrix_product(inputs, **eqn.params):
        return [_matrix_product(*inputs, **eqn.params)]
    return _bind(eqn, inputs)


def _is_zero(var) -> bool:
    return isinstance(var, jax_core.Literal) and np.ndim(var.val) == 0 and float(var.val) == 0.0


def _max_pool_3d(x, *, window_dimensions, window_strides, padding, base_dilation, window_dilation):
    """NHWC max pool with a (1, kh, kw, 1) window as one over (N * C, H, W)."""
    if (window_dimensions[0], window_dimensions[3], window_strides[0], window_strides[3]) != (1, 1, 1, 1) \
            or tuple(padding[0]) != (0, 0) or tuple(padding[3]) != (0, 0) \
            or any(d != 1 for d in (*base_dilation, *window_dilation)):
        raise NotImplementedError(f"ONNX export: a max pool over batch or channels ({window_dimensions}, "
                                  f"strides {window_strides}, padding {padding}) has no 3-D form")
    n, h, w, c = x.shape
    planes = jnp.transpose(x, (0, 3, 1, 2)).reshape(n * c, h, w)
    pooled = lax.reduce_window(planes, jnp.array(-jnp.inf, x.dtype), lax.max, (1, *window_dimensions[1:3]),
                               (1, *window_strides[1:3]), ((0, 0), *padding[1:3]))
    return jnp.transpose(pooled.reshape(n, c, *pooled.shape[1:]), (0, 2, 3, 1))


def _is_matrix_product(inputs, *, dimension_numbers, **_) -> bool:
    """A contraction of one axis of an activation (rank >= 3) with a matrix, no batch axes: a 1x1
    convolution over NHWC, or one axis of the anomaly map's upsampling and blur."""
    lhs, rhs = inputs
    (lhs_contract, _), (lhs_batch, _) = dimension_numbers
    return jnp.ndim(lhs) >= 3 and jnp.ndim(rhs) == 2 and len(lhs_contract) == 1 and not lhs_batch


def _matrix_product(lhs, rhs, *, dimension_numbers, precision, preferred_element_type, **_):
    """`dot_general` of :func:`_is_matrix_product` as one (rows, k) x (k, n) product. The output
    order is dot_general's: the lhs's free axes, then the rhs's."""
    ((lhs_axis,), (rhs_axis,)), _ = dimension_numbers
    free = [axis for axis in range(lhs.ndim) if axis != lhs_axis]
    if lhs_axis != lhs.ndim - 1:
        lhs = jnp.transpose(lhs, (*free, lhs_axis))
    matrix = rhs if rhs_axis == 0 else rhs.T
    product = lax.dot_general(lhs.reshape(-1, lhs.shape[-1]), matrix, (((1,), (0,)), ((), ())),
                              precision=precision, preferred_element_type=preferred_element_type)
    return product.reshape(*lhs.shape[:-1], matrix.shape[1])


def fuse_conv_epilogues(model) -> None:
    """Rewrites a converted ``onnx.ModelProto`` in place, values unchanged:

    * a Conv / ConvTranspose kernel that jax2onnx transposes at run time (HWIO -> OIHW) is stored
      transposed (onnxruntime would keep both copies after folding the Transpose at load);
    * ``Conv -> Transpose(NCHW -> NHWC) -> Add(per-channel constant) [-> Relu]`` becomes
      ``Conv(bias) [-> Relu] -> Transpose``, which onnxruntime fuses into one convolution; the same
      for ``Gemm -> Reshape -> Add [-> Relu]`` (a 1x1 convolution) with the bias as Gemm's C.
    """
    from onnx import numpy_helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    graph_outputs = {o.name for o in graph.output}

    def only_consumer(name: str, op_type: str):
        found = consumers.get(name, [])
        if len(found) == 1 and found[0].op_type == op_type and name not in graph_outputs:
            return found[0]
        return None

    removed, added = [], []
    for node in [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm")]:
        kernel_transpose = producer.get(node.input[1])
        if (node.op_type != "Gemm" and kernel_transpose is not None and kernel_transpose.op_type == "Transpose"
                and kernel_transpose.input[0] in initializers and len(consumers[node.input[1]]) == 1):
            perm = list(kernel_transpose.attribute[0].ints)
            kernel = numpy_helper.to_array(initializers[kernel_transpose.input[0]]).transpose(perm)
            added.append(numpy_helper.from_array(np.ascontiguousarray(kernel), node.input[1] + "_folded"))
            initializers[added[-1].name] = added[-1]
            node.input[1] = added[-1].name
            removed.append(kernel_transpose)
        if node.input[1] not in initializers:
            continue
        channels = _output_channels(node, initializers, numpy_helper)
        if node.op_type == "Gemm":  # (rows, k) x (k, n) -> Reshape back to NHWC
            layout = only_consumer(node.output[0], "Reshape")
        else:  # NCHW -> Transpose back to NHWC
            layout = only_consumer(node.output[0], "Transpose")
            if layout is not None and list(layout.attribute[0].ints) != [0, 2, 3, 1]:
                layout = None
        add = layout and only_consumer(layout.output[0], "Add")
        if channels is None or add is None:
            continue
        constant = [name for name in add.input if name != layout.output[0]]
        if len(constant) != 1 or constant[0] not in initializers:
            continue
        bias = numpy_helper.to_array(initializers[constant[0]])
        if bias.size != channels or any(d != 1 for d in bias.shape[:-1]):
            continue
        added.append(numpy_helper.from_array(bias.reshape(channels).copy(), add.output[0] + "_bias"))
        if node.op_type == "Gemm":
            # jax2onnx's Gemm computes A @ B + 0 * C (beta=0, a zero C): drop beta (default 1),
            # or the bias moved into C would be multiplied by 0.
            del node.input[2:]
            for attribute in [a for a in node.attribute if a.name == "beta"]:
                node.attribute.remove(attribute)
        node.input.append(added[-1].name)
        removed.append(add)
        relu = only_consumer(add.output[0], "Relu")
        if relu is not None:  # linear op -> Relu -> layout op
            relu.input[0] = node.output[0]
            layout.input[0] = relu.output[0] + "_before_layout"
            layout.output[0] = relu.output[0]
            relu.output[0] = layout.input[0]
        else:
            layout.output[0] = add.output[0]
    for node in removed:
        graph.node.remove(node)
    graph.initializer.extend(added)
    _drop_unused_initializers(graph)
    _sort_topologically(graph)


def _output_channels(node, initializers, numpy_helper) -> int | None:
    """Output channels of a Conv / ConvTranspose / Gemm whose weight is an initializer, if its
    bias can take a per-channel vector."""
    dims = initializers[node.input[1]].dims
    attributes = {a.name: a for a in node.attribute}
    if node.op_type == "Conv":
        return dims[0]
    if node.op_type == "ConvTranspose":
        return dims[1] * (attributes["group"].i if "group" in attributes else 1)
    if any(attributes[a].i != 0 for a in ("transA", "transB") if a in attributes) or len(dims) != 2:
        return None
    if len(node.input) == 3:  # jax2onnx passes a zero scalar as C
        c = node.input[2]
        if c not in initializers or np.any(numpy_helper.to_array(initializers[c])):
            return None
    return dims[1]


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    unused = [i for i in graph.initializer if i.name not in used]
    for initializer in unused:
        graph.initializer.remove(initializer)


def _sort_topologically(graph) -> None:
    """ONNX wants each node after the producers of its inputs (a moved Relu now precedes its
    Transpose)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ValueError("ONNX graph rewrite left a cycle or a missing input")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if all(n is not r for r in ready)]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
