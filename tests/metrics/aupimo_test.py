"""AUPIMO against a full-curve reference written from anomalib's definition (docs/reference.md §5.7).

The reference computes every image's counts at every one of the evenly spaced thresholds (one
search per image over all of them), averages the normal images' per-image FPRs, picks the range by
the first index closest to each bound and integrates each anomalous image's TPR over log(FPR):
no top-pixel selection and no windowing, which is what the library does to be fast.
"""

import numpy as np
import pytest

from rgpkd_jax.metrics import aupimo as aupimo_lib
from rgpkd_jax.metrics.aupimo import AupimoUndefinedError, aupimo

TOLERANCE = 1e-9  # the same float64 trapezoid over the same points


def fraction_at_or_above(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of ``scores`` >= each threshold."""
    ordered = np.sort(scores.ravel())
    return (ordered.size - np.searchsorted(ordered, thresholds, side="left")) / ordered.size


def reference_aupimo(maps, masks, fpr_bounds, num_thresholds):
    anomalous = masks.reshape(len(masks), -1).any(axis=1)
    normal_maps = maps[~anomalous]
    thresholds = np.linspace(normal_maps.min(), normal_maps.max(), num_thresholds).astype(maps.dtype)
    shared_fpr = np.mean([fraction_at_or_above(m, thresholds) for m in normal_maps], axis=0)
    lower, upper = fpr_bounds
    start = int(np.argmin(np.abs(shared_fpr - upper)))
    stop = int(np.argmin(np.abs(shared_fpr - lower)))
    log_fpr = np.log(shared_fpr[start:stop + 1])[::-1]
    per_image = np.full(len(maps), np.nan)
    for i in np.flatnonzero(anomalous):
        tpr = fraction_at_or_above(maps[i][masks[i] > 0], thresholds)
        per_image[i] = np.clip(np.trapezoid(tpr[start:stop + 1][::-1], log_fpr) / np.log(upper / lower), 0, 1)
    return per_image, stop - start + 1


def anomaly_test_set(seed, num_normal, num_anomalous, size, levels=None):
    rng = np.random.default_rng(seed)
    masks = np.zeros((num_normal + num_anomalous, size, size), dtype=bool)
    for mask in masks[num_normal:]:
        y, x = rng.integers(0, size - size // 4, 2)
        mask[y:y + rng.integers(1, size // 4), x:x + rng.integers(1, size // 4)] = True
    maps = rng.normal(size=masks.shape) + 3.0 * rng.random(len(masks))[:, None, None] * masks
    if levels:  # quantised scores: long FPR plateaus, ties between thresholds' counts
        maps = np.round(maps * levels) / levels
    order = rng.permutation(len(masks))
    return maps[order].astype(np.float32), masks[order]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("levels", [None, 40])
def test_aupimo_equals_reference(seed, levels):
    maps, masks = anomaly_test_set(seed, num_normal=8, num_anomalous=8, size=32, levels=levels)
    bounds, num_thresholds = (1e-3, 1e-2), 5000  # 8192 normal pixels: FPR 1e-3 is 8 of them
    expected, num_points = reference_aupimo(maps, masks, bounds, num_thresholds)
    result = aupimo(maps, masks, fpr_bounds=bounds, num_thresholds=num_thresholds)
    np.testing.assert_allclose(result.per_image, expected, atol=TOLERANCE, rtol=0)
    assert result.num_points == num_points and result.num_images == 8
    assert result.mean == pytest.approx(np.nanmean(expected), abs=TOLERANCE)


def test_aupimo_with_anomalibs_defaults_equals_reference():
    """300,000 thresholds and FPR 1e-5..1e-4 need about 1e5 normal pixels or more."""
    maps, masks = anomaly_test_set(3, num_normal=12, num_anomalous=6, size=128)
    expected, num_points = reference_aupimo(maps, masks, aupimo_lib.FPR_BOUNDS, aupimo_lib.NUM_THRESHOLDS)
    result = aupimo(maps, masks)
    np.testing.assert_allclose(result.per_image, expected, atol=TOLERANCE, rtol=0)
    assert result.num_points == num_points > aupimo_lib.MIN_POINTS


def test_scores_exactly_on_thresholds_count_as_detected():
    """Scores on the grid k / 512 from 0 to 8 and 4097 thresholds: every threshold is a possible
    score, so only `score >= threshold` (anomalib's rule) gives the reference, for FPR and TPR."""
    maps, masks = anomaly_test_set(6, num_normal=8, num_anomalous=8, size=32)
    maps = np.clip(np.round((maps + 2.0) * 512) / 512, 0.0, 8.0)
    normal = np.flatnonzero(~masks.reshape(len(masks), -1).any(axis=1))
    maps[normal[0], 0, 0], maps[normal[1], 0, 0] = 0.0, 8.0
    bounds, num_thresholds = (1e-3, 1e-2), 4097
    assert np.isin(maps, np.linspace(0, 8, num_thresholds)).all()
    expected, _ = reference_aupimo(maps, masks, bounds, num_thresholds)
    result = aupimo(maps, masks, fpr_bounds=bounds, num_thresholds=num_thresholds)
    np.testing.assert_allclose(result.per_image, expected, atol=TOLERANCE, rtol=0)


def test_perfect_and_hopeless_images():
    maps, masks = anomaly_test_set(4, num_normal=8, num_anomalous=4, size=32)
    anomalous = np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1))
    maps[anomalous[0]][masks[anomalous[0]]] = maps.max() + 1      # above every normal pixel
    maps[anomalous[1]][masks[anomalous[1]]] = maps.min() - 1      # below every normal pixel
    result = aupimo(maps, masks, fpr_bounds=(1e-3, 1e-2), num_thresholds=5000)
    assert result.per_image[anomalous[0]] == 1.0 and result.per_image[anomalous[1]] == 0.0
    assert np.isnan(result.per_image[masks.reshape(len(masks), -1).any(axis=1) == 0]).all()


def test_undefined_cases_say_why():
    maps, masks = anomaly_test_set(5, num_normal=2, num_anomalous=2, size=32)  # 2048 normal pixels
    with pytest.raises(AupimoUndefinedError, match="no threshold gives an FPR as low as 1e-05"):
        aupimo(maps, masks)
    with pytest.raises(AupimoUndefinedError, match=r"only \d+ of 100 thresholds"):
        aupimo(maps, masks, fpr_bounds=(1e-3, 1e-2), num_thresholds=100)
    with pytest.raises(AupimoUndefinedError, match="needs both normal images"):
        aupimo(maps[masks.reshape(4, -1).any(axis=1)], masks[masks.reshape(4, -1).any(axis=1)])
    flat = maps.copy()
    flat[~masks.reshape(4, -1).any(axis=1)] = 0.5
    with pytest.raises(AupimoUndefinedError, match="not distinct"):
        aupimo(flat, masks)
    with pytest.raises(ValueError, match="0 < lower < upper <= 1"):
        aupimo(maps, masks, fpr_bounds=(1e-4, 1e-5))
