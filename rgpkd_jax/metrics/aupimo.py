"""AUPIMO (Bertoldo et al., 2024): the area under the per-image overlap curve, as anomalib defines it.

docs/reference.md §5.7 gives the definition we follow (anomalib ``metrics/pimo`` at 161bb36): shared
thresholds evenly spaced between the lowest and highest score of the normal images (300,000 of them),
a pixel positive when its score is >= the threshold, the x axis the FPR over the normal images'
pixels, each anomalous image's TPR (fraction of its defective pixels detected) integrated over
log(FPR) between the thresholds whose FPR is closest to 1e-5 and 1e-4, divided by log(1e-4 / 1e-5).
The reported number is the mean over anomalous images.

Only the highest-scoring normal pixels matter at FPR 1e-4, so instead of counting every pixel at
every threshold we keep each normal image's top few pixels (a partial sort), and count the defective
pixels of each anomalous image only at the thresholds inside the integration range.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rgpkd_jax.metrics.ranking import as_binary, check_finite_scores

FPR_BOUNDS = (1e-5, 1e-4)
NUM_THRESHOLDS = 300_000
# anomalib refuses an integration range of this many points or fewer (unless forced).
MIN_POINTS = 30


class AupimoUndefinedError(ValueError):
    """The test set cannot give an AUPIMO (too few normal pixels or thresholds in the FPR range)."""


@dataclasses.dataclass(frozen=True)
class Aupimo:
    """Result of :func:`aupimo`.

    Attributes:
      mean: mean over the anomalous images (those whose mask has a defective pixel).
      per_image: (N,) value per image; NaN for normal images.
      num_points: thresholds inside the integration range (anomalib warns below 300).
    """

    mean: float
    per_image: np.ndarray
    num_points: int

    @property
    def num_images(self) -> int:
        return int(np.count_nonzero(np.isfinite(self.per_image)))


def _top_normal_scores(maps: np.ndarray, normal: np.ndarray, needed: int) -> tuple[np.ndarray, float]:
    """(sorted scores, bound): the normal images' highest pixels, ascending; for every threshold
    above ``bound`` they count the normal pixels at or above it exactly, and at or below ``bound``
    at least ``needed`` normal pixels score at or above it."""
    pixels = maps.shape[1] * maps.shape[2]
    if needed >= pixels:  # tiny images: keep every normal pixel
        return np.sort(maps[normal].ravel()), -np.inf
    tops, bound = [], -np.inf
    for i in np.flatnonzero(normal):
        top = np.partition(maps[i].ravel(), pixels - needed)[pixels - needed:].copy()  # not a view of the image
        tops.append(top)
        bound = max(bound, float(top[0]))  # every pixel above an image's cut is in its top
    return np.sort(np.concatenate(tops)), bound


def _closest_index(fpr: np.ndarray, level: float) -> int:
    """anomalib's choice: the first threshold index whose FPR is closest to ``level``."""
    return int(np.argmin(np.abs(fpr - level)))


def aupimo(maps, masks, *, fpr_bounds: tuple[float, float] = FPR_BOUNDS,
           num_thresholds: int = NUM_THRESHOLDS) -> Aupimo:
    """AUPIMO of each anomalous image and their mean (docs/reference.md §5.7).

    Args:
      maps: (N, H, W) anomaly maps of every test image.
      masks: (N, H, W) ground truth in {0, 1}; an image is anomalous when its mask is not empty.
      fpr_bounds: (lower, upper) FPR of the integration range (anomalib: 1e-5, 1e-4).
      num_thresholds: evenly spaced thresholds over the normal images' scores (anomalib: 300,000).

    Raises AupimoUndefinedError where anomalib raises: no normal or no anomalous image, constant
    normal maps, thresholds that collapse in the maps' dtype, a lower bound below the smallest FPR
    the normal pixels can give (fewer than 1 / lower normal pixels), or ``MIN_POINTS`` or fewer
    thresholds in the range. ValueError for malformed input.
    """
    lower, upper = fpr_bounds
    if not 0.0 < lower < upper <= 1.0:
        raise ValueError(f"AUPIMO fpr_bounds must satisfy 0 < lower < upper <= 1; got {fpr_bounds}.")
    if num_thresholds < 2:
        raise ValueError(f"AUPIMO needs at least 2 thresholds; got {num_thresholds}.")
    maps = check_finite_scores(maps, "anomaly maps")
    masks = as_binary(masks, "ground-truth masks")
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise ValueError(f"anomaly maps {maps.shape} and masks {masks.shape} must both be "
                         "(num_images, H, W) at the same resolution.")
    anomalous = masks.reshape(len(masks), -1).any(axis=1)
    if anomalous.all() or not anomalous.any():
        raise AupimoUndefinedError("AUPIMO needs both normal images (empty mask) and anomalous ones; "
                                   f"this test set has {int(anomalous.sum())} anomalous of {len(masks)}.")
    normal = ~anomalous
    num_normal_pixels = int(normal.sum()) * maps.shape[1] * maps.shape[2]
    low = min(float(maps[i].min()) for i in np.flatnonzero(normal))
    high = max(float(maps[i].max()) for i in np.flatnonzero(normal))
    thresholds = np.linspace(low, high, num_thresholds).astype(maps.dtype)
    if not np.all(np.diff(thresholds) > 0):
        raise AupimoUndefinedError(
            f"AUPIMO: {num_thresholds} thresholds between the normal images' lowest and highest "
            f"scores ({low:.6g}, {high:.6g}) are not distinct in {maps.dtype}.")

    # Thresholds whose FPR can be closest to the bounds have FPR < 2 * upper, so fewer than
    # `needed` normal pixels at or above them: they lie above `bound`, where counts are exact.
    needed = min(num_normal_pixels, int(np.ceil(2 * upper * num_normal_pixels)) + 1)
    top, bound = _top_normal_scores(maps, normal, needed)
    first = int(np.searchsorted(thresholds, bound, side="right"))
    fpr = (top.size - np.searchsorted(top, thresholds[first:], side="left")) / num_normal_pixels
    if fpr.size == 0 or lower < fpr[-1]:
        raise AupimoUndefinedError(
            f"AUPIMO: no threshold gives an FPR as low as {lower:g} on the {num_normal_pixels} pixels of "
            f"the normal images (at least 1 / {lower:g} pixels are needed, few at the highest score).")
    start = first + _closest_index(fpr, upper)   # lowest threshold of the range
    stop = first + _closest_index(fpr, lower)    # highest
    num_points = stop - start + 1
    if num_points <= MIN_POINTS:
        raise AupimoUndefinedError(
            f"AUPIMO: only {num_points} of {num_thresholds} thresholds give an FPR between {lower:g} "
            f"and {upper:g} (anomalib needs more than {MIN_POINTS}).")
    in_range = thresholds[start:stop + 1]
    log_fpr = np.log(fpr[start - first:stop - first + 1])[::-1]  # ascending
    per_image = np.full(len(maps), np.nan)
    for i in np.flatnonzero(anomalous):
        defect = maps[i][masks[i]]
        # levels[p] = number of range thresholds <= the pixel's score: it is detected at those.
        levels = np.searchsorted(in_range, defect, side="right")
        detected = np.cumsum(np.bincount(levels, minlength=num_points + 1)[::-1])[:-1]  # descending thresholds
        per_image[i] = np.trapezoid(detected / defect.size, log_fpr)
    per_image = np.clip(per_image / np.log(upper / lower), 0.0, 1.0)
    return Aupimo(mean=float(np.nanmean(per_image)), per_image=per_image, num_points=num_points)
