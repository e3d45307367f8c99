"""Time and peak memory of the evaluation metrics, ours against scikit-learn's on the same maps.

    python -m benchmarks.metrics --output_dir workdirs/metrics_bench            # ~30 M pixels
    python -m benchmarks.metrics --output_dir DIR --num_images=30 --image_size=64 --repeats=1   # quick

The maps are a VisA-sized test set by default: 460 images of 256 x 256 px (30 M pixels), MVTec-like
masks (`benchmarks.speed.inputs.anomaly_test_set`: a third of the images good), masks as bool as
the evaluator holds them. Rows (docs/protocol.md, "Cost"):

* ``ours/seven``: `compute_metrics` with the seven metrics of the field and mAD (image AUROC, AP,
  F1-max; pixel AUROC, AP, F1-max from one ranking of the pixels; the official AU-PRO from the same);
* ``ours/evaluator``: everything the evaluator computes (adds AUPIMO and the RD4AD per-image AUPRO);
* ``ours/pixel_three``: pixel AUROC, AP and F1-max from one ranking;
* ``sklearn/pixel_three``: the same three with ``roc_auc_score``, ``average_precision_score`` and
  ``precision_recall_curve``;
* ``sklearn/six``: sklearn's image and pixel AUROC, AP and F1-max (sklearn has no AU-PRO).

Each row: the best of ``--repeats`` timed calls, and the peak memory one more call allocates
(tracemalloc, which numpy reports its arrays to) above what it was given, in MiB and as a multiple
of the maps' size. The values of ours and sklearn's are written beside, with their largest
difference. Writes ``metrics_benchmark.json`` and ``metrics_benchmark.md`` into ``--output_dir``.
"""

from __future__ import annotations

import os
import tracemalloc
from typing import Callable

import numpy as np
import sklearn.metrics

from benchmarks.speed import inputs, timing
from rgpkd_jax import files
from rgpkd_jax.metrics import ranking, summary

JSON_FILE = "metrics_benchmark.json"
MARKDOWN_FILE = "metrics_benchmark.md"
MIB = 2 ** 20
# The metrics both sides compute, as compute_metrics names them.
SHARED_METRICS = ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max")


def _sklearn_f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    precision, recall, _ = sklearn.metrics.precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    return float(np.max(f1[np.isfinite(f1)]))


def _sklearn_three(labels: np.ndarray, scores: np.ndarray, level: str) -> dict[str, float]:
    return {f"{level}_auroc": float(sklearn.metrics.roc_auc_score(labels, scores)),
            f"{level}_ap": float(sklearn.metrics.average_precision_score(labels, scores)),
            f"{level}_f1_max": _sklearn_f1_max(labels, scores)}


def _ours_pixel_three(maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    pixels = ranking.rank(maps, masks, what="pixel")
    return {"pixel_auroc": pixels.roc_auc(), "pixel_ap": pixels.average_precision(),
            "pixel_f1_max": pixels.f1_max()}


def cases(maps: np.ndarray, masks: np.ndarray, labels: np.ndarray) -> dict[str, tuple[str, Callable[[], dict]]]:
    """name -> (description, call returning metric -> value) on the same maps."""
    scores = maps.reshape(len(maps), -1).max(axis=1)
    flat_masks, flat_maps = masks.reshape(-1), maps.reshape(-1)  # views: sklearn wants 1-D
    return {
        "ours/seven": ("compute_metrics: the seven (image and pixel AUROC, AP, F1-max; AU-PRO) and mAD",
                       lambda: summary.compute_metrics(maps, masks, labels, scores, per_image_aupro=False,
                                                       aupimo=False)),
        "ours/evaluator": ("compute_metrics as the evaluator runs it: the seven, mAD, AUPIMO, RD4AD "
                           "per-image AUPRO",
                           lambda: summary.compute_metrics(maps, masks, labels, scores)),
        "ours/pixel_three": ("pixel AUROC, AP and F1-max from one ranking",
                             lambda: _ours_pixel_three(maps, masks)),
        "sklearn/pixel_three": ("sklearn roc_auc_score, average_precision_score, precision_recall_curve "
                                "on the pixels", lambda: _sklearn_three(flat_masks, flat_maps, "pixel")),
        "sklearn/six": ("sklearn's image and pixel AUROC, AP and F1-max (no AU-PRO in sklearn)",
                        lambda: {**_sklearn_three(labels, scores, "image"),
                                 **_sklearn_three(flat_masks, flat_maps, "pixel")}),
    }


def peak_mib(fn: Callable[[], object]) -> float:
    """MiB that one call of ``fn`` allocates at its peak above what was allocated before it."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fn()
        return (tracemalloc.get_traced_memory()[1] - before) / MIB
    finally:
        tracemalloc.stop()


def run(num_images: int, image_size: int, repeats: int, seed: int) -> dict:
    """The report of one test-set size: inputs, one row per case, the values and their agreement."""
    maps, masks, labels = inputs.anomaly_test_set(num_images, image_size, seed=seed)
    masks = masks > 0  # as the evaluator holds them (rgpkd_jax.evaluate.collect_test_predictions)
    rows, values = [], {}
    for name, (description, fn) in cases(maps, masks, labels).items():
        values[name] = {k: v for k, v in fn().items() if not isinstance(v, dict)}  # also a warm-up
        seconds = timing.seconds_per_call(fn, warmup=0, repeats=repeats)
        peak = peak_mib(fn)
        rows.append({"name": name, "description": description, "seconds": seconds, "best_s": min(seconds),
                     "peak_mib": peak, "peak_vs_maps": peak * MIB / maps.nbytes})
    difference = max(abs(values["ours/seven"][k] - values["sklearn/six"][k]) for k in SHARED_METRICS)
    return {
        "inputs": {"num_images": num_images, "image_size": image_size, "pixels": int(maps.size),
                   "defective_fraction": float(masks.mean()), "good_images": int(np.sum(labels == 0)),
                   "maps_mib": maps.nbytes / MIB, "seed": seed, "generator": "benchmarks.speed.inputs.anomaly_test_set"},
        "repeats": repeats,
        "load_average": list(os.getloadavg()),
        "rows": rows,
        "values": values,
        "max_abs_difference_ours_vs_sklearn": difference,
    }


def markdown(reports: list[dict], command: str) -> str:
    """One table per test-set size."""
    lines = ["# Metric time and memory: ours against scikit-learn", "", f"`{command}`", ""]
    for report in reports:
        i = report["inputs"]
        lines += [f"## {i['num_images']} maps of {i['image_size']} x {i['image_size']} px", "",
                  f"{i['pixels'] / 1e6:.1f} M pixels, {i['maps_mib']:.1f} MiB of float32; "
                  f"{i['defective_fraction']:.2%} defective pixels, {i['good_images']} good images; seed {i['seed']}; "
                  f"best of {report['repeats']} calls; load average "
                  f"{', '.join(f'{x:.1f}' for x in report['load_average'])}.",
                  "",
                  "| case | what | seconds | peak MiB | peak / maps |",
                  "|---|---|---:|---:|---:|"]
        lines += [f"| {r['name']} | {r['description']} | {r['best_s']:.3f} | {r['peak_mib']:.0f} | "
                  f"{r['peak_vs_maps']:.2f} |" for r in report["rows"]]
        lines += ["", "Largest difference between our values and sklearn's (image and pixel AUROC, AP, "
                      f"F1-max): {report['max_abs_difference_ours_vs_sklearn']:.1e}.", ""]
    return "\n".join(lines)


def write(reports: list[dict], output_dir: str, command: str) -> list[str]:
    """The JSON and Markdown files in ``output_dir`` (checked writable before the run)."""
    paths = [os.path.join(output_dir, JSON_FILE), os.path.join(output_dir, MARKDOWN_FILE)]
    files.write_json(paths[0], {"command": command, "test_sets": reports})
    files.write_text(paths[1], markdown(reports, command))
    return paths
