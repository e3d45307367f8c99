"""A trained workdir as deployable artefacts: StableHLO (``jax.export``) and ONNX (``jax2onnx``).

Both hold one function, the one ``--mode eval`` and ``--mode predict`` jit
(:func:`rgpkd_jax.evaluate.make_map_fn`), with every parameter, BN statistic and (RGPKD) the
prompt bank baked in as constants:

    images (batch, H, W, 3) float32, ImageNet-normalised NHWC, batch symbolic
      -> anomaly_map (batch, H, W) float32 (after the Gaussian), score (batch,) float32

Beside each artefact a JSON sidecar (:mod:`rgpkd_jax.deploy.artefact`) records the predict
threshold, the preprocessing, the method, the teacher's provenance and the package versions; the
ONNX file carries the same in its metadata.

* StableHLO: ``jax.export`` serialised for ``cpu`` and ``cuda``; ``jax.export.deserialize`` of the
  file's bytes gives a callable that needs no model code (:func:`load_stablehlo` adds the checks).
* ONNX: ``jax2onnx.to_onnx`` of the traced jaxpr, replayed primitive by primitive
  (:func:`_replay`): this keeps jax2onnx's flax-level rewrites away from our modules (its
  ``nnx.max_pool`` patch does not take flax 0.12's positional arguments) and turns the ResNet
  stem's 4-D max pool, which jax2onnx lowers to a 4-D ONNX MaxPool that onnxruntime refuses
  ("Unsupported pooling size"), into a 3-D one over (N * C, H, W); and it turns products of an
  activation with a matrix (1x1 convolutions, the map's upsampling and blur), which jax2onnx
  lowers to ONNX Einsum, into 2-D products that it lowers to Gemm (onnxruntime: Einsum 0.50 s,
  Gemm 0.32 s of a 1.3 s RD4AD WRN50 forward at 256 px). jax2onnx is an optional install
  (README, "Deploy").
"""

from __future__ import annotations

import importlib.metadata
import json
import logging as std_logging
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from absl import logging
from jax import lax
from jax.extend import core as jax_core

from rgpkd_jax import __version__, checkpointing, evaluate, files
from rgpkd_jax.deploy import artefact
from rgpkd_jax.deploy.images import size_hw

ARTEFACT_STEM = "model"
SUFFIXES = {"stablehlo": ".stablehlo", "onnx": ".onnx"}
DEFAULT_PLATFORMS = ("cpu", "cuda")
ONNX_OPSET = 23
JAX2ONNX_INSTALL = ("pip install -e '.[export]' && pip install --no-deps jax2onnx==0.17.1 "
                    "(README, 'Deploy': why --no-deps)")
_ONNX_MAX_BYTES = 2**31 - 1  # protobuf's limit on one serialised message

MapFunction = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


def map_function(model, config) -> MapFunction:
    """``images -> (anomaly maps, scores)`` of ``model`` with its state closed over (so that
    tracing bakes it in as constants)."""
    maps_and_scores, state = evaluate.make_map_fn(model, config)
    return lambda images: maps_and_scores(state, images)


def input_spec(image_size) -> jax.ShapeDtypeStruct:
    """(batch, H, W, 3) float32 with a symbolic batch."""
    height, width = size_hw(image_size)
    (batch,) = jax.export.symbolic_shape("batch")
    return jax.ShapeDtypeStruct((batch, height, width, 3), jnp.float32)


def describe(config, *, teacher_info: dict, step: int, threshold: dict) -> dict:
    """What the sidecar and the ONNX metadata say of an export (format and versions added later)."""
    ec = config.eval
    height, width = size_hw(config.dataset.image_size)
    return {
        "schema": artefact.SCHEMA, "method": config.method,
        "dataset": {"name": config.dataset.name, "category": config.dataset.category},
        "input": {"name": artefact.INPUT_NAME, "shape": ["batch", height, width, 3], "dtype": "float32"},
        "outputs": {artefact.OUTPUT_NAMES[0]: ["batch", height, width], artefact.OUTPUT_NAMES[1]: ["batch"]},
        "preprocessing": artefact.preprocessing(config.dataset.image_size),
        "anomaly_map": {"sigma": ec.sigma, "combine": ec.combine, "score": ec.score, "topk": ec.topk,
                        "reconstruction_weight": ec.reconstruction_weight},
        "threshold": threshold, "teacher": teacher_info, "checkpoint_step": int(step),
        "batch_size": int(ec.batch_size),
        "versions": _versions("rgpkd_jax", "jax", "jaxlib", "flax", "numpy"),
    }


def stablehlo_bytes(fn: MapFunction, image_size, platforms: Sequence[str] = DEFAULT_PLATFORMS) -> bytes:
    """``fn`` as a serialised ``jax.export.Exported`` for ``platforms``, batch symbolic."""
    exported = jax.export.export(jax.jit(fn), platforms=tuple(platforms))(input_spec(image_size))
    return bytes(exported.serialize())


def onnx_bytes(fn: MapFunction, image_size, description: dict) -> bytes:
    """``fn`` as an ONNX model (opset :data:`ONNX_OPSET`), batch symbolic, ``description`` in its
    metadata."""
    try:
        import onnx
        from jax2onnx import to_onnx
    except ImportError as e:
        raise RuntimeError(f"ONNX export needs jax2onnx and onnx ({e}): {JAX2ONNX_INSTALL}") from None
    spec = input_spec(image_size)
    closed = jax.make_jaxpr(fn)(spec)
    with _quiet_converter():
        model = to_onnx(lambda images: tuple(_replay(closed, images)), [spec], opset=ONNX_OPSET,
                        model_name=f"rgpkd_jax_{description['method']}", return_mode="proto",
                        input_names=[artefact.INPUT_NAME], output_names=list(artefact.OUTPUT_NAMES))
    model.producer_name, model.producer_version = "rgpkd_jax", __version__
    model.doc_string = (f"{description['method']} anomaly detector: images (batch, H, W, 3) ImageNet-normalised "
                        "-> anomaly_map (batch, H, W), score (batch)")
    model.metadata_props.append(onnx.StringStringEntryProto(
        key=artefact.ONNX_METADATA_KEY, value=json.dumps(description, default=files.json_default)))
    if model.ByteSize() > _ONNX_MAX_BYTES:
        raise ValueError(f"the ONNX model would be {model.ByteSize() / 2**30:.1f} GiB, over protobuf's 2 GiB; "
                         "shrink RGPKD's prompt bank (config.model.bank_size, bank_dtype=float16) or "
                         "export --format=stablehlo")
    return model.SerializeToString()


def export_workdir(config, workdir: str, *, formats: Sequence[str] = artefact.FORMATS,
                   output_dir: str | None = None,
                   platforms: Sequence[str] = DEFAULT_PLATFORMS) -> dict[str, str]:
    """Exports the workdir's last checkpoint in each of ``formats`` into ``output_dir`` (default
    ``workdir/export``); returns {format: artefact path}. Needs the workdir's threshold.json."""
    unknown = sorted(set(formats) - set(artefact.FORMATS))
    if unknown or not formats:
        raise ValueError(f"export formats {unknown or list(formats)}; choose from {list(artefact.FORMATS)}")
    threshold = evaluate.read_threshold(workdir)
    model, teacher_info, step = checkpointing.load_trained_model(config, workdir)
    fn = map_function(model, config)
    base = describe(config, teacher_info=teacher_info, step=step, threshold=threshold)
    output_dir = output_dir or os.path.join(workdir, "export")
    os.makedirs(output_dir, exist_ok=True)
    paths = {}
    for fmt in formats:
        path = os.path.join(output_dir, ARTEFACT_STEM + SUFFIXES[fmt])
        if fmt == "stablehlo":
            description = {**base, "format": fmt, "platforms": list(platforms)}
            data = stablehlo_bytes(fn, config.dataset.image_size, platforms)
        else:
            description = {**base, "format": fmt, "opset": ONNX_OPSET,
                           "versions": {**base["versions"], **_versions("jax2onnx", "onnx")}}
            data = onnx_bytes(fn, config.dataset.image_size, description)
        with files.atomic_write(path, "wb") as f:
            f.write(data)
        artefact.write(path, description)
        logging.info("wrote %s (%.1f MB) and its sidecar", path, len(data) / 1e6)
        paths[fmt] = path
    return paths


def load_stablehlo(path: str) -> tuple[jax.export.Exported, dict]:
    """The StableHLO artefact as a callable ``jax.export.Exported`` (``.call(images)``) and its
    checked sidecar."""
    description = artefact.read(path, "stablehlo")
    with open(path, "rb") as f:
        data = f.read()
    try:
        exported = jax.export.deserialize(bytearray(data))
    except Exception as e:  # noqa: BLE001 - flatbuffer and MLIR errors have no common class
        detail = " ".join(str(e).split())[:300]
        raise ValueError(f"jax.export cannot deserialize {path} ({type(e).__name__}: {detail}); "
                         "export it again with python -m rgpkd_jax.export") from None
    artefact.check_input_shape(description, exported.in_avals[0].shape, source=artefact.sidecar_path(path))
    return exported, description


def _versions(*packages: str) -> dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


class _quiet_converter:
    """jax2onnx logs a warning with a traceback for each of its example plugins whose library
    (equinox, dm_pix) is not installed, and onnx_ir one per untyped shape constant; neither
    concerns our graph. Errors still show."""

    _LOGGERS = ("jax2onnx", "onnx_ir")

    def __enter__(self):
        self._levels = {name: std_logging.getLogger(name).level for name in self._LOGGERS}
        for name in self._LOGGERS:
            std_logging.getLogger(name).setLevel(std_logging.ERROR)

    def __exit__(self, *exc):
        for name, level in self._levels.items():
            std_logging.getLogger(name).setLevel(level)


def _replay(closed: jax_core.ClosedJaxpr, *args) -> list:
    """Evaluates a traced jaxpr primitive by primitive, inlining nested jits and custom-VJP
    functions (only the forward matters here), with 4-D max pools made 3-D (see the module doc)."""
    return _eval_jaxpr(closed.jaxpr, closed.consts, args)


def _eval_jaxpr(jaxpr: jax_core.Jaxpr, consts, args) -> list:
    env = {}

    def read(var):
        return var.val if isinstance(var, jax_core.Literal) else env[var]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        sub = eqn.params.get("jaxpr") if eqn.primitive.name in ("jit", "pjit", "closed_call") else \
            eqn.params.get("call_jaxpr") if eqn.primitive.name.startswith(("custom_vjp_call", "custom_jvp_call")) \
            else None
        if sub is not None:
            outputs = _eval_jaxpr(sub.jaxpr, sub.consts, inputs)
        elif eqn.primitive is lax.reduce_window_max_p and inputs[0].ndim == 4:
            outputs = [_max_pool_3d(inputs[0], **eqn.params)]
        elif eqn.primitive is lax.dot_general_p and _is_matrix_product(inputs, **eqn.params):
            outputs = [_matrix_product(*inputs, **eqn.params)]
        else:
            outputs = eqn.primitive.bind(*inputs, **eqn.primitive.get_bind_params(eqn.params))
            outputs = outputs if eqn.primitive.multiple_results else [outputs]
        env.update(zip(eqn.outvars, outputs))
    return [read(v) for v in jaxpr.outvars]


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
    (lhs_contract, rhs_contract), (lhs_batch, _) = dimension_numbers
    return lhs.ndim >= 3 and rhs.ndim == 2 and len(lhs_contract) == 1 and not lhs_batch


def _matrix_product(lhs, rhs, *, dimension_numbers, precision, preferred_element_type, **_):
    """`dot_general` of :func:`_is_matrix_product` as one (rows, k) x (k, n) product, which jax2onnx
    lowers to ONNX Gemm (it lowers the rank >= 3 form to Einsum, which onnxruntime runs slower).
    The output order is dot_general's: the lhs's free axes, then the rhs's."""
    ((lhs_axis,), (rhs_axis,)), _ = dimension_numbers
    free = [axis for axis in range(lhs.ndim) if axis != lhs_axis]
    if lhs_axis != lhs.ndim - 1:
        lhs = jnp.transpose(lhs, (*free, lhs_axis))
    matrix = rhs if rhs_axis == 0 else rhs.T
    product = lax.dot_general(lhs.reshape(-1, lhs.shape[-1]), matrix, (((1,), (0,)), ((), ())),
                              precision=precision, preferred_element_type=preferred_element_type)
    return product.reshape(*lhs.shape[:-1], matrix.shape[1])
