"""What an evaluation records for the benchmark report (rgpkd_jax/report_assets.py): the gallery's
choice, the thumbnails' outlines, and curves that are the metrics' own."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics
from scipy import ndimage

from rgpkd_jax import report_assets
from rgpkd_jax.metrics import summary
from rgpkd_jax.report_assets import DEFECT_LOWEST, DEFECT_TYPICAL, NORMAL_HIGHEST, NORMAL_TYPICAL


def test_the_gallery_shows_the_worst_normals_the_worst_defects_and_a_typical_one_of_each():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 9 + [1] * 7)
    scores = rng.permutation(16).astype(float)  # distinct: the expected order is unambiguous
    picks = dict(report_assets.gallery_picks(labels, scores, per_kind=3))
    normals, defects = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    by_score_normals = normals[np.argsort(-scores[normals])]
    by_score_defects = defects[np.argsort(scores[defects])]
    assert [i for i, kind in picks.items() if kind == NORMAL_HIGHEST] == list(by_score_normals[:3])
    assert [i for i, kind in picks.items() if kind == DEFECT_LOWEST] == list(by_score_defects[:3])
    # the median-scored image of each kind (9 normals: the 5th highest; 7 defects: the 4th lowest)
    assert [i for i, kind in picks.items() if kind == NORMAL_TYPICAL] == [by_score_normals[4]]
    assert [i for i, kind in picks.items() if kind == DEFECT_TYPICAL] == [by_score_defects[3]]


def test_a_small_test_set_shows_each_image_once_and_a_set_without_defects_only_normals():
    labels, scores = np.array([0, 0, 1]), np.array([0.2, 0.9, 0.5])
    picks = report_assets.gallery_picks(labels, scores, per_kind=3)
    assert sorted(i for i, _ in picks) == [0, 1, 2]
    only_normal = report_assets.gallery_picks(np.zeros(4, int), np.arange(4.0), per_kind=2)
    assert {kind for _, kind in only_normal} == {NORMAL_HIGHEST, NORMAL_TYPICAL}


def test_thumbnails_outline_exactly_the_mask_boundary_on_both_panels():
    image = np.full((64, 64, 3), 128, np.uint8)
    heat = np.zeros((64, 64), np.float32)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 10:30] = True
    picture = report_assets.thumbnail(image, heat, mask, 0.0, 1.0)  # 64 px: not resized
    assert picture.shape == (64, 2 * 64 + 2, 3) and picture.dtype == np.uint8
    boundary = mask & ~ndimage.binary_erosion(mask)
    for panel in (picture[:, :64], picture[:, 66:]):
        painted = np.all(panel == report_assets.OUTLINE_RGB, axis=-1)
        np.testing.assert_array_equal(painted, boundary)
    big = report_assets.thumbnail(np.zeros((512, 256, 3), np.uint8), np.zeros((512, 256)), np.zeros((512, 256), bool), 0, 1)
    assert big.shape == (report_assets.THUMBNAIL_SIDE, 2 * report_assets.THUMBNAIL_SIDE // 2 + 2, 3)


def test_recorded_curves_lie_on_scikit_learn_s_roc_curve():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 500)
    scores = rng.normal(size=500) + labels
    curves = summary.metric_curves(np.zeros((500, 2, 2)), None, labels, scores)
    recorded = report_assets._curves_json(curves)
    assert len(recorded["image_roc/fpr"]) <= report_assets.CURVE_POINTS
    fpr, tpr, _ = sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)
    points = set(zip(np.round(fpr, 6), np.round(tpr, 6)))
    assert all((x, y) in points for x, y in zip(recorded["image_roc/fpr"], recorded["image_roc/tpr"]))
    assert (recorded["image_roc/fpr"][0], recorded["image_roc/fpr"][-1]) == (0.0, 1.0)
    # Thinned to every ~2.5th of ~500 points, a chord skips at most 3 steps of 1/250 in tpr: the area
    # moves by at most ~3/250 = 0.012.
    assert np.trapezoid(recorded["image_roc/tpr"], recorded["image_roc/fpr"]) == pytest.approx(
        sklearn.metrics.roc_auc_score(labels, scores), abs=0.02)
