"""Scoring a file or folder of images with any map function: per-image scores and decisions
(JSON + CSV), heat maps, and the unreadable files named and skipped.

``--mode predict`` (the JAX model) and the deployed predictor (an ONNX model under onnxruntime)
both call :func:`predict_files`, so their outputs have one format and one meaning.
"""

from __future__ import annotations

import csv
import os
from typing import Callable

import numpy as np
from PIL import Image

from rgpkd_jax import files
from rgpkd_jax.deploy import images as images_lib

# (N, H, W, 3) normalised images -> (N, H, W) anomaly maps, (N,) image scores
MapFunction = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
PREDICTIONS_JSON, PREDICTIONS_CSV = "predictions.json", "predictions.csv"
HEATMAP_SUFFIX = "_heatmap.png"


def predict_files(input_path: str, image_size: images_lib.Size, maps_and_scores: MapFunction,
                  threshold: float, output_dir: str, *, write: bool = True,
                  threshold_source: str = "the model's threshold") -> dict:
    """Scores the images at ``input_path`` (a file or a folder, searched recursively).

    Writes ``predictions.json``, ``predictions.csv`` and one ``<name>_heatmap.png`` per image into
    ``output_dir``; files with other suffixes than :data:`images.IMAGE_SUFFIXES` are listed under
    ``skipped``; an image is ``defective`` when its score is above ``threshold``. Each heat map
    is at its image's original size, coloured on its own scale (``heatmap_min`` to
    ``heatmap_max``: the map's range widened to include the threshold), with a colour bar that
    marks the threshold; ``threshold_source`` says which threshold it is (recorded with it). Returns
    what ``predictions.json`` holds.
    ``write=False`` computes the same result and writes nothing (the other processes of a
    multi-process run: process 0 writes).
    """
    found, skipped = images_lib.list_images(input_path)
    paths, images, errors = images_lib.load_images(found, image_size)
    if write:
        os.makedirs(output_dir, exist_ok=True)
    rows = []
    if paths:
        maps, scores = maps_and_scores(images)
        for i, path in enumerate(paths):
            heatmap_path = os.path.join(output_dir, _safe_name(path, input_path) + HEATMAP_SUFFIX)
            if write:
                picture, _ = images_lib.heatmap_with_colour_bar(images_lib.to_rgb(path), maps[i], threshold)
                _save_png(picture, heatmap_path)
            vmin, vmax = images_lib.heatmap_scale(maps[i], threshold)
            rows.append({"file": path, "score": float(scores[i]),
                         "defective": bool(scores[i] > threshold), "heatmap": heatmap_path,
                         "heatmap_min": vmin, "heatmap_max": vmax})
    result = {"threshold": threshold, "threshold_source": threshold_source, "predictions": rows, "errors": errors, "skipped": skipped,
              "output_dir": output_dir}
    if write:
        _write_outputs(result, output_dir)
    return result


def format_summary(result: dict) -> str:
    """What a command line prints after :func:`predict_files`."""
    lines = [f"could not read {f}: {err}" for f, err in result["errors"].items()]
    if result["skipped"]:
        lines.append(f"skipped {images_lib.describe_skipped(result['skipped'])}")
    lines.append(f"scored {len(result['predictions'])} image(s), {len(result['errors'])} unreadable; "
                 f"results in {result['output_dir']}")
    return "\n".join(lines)


def _safe_name(path: str, root: str) -> str:
    rel = os.path.relpath(path, root if os.path.isdir(root) else os.path.dirname(root))
    return os.path.splitext(rel)[0].replace(os.sep, "__")


def _save_png(rgb: np.ndarray, path: str) -> None:
    with files.atomic_write(path, "wb") as f:
        Image.fromarray(rgb).save(f, format="PNG")


def _write_outputs(result: dict, output_dir: str) -> None:
    files.write_json(os.path.join(output_dir, PREDICTIONS_JSON), result)
    with files.atomic_write(os.path.join(output_dir, PREDICTIONS_CSV), newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "score", "defective", "heatmap", "heatmap_min",
                                                "heatmap_max"])
        writer.writeheader()
        writer.writerows(result["predictions"])
