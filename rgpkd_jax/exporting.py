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
* ONNX: ``jax2onnx.to_onnx`` of the traced jaxpr as :mod:`rgpkd_jax.onnx_rewrite` prepares it
  (a max pool onnxruntime accepts, batch norm folded into the convolutions, Relu and Gemm where
  onnxruntime fuses or runs them faster). jax2onnx is an optional install (README, "Deploy").
"""

from __future__ import annotations

import json
import logging as std_logging
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from absl import logging

from rgpkd_jax import __version__, evaluate, files, model_setup, onnx_rewrite, provenance
from rgpkd_jax.deploy import artefact
from rgpkd_jax.deploy.images import size_hw

ARTEFACT_STEM = "model"
SUFFIXES = {"stablehlo": ".stablehlo", "onnx": ".onnx"}
DEFAULT_PLATFORMS = ("cpu", "cuda")
ONNX_OPSET = 23
JAX2ONNX_INSTALL = ("pip install -e '.[export]' && pip install --no-deps jax2onnx==0.17.1 "
                    "(README, 'Deploy': why --no-deps)")

# config.eval keys that do not shape the exported function's maps and scores.
_NOT_MAP_SETTINGS = ("batch_size", "image_score_decimals", "mask_threshold", "fpr_limit",
                     "rd4ad_per_image_aupro", "num_visualise", "threshold_quantile")

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
        # The map settings, the method's own included (e.g. RGPKD's eval.reconstruction_weight).
        "anomaly_map": {k: v for k, v in ec.items() if k not in _NOT_MAP_SETTINGS},
        "threshold": threshold, "teacher": teacher_info, "checkpoint_step": int(step),
        "batch_size": int(ec.batch_size),
        "versions": provenance.package_versions("rgpkd_jax", "jax", "jaxlib", "flax", "numpy"),
    }


def stablehlo_bytes(fn: MapFunction, image_size, platforms: Sequence[str] = DEFAULT_PLATFORMS) -> bytes:
    """``fn`` as a serialised ``jax.export.Exported`` for ``platforms``, batch symbolic."""
    exported = jax.export.export(jax.jit(fn), platforms=tuple(platforms))(input_spec(image_size))
    return bytes(exported.serialize())


def onnx_model(fn: MapFunction, image_size, description: dict):
    """``fn`` as an ``onnx.ModelProto`` (opset :data:`ONNX_OPSET`), batch symbolic, ``description``
    in its metadata."""
    try:
        import onnx
        from jax2onnx import to_onnx
    except ImportError as e:
        raise RuntimeError(f"ONNX export needs jax2onnx and onnx ({e}): {JAX2ONNX_INSTALL}") from None
    spec = input_spec(image_size)
    ready = onnx_rewrite.onnx_ready(fn, spec)
    with _quiet_converter():
        model = to_onnx(ready, [spec], opset=ONNX_OPSET,
                        model_name=f"rgpkd_jax_{description['method']}", return_mode="proto",
                        input_names=[artefact.INPUT_NAME], output_names=list(artefact.OUTPUT_NAMES))
    onnx_rewrite.fuse_conv_epilogues(model)
    model.producer_name, model.producer_version = "rgpkd_jax", __version__
    model.doc_string = (f"{description['method']} anomaly detector: images (batch, H, W, 3) ImageNet-normalised "
                        "-> anomaly_map (batch, H, W), score (batch)")
    model.metadata_props.append(onnx.StringStringEntryProto(
        key=artefact.ONNX_METADATA_KEY, value=json.dumps(description, default=files.json_default)))
    return model


def write_onnx(model, path: str) -> list[str]:
    """Writes the graph to ``path`` and the weights to ``path + '.data'`` (ONNX external data:
    onnxruntime maps the file instead of copying it, which halves its memory, and the graph stays
    under protobuf's 2 GiB). Each file is written under a unique temporary name, then renamed,
    weights first. Returns [the data file]."""
    import onnx

    folder, name = os.path.split(os.path.abspath(path))
    data_name = name + ".data"
    with files.temporary_dir_beside(path) as tmp:
        onnx.save_model(model, os.path.join(tmp, name), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data_name, size_threshold=1024)
        # onnx creates the data file owner-only; give it the graph file's (umask) permissions.
        os.chmod(os.path.join(tmp, data_name), os.stat(os.path.join(tmp, name)).st_mode & 0o777)
        os.replace(os.path.join(tmp, data_name), os.path.join(folder, data_name))
        os.replace(os.path.join(tmp, name), path)
    return [os.path.join(folder, data_name)]


def export_workdir(config, workdir: str, *, formats: Sequence[str] = artefact.FORMATS,
                   output_dir: str | None = None,
                   platforms: Sequence[str] = DEFAULT_PLATFORMS) -> dict[str, str]:
    """Exports the workdir's last checkpoint in each of ``formats`` into ``output_dir`` (default
    ``workdir/export``); returns {format: artefact path}. Needs the workdir's threshold.json,
    computed from that checkpoint."""
    unknown = sorted(set(formats) - set(artefact.FORMATS))
    if unknown or not formats:
        raise ValueError(f"export formats {unknown or list(formats)}; choose from {list(artefact.FORMATS)}")
    threshold = evaluate.read_threshold(workdir)
    model, teacher_info, step = model_setup.load_trained_model(config, workdir)
    evaluate.check_threshold(threshold, model, step, workdir)
    fn = map_function(model, config)
    base = describe(config, teacher_info=teacher_info, step=step, threshold=threshold)
    output_dir = output_dir or os.path.join(workdir, "export")
    os.makedirs(output_dir, exist_ok=True)
    paths = {}
    for fmt in formats:
        path = os.path.join(output_dir, ARTEFACT_STEM + SUFFIXES[fmt])
        data_files = []
        if fmt == "stablehlo":
            description = {**base, "format": fmt, "platforms": list(platforms)}
            with files.atomic_write(path, "wb") as f:
                f.write(stablehlo_bytes(fn, config.dataset.image_size, platforms))
        else:
            description = {**base, "format": fmt, "opset": ONNX_OPSET,
                           "versions": {**base["versions"], **provenance.package_versions("jax2onnx", "onnx")}}
            data_files = write_onnx(onnx_model(fn, config.dataset.image_size, description), path)
        artefact.write(path, description, data_files=data_files)
        logging.info("wrote %s and its sidecar", path)
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
