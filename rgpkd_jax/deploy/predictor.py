"""An exported ONNX model under onnxruntime: anomaly maps, scores and decisions without JAX.

    from rgpkd_jax.deploy.predictor import Predictor
    predictor = Predictor("W/export/model.onnx")
    maps, scores = predictor(images)                 # (N, H, W, 3) preprocessed -> (N, H, W), (N,)
    result = predictor.predict_path("new_images/")   # what --mode predict returns and writes

The description of the model (threshold, image size, preprocessing) comes from its sidecar
``model.onnx.json`` when there is one (its size and sha256 must match the file), else from the
copy export put in the ONNX file's metadata.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import onnxruntime as ort

from rgpkd_jax import files
from rgpkd_jax.deploy import artefact, scoring
from rgpkd_jax.deploy.images import ImageSource, preprocess_image

DEFAULT_BATCH_SIZE = 16


class Predictor:
    """An exported model (``.onnx`` with its sidecar) in an onnxruntime session.

    Args:
      model_path: the ``.onnx`` file ``python -m rgpkd_jax.export`` wrote.
      batch_size: images per onnxruntime call (the batch dimension is free; this bounds memory).
        Default: the evaluation batch size the model was exported with.
      providers: onnxruntime execution providers, best first. Default: every available one.
    """

    def __init__(self, model_path: str, *, batch_size: int | None = None,
                 providers: Sequence[str] | None = None):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: give a positive number of images per onnxruntime "
                             "call (--batch_size), or leave it out for the export's batch size")
        self.path = os.fspath(model_path)
        has_sidecar = os.path.exists(artefact.sidecar_path(self.path))
        description = artefact.read(self.path, "onnx") if has_sidecar else None
        self.session = _open_session(self.path, providers)
        if description is None:
            description = _embedded_description(self.session, self.path)
        source = artefact.sidecar_path(self.path) if has_sidecar else self.path
        model_input = self.session.get_inputs()[0]
        artefact.check_input_shape(description, model_input.shape, source=source)
        self.description = description
        self.image_size = artefact.image_size(description)
        self.threshold = float(description["threshold"]["threshold"])
        self.method = description["method"]
        self.batch_size = int(batch_size or description.get("batch_size") or DEFAULT_BATCH_SIZE)
        self._input_name = model_input.name

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) float32 preprocessed images -> (N, H, W) anomaly maps and (N,) scores."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (*self.image_size, 3):
            raise ValueError(f"{self.path} takes (N, {self.image_size[0]}, {self.image_size[1]}, 3) "
                             f"preprocessed images; got shape {images.shape}")
        maps, scores = [], []
        for start in range(0, len(images), self.batch_size):
            chunk = np.ascontiguousarray(images[start:start + self.batch_size], dtype=np.float32)
            m, s = self.session.run(list(artefact.OUTPUT_NAMES), {self._input_name: chunk})
            maps.append(m)
            scores.append(s)
        if not maps:
            return np.zeros((0, *self.image_size), np.float32), np.zeros((0,), np.float32)
        return np.concatenate(maps), np.concatenate(scores)

    def preprocess(self, source: ImageSource) -> np.ndarray:
        """One image (path, encoded bytes or PIL image) as the model takes it: (H, W, 3) float32."""
        return preprocess_image(source, self.image_size)

    def predict_path(self, input_path: str, output_dir: str | None = None) -> dict:
        """Scores an image file or a folder as ``--mode predict`` does: writes predictions.json,
        predictions.csv and heat maps into ``output_dir`` (default: a new folder
        ``predictions/<UTC time>`` beside the model per run, so a rerun overwrites nothing), names
        and skips unreadable files, and returns what predictions.json holds."""
        output_dir = output_dir or files.new_run_dir(
            os.path.join(os.path.dirname(os.path.abspath(self.path)), "predictions"))
        return scoring.predict_files(input_path, self.image_size, self, self.threshold, output_dir)


def _open_session(path: str, providers: Sequence[str] | None) -> ort.InferenceSession:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist; export a model with python -m rgpkd_jax.export")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are about graph rewrites it did
    try:
        return ort.InferenceSession(path, options, providers=list(providers or ort.get_available_providers()))
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own classes for a bad file
        detail = " ".join(str(e).split())[:300]
        raise ValueError(f"onnxruntime cannot load {path} ({detail}): the file is damaged, truncated or "
                         "not an ONNX model; export it again with python -m rgpkd_jax.export") from None


def _embedded_description(session: ort.InferenceSession, path: str) -> dict:
    text = session.get_modelmeta().custom_metadata_map.get(artefact.ONNX_METADATA_KEY)
    if text is None:
        raise ValueError(f"{path} has no sidecar ({artefact.sidecar_path(path)}) and no "
                         f"'{artefact.ONNX_METADATA_KEY}' metadata: it was not written by python -m "
                         "rgpkd_jax.export")
    try:
        description = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: its '{artefact.ONNX_METADATA_KEY}' metadata is not valid JSON ({e})") from None
    artefact.check(description, "onnx", source=f"{path} (metadata)")
    return description
