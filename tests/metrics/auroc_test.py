"""roc_auc / roc_curve against scikit-learn, degenerate inputs, and compute_metrics' keys."""

import numpy as np
import pytest
import sklearn.metrics

from rgpkd_jax.metrics import aupimo, aupro, auroc, summary


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("levels", [None, 2, 5, 50])
def test_roc_auc_equals_sklearn(seed, levels):
    rng = np.random.default_rng(seed)
    labels = rng.random(3000) < 0.1
    scores = rng.normal(size=3000) + labels
    if levels:  # heavy ties inside and across classes
        scores = np.round(scores * levels / 4)
    expected = sklearn.metrics.roc_auc_score(labels, scores)
    assert auroc.roc_auc(scores.astype(np.float32), labels) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_accepts_maps_and_float_masks():
    rng = np.random.default_rng(3)
    masks = (rng.random((4, 16, 16)) < 0.2).astype(np.float32)
    maps = rng.random((4, 16, 16)).astype(np.float32) + 0.3 * masks
    expected = sklearn.metrics.roc_auc_score(masks.ravel(), maps.ravel())
    assert auroc.roc_auc(maps, masks) == pytest.approx(expected, abs=1e-12)


def test_roc_curve_vertices_are_sklearn_points_around_every_positive_score():
    """Our polyline keeps the points of sklearn's full curve where the TPR changes (both ends of
    each vertical or diagonal step); the runs between them are horizontal, so the area is the AUC."""
    rng = np.random.default_rng(4)
    labels = rng.random(500) < 0.3
    scores = np.round(rng.normal(size=500) + labels, 1)
    fpr, tpr = auroc.roc_curve(scores, labels)
    ref_fpr, ref_tpr, _ = sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)
    ours = set(zip(fpr.tolist(), tpr.tolist()))
    reference = set(zip(ref_fpr.tolist(), ref_tpr.tolist()))
    assert ours <= reference
    steps = np.flatnonzero(np.diff(ref_tpr) != 0)
    assert {(ref_fpr[k], ref_tpr[k]) for k in steps} | {(ref_fpr[k + 1], ref_tpr[k + 1]) for k in steps} <= ours
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0) and np.all(np.diff(fpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc.roc_auc(scores, labels), abs=1e-12)


def test_constant_scores_give_one_half_as_sklearn():
    labels = np.array([0, 1, 0, 1, 1])
    assert auroc.roc_auc(np.full(5, 0.7), labels) == 0.5
    assert sklearn.metrics.roc_auc_score(labels, np.full(5, 0.7)) == 0.5


def test_degenerate_inputs_give_clear_errors():
    with pytest.raises(ValueError, match=r"no positive \(anomalous, label 1\) samples"):
        auroc.roc_auc([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match=r"no negative \(normal, label 0\) samples"):
        auroc.roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="2 of 3 values are NaN or infinite"):
        auroc.roc_auc([np.nan, 0.2, -np.inf], [0, 1, 1])
    with pytest.raises(ValueError, match="only 0 and 1"):
        auroc.roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        auroc.roc_auc([0.1, 0.2, 0.3], [0, 1])


def small_test_set(seed=5):
    rng = np.random.default_rng(seed)
    masks = np.zeros((9, 32, 32), dtype=np.float32)
    types = np.array(["good"] * 3 + ["crack"] * 3 + ["hole"] * 3)
    for i in range(3, 9):
        y, x = rng.integers(2, 24, 2)
        masks[i, y:y + rng.integers(2, 8), x:x + rng.integers(2, 8)] = 1
    maps = (rng.random(masks.shape) + masks).astype(np.float32)
    return maps, masks, (types != "good").astype(np.int32), types


def test_compute_metrics_keys_and_values():
    maps, masks, labels, types = small_test_set()
    maps[6:] = maps[6:] * 0.5  # 'hole' images score lower than the crack ones
    got = summary.compute_metrics(maps, masks, labels, defect_types=types)
    scores = maps.reshape(9, -1).max(axis=1)
    assert got["image_auroc"] == pytest.approx(sklearn.metrics.roc_auc_score(labels, scores))
    assert got["pixel_auroc"] == pytest.approx(
        sklearn.metrics.roc_auc_score(masks.ravel(), maps.ravel()))
    assert got["aupro"] == aupro.aupro(maps, masks)
    for level, y, s in (("image", labels, scores), ("pixel", masks.ravel(), maps.ravel())):
        precision, recall, _ = sklearn.metrics.precision_recall_curve(y, s)
        assert got[f"{level}_ap"] == pytest.approx(sklearn.metrics.average_precision_score(y, s), abs=1e-12)
        assert got[f"{level}_f1_max"] == pytest.approx(np.max(2 * precision * recall / (precision + recall)),
                                                       abs=1e-12)
    assert got["mad"] == pytest.approx(np.mean([got[k] for k in summary.MAD_METRICS]), abs=1e-15)
    assert len(summary.MAD_METRICS) == 7
    # 3 good images of 32 x 32 px cannot reach AUPIMO's FPR of 1e-5: a reason, not a number.
    assert "aupimo" not in got and "no threshold gives an FPR" in got[summary.UNAVAILABLE]["aupimo"]
    assert got["aupro_rd4ad_per_image"] == aupro.aupro_rd4ad_per_image(maps, masks).mean
    assert got["aupro_rd4ad_per_image/num_images"] == 6
    assert got["aupro_rd4ad_per_image/num_skipped"] == 0
    for defect, chosen in (("crack", slice(0, 6)), ("hole", np.r_[0:3, 6:9])):
        assert got[f"image_auroc/{defect}"] == pytest.approx(
            sklearn.metrics.roc_auc_score(labels[chosen], scores[chosen]))
    assert "image_auroc/good" not in got


def test_compute_metrics_reports_aupimo_where_it_is_defined():
    rng = np.random.default_rng(6)
    masks = np.zeros((18, 128, 128), dtype=bool)
    for mask in masks[12:]:
        y, x = rng.integers(8, 100, 2)
        mask[y:y + 20, x:x + 12] = True
    maps = (rng.normal(size=masks.shape) + 2.0 * masks).astype(np.float32)
    labels = masks.reshape(18, -1).any(axis=1).astype(np.int32)
    got = summary.compute_metrics(maps, masks, labels, per_image_aupro=False)
    expected = aupimo.aupimo(maps, masks)
    assert (got["aupimo"], got["aupimo/num_images"], got["aupimo/num_points"]) == (
        expected.mean, 6, expected.num_points)
    assert summary.UNAVAILABLE not in got


def test_compute_metrics_without_masks_or_per_image_variant():
    maps, masks, labels, _ = small_test_set()
    scores = np.linspace(0, 1, 9)
    precision, recall, _ = sklearn.metrics.precision_recall_curve(labels, scores)
    assert summary.compute_metrics(maps, None, labels, scores=scores) == {
        "image_auroc": sklearn.metrics.roc_auc_score(labels, scores),
        "image_ap": pytest.approx(sklearn.metrics.average_precision_score(labels, scores), abs=1e-12),
        "image_f1_max": pytest.approx(np.max(2 * precision * recall / (precision + recall)), abs=1e-12),
        summary.UNAVAILABLE: {name: summary.NO_MASKS for name in summary.MASK_METRICS}}
    got = summary.compute_metrics(maps, masks, labels, per_image_aupro=False, aupimo=False)
    assert set(got) == {"image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap",
                        "pixel_f1_max", "aupro", "mad"}
    assert summary.compute_metrics(maps, None, labels, per_image_aupro=False, aupimo=False)[
        summary.UNAVAILABLE].keys() == {"pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro", "mad"}


def test_compute_metrics_bad_inputs():
    maps, masks, labels, types = small_test_set()
    with pytest.raises(ValueError, match="image AUROC, AP and F1-max are undefined: no negative"):
        summary.compute_metrics(maps[3:], masks[3:], labels[3:])
    with pytest.raises(ValueError, match="defect_types has no 'good' entry"):
        summary.compute_metrics(maps, masks, labels, defect_types=np.char.replace(types, "good", "ok"))
    with pytest.raises(ValueError, match="labels"):
        summary.compute_metrics(maps, masks, labels[:4])
    bad = maps.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 of 9 values are NaN"):  # via the image scores
        summary.compute_metrics(bad, masks, labels)


def test_metric_curves_are_thinned_and_end_where_expected():
    maps, masks, labels, _ = small_test_set()
    curves = summary.metric_curves(maps, masks, labels, max_points=100)
    assert set(curves) == {"image_roc/fpr", "image_roc/tpr", "pixel_roc/fpr", "pixel_roc/tpr",
                           "pixel_pr/recall", "pixel_pr/precision", "pro/fpr", "pro/pro"}
    assert all(len(v) <= 100 for v in curves.values())
    assert curves["pixel_roc/fpr"][-1] == 1.0 and curves["pixel_roc/tpr"][-1] == 1.0
    assert curves["pro/fpr"][-1] == pytest.approx(0.3)
    lowest_defect = maps[masks > 0].min()  # full recall: every pixel scoring at least this is positive
    assert curves["pixel_pr/recall"][-1] == 1.0
    assert curves["pixel_pr/precision"][-1] == pytest.approx(masks.sum() / np.sum(maps >= lowest_defect))


def test_compute_metrics_lists_images_left_out_of_the_per_image_aupro():
    maps, masks, labels, types = small_test_set()
    masks[4] = 0                                    # a defective image whose mask vanished
    maps[7] = 0.5                                   # a constant map (the official code crashes)
    names = np.array([f"test/{t}/{i:03d}.png" for i, t in enumerate(types)])
    got = summary.compute_metrics(maps, masks, labels, defect_types=types, file_names=names)
    assert got["aupro_rd4ad_per_image/num_skipped"] == 2
    assert got["aupro_rd4ad_per_image/num_images"] == 4
    assert got[summary.PER_IMAGE_AUPRO_LEFT_OUT] == {
        aupro.SKIP_EMPTY_MASK: ["test/crack/004.png"], aupro.SKIP_CONSTANT_MAP: ["test/hole/007.png"]}
    without_names = summary.compute_metrics(maps, masks, labels)
    assert without_names[summary.PER_IMAGE_AUPRO_LEFT_OUT] == {
        aupro.SKIP_EMPTY_MASK: [4], aupro.SKIP_CONSTANT_MAP: [7]}


def test_rounded_image_scores_give_sklearn_auroc_of_the_rounded_scores():
    """config.eval.image_score_decimals=3 (SK-RD4AD's image-only evaluation): image AUROC is
    sklearn's on the scores rounded to 3 decimals, which tie and differ from the unrounded AUROC."""
    rng = np.random.default_rng(7)
    labels = (rng.random(400) < 0.5).astype(np.int32)
    scores = (0.2 + 0.002 * rng.random(400) + 0.0006 * labels).astype(np.float32)  # 2e-3 wide
    maps = np.broadcast_to(scores[:, None, None], (400, 2, 2))
    rounded = summary.round_image_scores(scores, 3)
    official = sklearn.metrics.roc_auc_score(labels, [round(float(s), 3) for s in scores.astype(np.float64)])
    got = summary.compute_metrics(maps, None, labels, scores=rounded)["image_auroc"]
    assert got == pytest.approx(official, abs=1e-12)
    assert abs(got - sklearn.metrics.roc_auc_score(labels, scores)) > 0.01
    np.testing.assert_array_equal(summary.round_image_scores(scores, -1), scores)
    for bad in (-2, 2.5, True):
        with pytest.raises(ValueError, match="config.eval.image_score_decimals"):
            summary.round_image_scores(scores, bad)
