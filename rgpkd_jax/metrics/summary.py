"""All evaluation numbers of one test set in one dict, with names that say which metric is which."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rgpkd_jax.metrics import aupimo as aupimo_lib
from rgpkd_jax.metrics import aupro as aupro_lib
from rgpkd_jax.metrics import ranking
from rgpkd_jax.metrics.auroc import roc_auc, roc_curve

GOOD = "good"
# The headline metrics (compute_metrics' keys) in report order, and the words every printed summary
# and figure names them by: "AU-PRO" alone would not say which of the two (metrics/aupro.py).
METRIC_LABELS = {
    "image_auroc": "image AUROC",
    "image_ap": "image AP",
    "image_f1_max": "image F1-max",
    "pixel_auroc": "pixel AUROC",
    "pixel_ap": "pixel AP",
    "pixel_f1_max": "pixel F1-max",
    "aupro": "AU-PRO (official)",
    "mad": "mAD (mean of the 7)",
    "aupimo": "AUPIMO",
    "aupro_rd4ad_per_image": "AUPRO (RD4AD per-image)",
}
# compute_metrics' keys that hold no number (the evaluator writes them beside the metrics): the
# images left out of the RD4AD per-image AUPRO, and metric -> why it has no value.
PER_IMAGE_AUPRO_LEFT_OUT = "aupro_rd4ad_per_image/left_out"
UNAVAILABLE = "unavailable"
# mAD is the mean of these seven, as the ADer benchmark defines it (docs/reference.md §5.6).
MAD_METRICS = ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro")
# The metrics that need ground-truth masks.
MASK_METRICS = ("pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro", "mad", "aupimo", "aupro_rd4ad_per_image")
NO_MASKS = "the dataset has image labels only (no ground-truth masks)"


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
                    *, fpr_limit: float = aupro_lib.OFFICIAL_FPR_LIMIT,
                    per_image_aupro: bool = True, aupimo: bool = True,
                    file_names: Sequence[str] | None = None) -> dict[str, float | int | dict]:
    """Every metric of a test set: the field's seven and their mean mAD, AUPIMO, per-image AUPRO.

    Args:
      maps: (N, H, W) anomaly maps of every test image.
      masks: (N, H, W) ground truth in {0, 1}, or None for datasets with image labels only
        (then only the image metrics are returned, and the pixel metrics are listed as unavailable).
      labels: (N,) 0 good / 1 defective (the folder label, as the official MVTec script).
      scores: (N,) image scores; default the max of each map (RD4AD).
      defect_types: (N,) folder names; adds ``image_auroc/<type>`` (that type against good).
      fpr_limit: FPR limit of both AU-PRO variants (0.3 in every published table).
      per_image_aupro: also compute the RD4AD per-image variant.
      aupimo: also compute AUPIMO (anomalib's definition).
      file_names: (N,) names of the images, to list those the per-image variant leaves out.

    Keys (docs/reference.md §5.6): ``image_auroc``, ``image_ap``, ``image_f1_max`` (image scores
    against labels), ``pixel_auroc``, ``pixel_ap``, ``pixel_f1_max`` (all pixels of the set pooled;
    one sort serves them and the AU-PRO), ``aupro`` (official MVTec, pooled over all images),
    ``mad`` (mean of those seven), ``aupimo`` with ``aupimo/num_images`` and ``aupimo/num_points``,
    ``aupro_rd4ad_per_image`` (the RD4AD/SK-RD4AD code's number; not comparable with ``aupro``)
    with ``aupro_rd4ad_per_image/num_images`` and ``/num_skipped`` (defective images left out,
    empty masks included; :func:`~rgpkd_jax.metrics.aupro.aupro_rd4ad_per_image` says why), and
    ``image_auroc/<type>``. Values are unrounded fractions in [0, 1]. Two keys hold no number:
    ``aupro_rd4ad_per_image/left_out`` (reason -> file names, or indices without ``file_names``,
    of the left-out images) and ``unavailable`` (metric -> why it has no value; absent when
    every metric has one). A metric without a value is absent, never NaN.
    """
    maps, labels, scores = _prepare(maps, labels, scores)
    image = ranking.rank(scores, labels, what="image")
    results: dict[str, float | int | dict] = {
        "image_auroc": image.roc_auc(), "image_ap": image.average_precision(), "image_f1_max": image.f1_max()}
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
        requested = {"aupimo": aupimo, "aupro_rd4ad_per_image": per_image_aupro}
        results[UNAVAILABLE] = {name: NO_MASKS for name in MASK_METRICS if requested.get(name, True)}
        return results
    masks = ranking.as_binary(masks, "ground-truth masks")
    pixels = ranking.rank(maps, masks, what="pixel")
    results["pixel_auroc"] = pixels.roc_auc()
    results["pixel_ap"] = pixels.average_precision()
    results["pixel_f1_max"] = pixels.f1_max()
    results["aupro"] = aupro_lib.aupro(maps, masks, fpr_limit=fpr_limit, pixels=pixels)
    del pixels  # counts per defective pixel, not needed by the metrics below
    results["mad"] = float(np.mean([results[name] for name in MAD_METRICS]))
    unavailable = {}
    if aupimo:
        try:
            result = aupimo_lib.aupimo(maps, masks)
        except aupimo_lib.AupimoUndefinedError as error:
            unavailable["aupimo"] = str(error)
        else:
            results["aupimo"] = result.mean
            results["aupimo/num_images"] = result.num_images
            results["aupimo/num_points"] = result.num_points
    if per_image_aupro:
        per_image = aupro_lib.aupro_rd4ad_per_image(maps, masks, labels, fpr_limit=fpr_limit)
        results["aupro_rd4ad_per_image"] = per_image.mean
        results["aupro_rd4ad_per_image/num_images"] = per_image.num_images
        results["aupro_rd4ad_per_image/num_skipped"] = sum(per_image.skipped.values())
        names = np.asarray(file_names).astype(str).tolist() if file_names is not None else None
        results[PER_IMAGE_AUPRO_LEFT_OUT] = {
            reason: [names[i] for i in indices] if names else indices
            for reason, indices in per_image.skipped_images.items()}
    if unavailable:
        results[UNAVAILABLE] = unavailable
    return results


def thin(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` evenly spaced points of a curve, both end points kept (for plots)."""
    if x.size <= max_points:
        return x, y
    keep = np.unique(np.linspace(0, x.size - 1, max_points).round().astype(np.int64))
    return x[keep], y[keep]


def metric_curves(maps, masks, labels, scores=None, *, fpr_limit: float = aupro_lib.OFFICIAL_FPR_LIMIT,
                  max_points: int = 2000) -> dict[str, np.ndarray]:
    """Curves behind :func:`compute_metrics`, thinned to ``max_points`` each for plotting.

    Keys: ``image_roc/fpr``, ``image_roc/tpr``, and with masks ``pixel_roc/fpr``, ``pixel_roc/tpr``,
    ``pixel_pr/recall``, ``pixel_pr/precision`` (at each distinct defective-pixel score; pixel AP
    sums its right-continuous steps), ``pro/fpr``, ``pro/pro`` (the official PRO curve, up to
    ``fpr_limit``). The pixel curves share one sort.
    """
    maps, labels, scores = _prepare(maps, labels, scores)
    curves = {}
    curves["image_roc/fpr"], curves["image_roc/tpr"] = thin(*roc_curve(scores, labels, what="image"), max_points)
    if masks is None:
        return curves
    masks = ranking.as_binary(masks, "ground-truth masks")
    pixels = ranking.rank(maps, masks, what="pixel")
    curves["pixel_roc/fpr"], curves["pixel_roc/tpr"] = thin(*pixels.roc_curve(), max_points)
    curves["pixel_pr/recall"], curves["pixel_pr/precision"] = thin(*pixels.precision_recall_curve(), max_points)
    curves["pro/fpr"], curves["pro/pro"] = thin(
        *aupro_lib.pro_curve(maps, masks, fpr_limit=fpr_limit, pixels=pixels), max_points)
    return curves
