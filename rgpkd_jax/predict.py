"""Scores new images with a trained model: per-image scores (JSON + CSV), heat maps, decisions.

    python -m rgpkd_jax.main --config configs/rd4ad.py:mvtec_ad/bottle --workdir W \
        --mode predict --input path/to/image_or_folder

The good/defective decision uses the threshold that training wrote to `W/threshold.json` (a
quantile of the training images' scores: normal images only). An unreadable file is reported by
name and skipped; the others' results are still written.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
from absl import logging
from PIL import Image

from rgpkd_jax import checkpointing, evaluate, files, sharding, visualize
from rgpkd_jax.data import preprocess

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--input {path!r} is neither an image file nor a folder")
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                   if name.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {path!r}")
    return files


def load_images(files: list[str], size: int) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """Preprocesses each file; returns the readable ones, their batch, and {file: error} for the rest."""
    good_files, images, errors = [], [], {}
    for f in files:
        try:
            images.append(preprocess.preprocess_image(f, size))
            good_files.append(f)
        except Exception as e:  # noqa: BLE001 - any unreadable file is reported and skipped
            errors[f] = f"{type(e).__name__}: {e}"
            logging.warning("skipping %s: %s", f, errors[f])
    stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.float32)
    return good_files, stacked, errors


def predict_path(config, workdir: str, input_path: str, *, output_dir: str | None = None) -> dict:
    threshold_path = os.path.join(workdir, evaluate.THRESHOLD_FILE)
    if not os.path.exists(threshold_path):
        raise FileNotFoundError(f"{threshold_path} is missing; it is written at the end of training "
                                "(--mode=train or train_eval with the same --config and --workdir)")
    with open(threshold_path) as f:
        threshold = json.load(f)["threshold"]
    model, _, _ = checkpointing.load_trained_model(config, workdir)
    files, images, errors = load_images(list_images(input_path), config.dataset.image_size)
    output_dir = output_dir or os.path.join(workdir, "predictions")
    primary = sharding.is_primary()  # every process scores the images; process 0 writes
    if primary:
        os.makedirs(output_dir, exist_ok=True)

    rows = []
    if len(files):
        maps, scores = evaluate.MapRunner(model, config)(images)
        vmin, vmax = float(maps.min()), float(maps.max())
        uint8_images = evaluate.to_uint8(images)
        for i, f in enumerate(files):
            heatmap_path = os.path.join(output_dir, _safe_name(f, input_path) + "_heatmap.png")
            if primary:
                _save_png(visualize.overlay(uint8_images[i], maps[i], vmin, vmax), heatmap_path)
            rows.append({"file": f, "score": float(scores[i]),
                         "defective": bool(scores[i] > threshold), "heatmap": heatmap_path})
    result = {"threshold": threshold, "predictions": rows, "errors": errors, "output_dir": output_dir}
    if primary:
        _write_outputs(result, output_dir)
    return result


def format_summary(result: dict) -> str:
    """What the command line prints after :func:`predict_path`."""
    lines = [f"could not read {f}: {err}" for f, err in result["errors"].items()]
    lines.append(f"scored {len(result['predictions'])} image(s), {len(result['errors'])} unreadable; "
                 f"results in {result['output_dir']}")
    return "\n".join(lines)


def _safe_name(path: str, root: str) -> str:
    rel = os.path.relpath(path, root if os.path.isdir(root) else os.path.dirname(root))
    return os.path.splitext(rel)[0].replace(os.sep, "__")


def _save_png(rgb01: np.ndarray, path: str) -> None:
    with files.atomic_write(path, "wb") as f:
        Image.fromarray((rgb01 * 255).round().astype(np.uint8)).save(f, format="PNG")


def _write_outputs(result: dict, output_dir: str) -> None:
    files.write_json(os.path.join(output_dir, "predictions.json"), result)
    with files.atomic_write(os.path.join(output_dir, "predictions.csv"), newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "score", "defective", "heatmap"])
        writer.writeheader()
        writer.writerows(result["predictions"])
