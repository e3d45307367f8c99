"""All evaluation numbers of one test set in one dict, with names that say which metric is which."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rgpkd_jax.metrics.aupro import OFFICIAL_FPR_LIMIT, aupro, aupro_rd4ad_per_image, pro_curve
from rgpkd_jax.metrics.auroc import as_binary, roc_auc, roc_curve

GOOD = "good"
# The headline metrics (compute_metrics' keys) in report order, and the words every printed summary
# and figure names them by: "AU-PRO" alone would not say which of the two (metrics/aupro.py).
METRIC_LABELS = {
    "image_auroc": "image AUROC",
    "pixel_auroc": "pixel AUROC",
    "aupro": "AU-PRO (official)",
    "aupro_rd4ad_per_image": "AUPRO (RD4AD per-image)",
}
# compute_metrics' key of the images left out of the RD4AD per-image AUPRO (not a number: the
# evaluator writes it beside the metrics).
PER_IMAGE_AUPRO_LEFT_OUT = "aupro_rd4ad_per_image/left_out"


def round_image_scores(scores, decimals: int) -> np.ndarray:
    """Image scores rounded to ``decimals`` places as SK-RD4AD's image-only evaluation does before
    its image AUROC (Python ``round`` of a numpy float64, i.e. ``np.round``; docs/reference.md
    §3.3); ``decimals`` -1 leaves them as they are (``config.eval.image_score_decimals``)."""
    check_image_score_decimals(decimals)
    if decimals == -1:
        return np.asarray(scores)
    return np.round(np.asarray(scores, np.float64), decimals)


def check_image_score_decimals(decimals) -> None:
    if isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < -1:
        raise ValueError(f"config.eval.image_score_decimals must be -1 (no rounding) or a number of "
                         f"decimals >= 0, got {decimals!r}")


def _prepare(maps, labels, scores):
    maps = np.asarray(maps)
    labels = np.asarray(labels)
    if maps.ndim != 3 or labels.shape != (len(maps),):
        raise ValueError(f"maps must be (N, H, W) and labels (N,); got {maps.shape} and {labels.shape}.")
    if scores is None:
        scores = maps.reshape(len(maps), -1).max(axis=1)
    scores = np.asarray(scores)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} must be one per image, like labels {labels.shape}.")
    return maps, labels, scores


def compute_metrics(maps, masks, labels, scores=None, defect_types: Sequence[str] | None = None,
                    *, fpr_limit: float = OFFICIAL_FPR_LIMIT,
                    per_image_aupro: bool = True,
                    file_names: Sequence[str] | None = None) -> dict[str, float | int | dict]:
    """Image AUROC, pixel AUROC, official AU-PRO and the RD4AD per-image AUPRO of a test set.

    Args:
      maps: (N, H, W) anomaly maps of every test image.
      masks: (N, H, W) ground truth in {0, 1}, or None for datasets with image labels only
        (then only the image metrics are returned).
      labels: (N,) 0 good / 1 defective (the folder label, as the official MVTec script).
      scores: (N,) image scores; default the max of each map (RD4AD).
      defect_types: (N,) folder names; adds ``image_auroc/<type>`` (that type against good).
      fpr_limit: FPR limit of both AU-PRO variants (0.3 in every published table).
      per_image_aupro: also compute the RD4AD per-image variant.
      file_names: (N,) names of the images, to list those the per-image variant leaves out.

    Keys: ``image_auroc``, ``pixel_auroc``, ``aupro`` (official MVTec, pooled over all images),
    ``aupro_rd4ad_per_image`` (the RD4AD/SK-RD4AD code's number; not comparable with ``aupro``)
    with ``aupro_rd4ad_per_image/num_images`` and ``/num_skipped`` (defective images left out,
    empty masks included; :func:`~rgpkd_jax.metrics.aupro.aupro_rd4ad_per_image` says why), and
    ``image_auroc/<type>``. Values are unrounded fractions in [0, 1], except
    ``aupro_rd4ad_per_image/left_out``: reason -> file names (indices without ``file_names``) of
    the left-out images.
    """
    maps, labels, scores = _prepare(maps, labels, scores)
    results: dict[str, float | int] = {"image_auroc": roc_auc(scores, labels, what="image_auroc")}
    if defect_types is not None:
        types = np.asarray(defect_types).astype(str)
        if types.shape != labels.shape:
            raise ValueError(f"defect_types {types.shape} must be one per image, like labels.")
        if not np.any(types == GOOD):
            raise ValueError(f"defect_types has no {GOOD!r} entry; image_auroc/<type> compares each "
                             f"defect type with the {GOOD!r} images (found {sorted(set(types))[:5]}).")
        for defect in sorted(set(types.tolist()) - {GOOD}):
            chosen = (types == defect) | (types == GOOD)
            results[f"image_auroc/{defect}"] = roc_auc(scores[chosen], labels[chosen],
                                                       what=f"image_auroc/{defect}")
    if masks is None:
        return results
    masks = as_binary(masks, "ground-truth masks")
    results["pixel_auroc"] = roc_auc(maps, masks, what="pixel_auroc")
    results["aupro"] = aupro(maps, masks, fpr_limit=fpr_limit)
    if not per_image_aupro:
        return results
    per_image = aupro_rd4ad_per_image(maps, masks, labels, fpr_limit=fpr_limit)
    results["aupro_rd4ad_per_image"] = per_image.mean
    results["aupro_rd4ad_per_image/num_images"] = per_image.num_images
    results["aupro_rd4ad_per_image/num_skipped"] = sum(per_image.skipped.values())
    names = np.asarray(file_names).astype(str).tolist() if file_names is not None else None
    results[PER_IMAGE_AUPRO_LEFT_OUT] = {
        reason: [names[i] for i in indices] if names else indices
        for reason, indices in per_image.skipped_images.items()}
    return results


def _thin(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` evenly spaced points of a curve, both end points kept (for plots)."""
    if x.size <= max_points:
        return x, y
    keep = np.unique(np.linspace(0, x.size - 1, max_points).round().astype(np.int64))
    return x[keep], y[keep]


def metric_curves(maps, masks, labels, scores=None, *, fpr_limit: float = OFFICIAL_FPR_LIMIT,
                  max_points: int = 2000) -> dict[str, np.ndarray]:
    """Curves behind :func:`compute_metrics`, thinned to ``max_points`` each for plotting.

    Keys: ``image_roc/fpr``, ``image_roc/tpr``, and with masks ``pixel_roc/fpr``, ``pixel_roc/tpr``,
    ``pro/fpr``, ``pro/pro`` (the official PRO curve, up to ``fpr_limit``).
    """
    maps, labels, scores = _prepare(maps, labels, scores)
    curves = {}
    fpr, tpr, _ = roc_curve(scores, labels, what="image_auroc")
    curves["image_roc/fpr"], curves["image_roc/tpr"] = _thin(fpr, tpr, max_points)
    if masks is None:
        return curves
    masks = as_binary(masks, "ground-truth masks")
    fpr, tpr, _ = roc_curve(maps, masks, what="pixel_auroc")
    curves["pixel_roc/fpr"], curves["pixel_roc/tpr"] = _thin(fpr, tpr, max_points)
    curves["pro/fpr"], curves["pro/pro"] = _thin(*pro_curve(maps, masks, fpr_limit=fpr_limit),
                                                 max_points)
    return curves
