"""What the benchmark report (docs/report.md) shows of one evaluation, recorded while the maps exist.

An evaluation that draws its figures also writes ``report_assets/`` beside them:
``assets.json`` (the metric curves thinned to ``CURVE_POINTS`` points, the gallery's images with
their scores and the threshold, the evaluation's throughput) and one JPEG thumbnail per gallery
image: the input and its heat map side by side, both with the ground-truth outline. The gallery
shows where a method fails: the normal images it scored highest (false alarms first), the defects
it scored lowest (misses first) and a typical (median-scored) one of each. Sizes are bounded (about
10 KB per thumbnail, ``GALLERY_PER_KIND`` per kind) so that a report of many jobs stays small.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from scipy import ndimage

from rgpkd_jax import files
from rgpkd_jax.deploy.images import overlay
from rgpkd_jax.metrics import summary

ASSETS_DIR = "report_assets"
ASSETS_FILE = "assets.json"
CURVE_POINTS = 200
GALLERY_PER_KIND = 3
THUMBNAIL_SIDE = 128      # pixels of each panel's longer side (never enlarged)
JPEG_QUALITY = 85
OUTLINE_RGB = (255, 0, 255)  # magenta: not a colour of the jet heat map
# Gallery kinds, in the order the report shows them.
NORMAL_HIGHEST, DEFECT_LOWEST = "normal, scored highest", "defect, scored lowest"
NORMAL_TYPICAL, DEFECT_TYPICAL = "normal, typical (median score)", "defect, typical (median score)"


def gallery_picks(labels: np.ndarray, scores: np.ndarray, per_kind: int = GALLERY_PER_KIND) -> list[tuple[int, str]]:
    """(index, kind) of the gallery's images, each image once, deterministic (stable sorts)."""
    picks: dict[int, str] = {}
    for label, kind, typical, worst_first in ((0, NORMAL_HIGHEST, NORMAL_TYPICAL, -1),
                                              (1, DEFECT_LOWEST, DEFECT_TYPICAL, 1)):
        members = np.flatnonzero(labels == label)
        if not len(members):
            continue
        ordered = members[np.argsort(worst_first * scores[members], kind="stable")]
        for index in ordered[:per_kind]:
            picks.setdefault(int(index), kind)
        picks.setdefault(int(ordered[len(ordered) // 2]), typical)
    return list(picks.items())


def _outlined(panel: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``panel`` (uint8 RGB) with the boundary pixels of ``mask`` (bool, same size) painted."""
    edge = mask & ~ndimage.binary_erosion(mask, border_value=0)
    panel = panel.copy()
    panel[edge] = OUTLINE_RGB
    return panel


def thumbnail(image: np.ndarray, heat: np.ndarray, mask: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """The image and its heat map (colour range [vmin, vmax]) side by side, each at most
    THUMBNAIL_SIDE pixels, both with the ground-truth outline: (h, 2 w + 2, 3) uint8."""
    height, width = image.shape[:2]
    scale = min(1.0, THUMBNAIL_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL: (width, height)
    small_mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
    panels = []
    for panel in (image, (overlay(image, heat, vmin, vmax) * 255).round().astype(np.uint8)):
        small = np.asarray(Image.fromarray(panel).resize(size, Image.BILINEAR))
        panels.append(_outlined(small, small_mask))
    gap = np.full((size[1], 2, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1]], axis=1)


def _curves_json(curves: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """The curves thinned to CURVE_POINTS (pairs of keys ``name/x``, ``name/y`` thinned together)."""
    thinned = {}
    names = list(dict.fromkeys(key.split("/")[0] for key in curves))
    for name in names:
        x_key, y_key = [key for key in curves if key.split("/")[0] == name]
        x, y = summary.thin(curves[x_key], curves[y_key], CURVE_POINTS)
        thinned[x_key], thinned[y_key] = ([round(float(v), 6) for v in values] for values in (x, y))
    return thinned


def write(predictions: dict, curves: dict[str, np.ndarray], out_dir: str, *, threshold: float | None,
          fpr_limit: float, inference: dict | None) -> str:
    """Writes ``out_dir/report_assets/`` (the thumbnails, then ``assets.json`` last: its presence
    means the folder is complete). ``predictions``: `evaluate.collect_test_predictions`' arrays
    (with images); ``inference``: the evaluation's throughput (None where it was not measured).
    Returns the folder."""
    folder = os.path.join(out_dir, ASSETS_DIR)
    os.makedirs(folder, exist_ok=True)
    picks = gallery_picks(predictions["label"], predictions["score"])
    shown = predictions["map"][[index for index, _ in picks]] if picks else np.zeros((1, 1))
    known = [] if threshold is None else [threshold]
    vmin, vmax = min([float(shown.min()), *known]), max([float(shown.max()), *known])
    gallery = []
    for number, (index, kind) in enumerate(picks):
        name = f"{number:02d}.jpg"
        picture = thumbnail(predictions["image"][index], predictions["map"][index], predictions["mask"][index],
                            vmin, vmax)
        with files.atomic_write(os.path.join(folder, name), "wb") as f:
            Image.fromarray(picture).save(f, format="JPEG", quality=JPEG_QUALITY)
        score = float(predictions["score"][index])
        gallery.append({
            "file": name, "kind": kind, "file_name": str(predictions["file_name"][index]),
            "defect_type": str(predictions["defect_type"][index]), "label": int(predictions["label"][index]),
            "score": score, "decision": None if threshold is None else ("defective" if score > threshold else "good"),
        })
    files.write_json(os.path.join(folder, ASSETS_FILE), {
        "curves": _curves_json(curves), "fpr_limit": fpr_limit, "threshold": threshold,
        "heat_range": [vmin, vmax], "gallery": gallery, "inference": inference,
    })
    return folder
