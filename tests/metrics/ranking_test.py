"""Average precision and F1-max from one ranking, against scikit-learn, a threshold loop and ADer.

sklearn is the definition (docs/reference.md §5.6): AP = ``average_precision_score`` (no
interpolation), F1-max = the best ``2 P R / (P + R)`` over ``precision_recall_curve``'s points,
which merge tied scores into one threshold; ADer computes its image F1-max exactly that way and its
pixel F1-max on a 21-step grid of min-max normalised scores (``ader_pixel_f1_max`` below).
"""

import numpy as np
import pytest
import sklearn.metrics

from rgpkd_jax.metrics import ranking

TOLERANCE = 1e-12  # float64 sums of at most a few thousand terms in [0, 1]


def scores_and_labels(seed, levels, size=3000, positive_fraction=0.1):
    rng = np.random.default_rng(seed)
    labels = rng.random(size) < positive_fraction
    scores = rng.normal(size=size) + labels
    if levels:  # heavy ties inside and across classes
        scores = np.round(scores * levels / 4)
    return scores.astype(np.float32), labels


def sklearn_f1_max(labels, scores):
    precision, recall, _ = sklearn.metrics.precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    return np.max(f1[np.isfinite(f1)])


def loop_f1_max(labels, scores):
    """F1 at every distinct score as a threshold (score >= t positive), one threshold at a time."""
    best = 0.0
    for threshold in np.unique(scores):
        predicted = scores >= threshold
        tp = np.sum(predicted & labels)
        best = max(best, 2 * tp / (np.sum(predicted) + np.sum(labels)))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("levels", [None, 2, 5, 50])
@pytest.mark.parametrize("positive_fraction", [0.1, 0.6])
def test_ap_and_f1_max_equal_sklearn(seed, levels, positive_fraction):
    scores, labels = scores_and_labels(seed, levels, positive_fraction=positive_fraction)
    ranked = ranking.rank(scores, labels, what="test")
    assert ranked.average_precision() == pytest.approx(
        sklearn.metrics.average_precision_score(labels, scores), abs=TOLERANCE)
    assert ranked.f1_max() == pytest.approx(sklearn_f1_max(labels, scores), abs=TOLERANCE)
    assert ranked.roc_auc() == pytest.approx(sklearn.metrics.roc_auc_score(labels, scores), abs=TOLERANCE)


@pytest.mark.parametrize("levels", [None, 3])
def test_f1_max_is_the_best_over_every_distinct_threshold(levels):
    scores, labels = scores_and_labels(3, levels, size=400, positive_fraction=0.3)
    assert ranking.rank(scores, labels, what="test").f1_max() == pytest.approx(
        loop_f1_max(labels, scores), abs=TOLERANCE)


def test_tied_scores_form_one_threshold():
    # A positive and a negative tie at the top: taken together (precision 1/2), as sklearn; taking
    # the positive alone (F1 = 1) would split the tie.
    scores, labels = np.array([0.9, 0.9, 0.1]), np.array([1, 0, 0])
    ranked = ranking.rank(scores, labels, what="test")
    assert ranked.f1_max() == pytest.approx(2 / 3, abs=TOLERANCE) == sklearn_f1_max(labels, scores)
    assert ranked.average_precision() == sklearn.metrics.average_precision_score(labels, scores) == 0.5


def test_maps_and_masks_pool_every_pixel():
    rng = np.random.default_rng(4)
    masks = rng.random((5, 12, 12)) < 0.15
    maps = (rng.random(masks.shape) + 0.4 * masks).astype(np.float32)
    ranked = ranking.rank(maps, masks.astype(np.float32), what="pixel")
    assert ranked.average_precision() == pytest.approx(
        sklearn.metrics.average_precision_score(masks.ravel(), maps.ravel()), abs=TOLERANCE)
    assert ranked.f1_max() == pytest.approx(sklearn_f1_max(masks.ravel(), maps.ravel()), abs=TOLERANCE)


def test_constant_scores_are_one_threshold():
    """Every sample positive at the only threshold: AP = precision = the positive fraction, and
    F1-max = 2P / (2P + N), as sklearn."""
    labels = np.array([0, 1, 0, 1, 1, 0, 0])
    scores = np.full(7, 0.3, dtype=np.float32)
    ranked = ranking.rank(scores, labels, what="test")
    assert ranked.average_precision() == pytest.approx(3 / 7, abs=TOLERANCE)
    assert ranked.average_precision() == pytest.approx(
        sklearn.metrics.average_precision_score(labels, scores), abs=TOLERANCE)
    assert ranked.f1_max() == pytest.approx(6 / 10, abs=TOLERANCE) == sklearn_f1_max(labels, scores)


def test_perfect_and_inverted_scores():
    labels = np.array([0, 0, 1, 1, 0])
    perfect = ranking.rank(np.array([0.1, 0.2, 0.8, 0.9, 0.3]), labels, what="test")
    assert (perfect.average_precision(), perfect.f1_max(), perfect.roc_auc()) == (1.0, 1.0, 1.0)
    inverted = ranking.rank(np.array([0.9, 0.8, 0.1, 0.2, 0.7]), labels, what="test")
    # Best threshold: everything positive (precision 2/5, recall 1): F1 = 4/7. AP: the positives
    # are 4th and 5th: (1/2)(1/4) + (1/2)(2/5).
    assert inverted.f1_max() == pytest.approx(4 / 7, abs=TOLERANCE)
    assert inverted.average_precision() == pytest.approx(0.5 / 4 + 0.5 * 2 / 5, abs=TOLERANCE)


def test_one_class_only_is_an_error_not_sklearn_zero_or_one():
    """sklearn warns and returns AP 0 without positives (and 1 when all are positive); we refuse."""
    with pytest.raises(ValueError, match=r"undefined: no positive \(anomalous, label 1\) samples among 3"):
        ranking.rank([0.1, 0.2, 0.3], [0, 0, 0], what="image")
    with pytest.raises(ValueError, match=r"undefined: no negative \(normal, label 0\) samples among 2"):
        ranking.rank([0.1, 0.2], [1, 1], what="image")
    with pytest.raises(ValueError, match="1 of 2 values are NaN or infinite"):
        ranking.rank([np.inf, 0.2], [0, 1], what="image")
    with pytest.raises(ValueError, match="only 0 and 1"):
        ranking.rank([0.1, 0.2], [0, 0.5], what="image")


def test_precision_recall_curve_points_are_sklearn_points_where_recall_changes():
    scores, labels = scores_and_labels(5, 5, size=600, positive_fraction=0.3)
    recall, precision = ranking.rank(scores, labels, what="test").precision_recall_curve()
    ref_precision, ref_recall, _ = sklearn.metrics.precision_recall_curve(labels, scores)
    # sklearn's points run from the lowest threshold (recall 1) up; keep those where recall rises.
    rises = np.flatnonzero(np.diff(ref_recall[::-1]) > 0) + 1
    np.testing.assert_allclose(recall, ref_recall[::-1][rises], atol=TOLERANCE)
    np.testing.assert_allclose(precision, ref_precision[::-1][rises], atol=TOLERANCE)


# ---- ADer's pixel F1-max (docs/reference.md §5.6) -----------------------------------------------

ADER_EPS = 1e-8


def ader_pixel_f1_max(maps, masks):
    """ADer's pixel F1-max, from its definition: maps min-max normalised over the test set, 21
    thresholds 0, 0.05, ..., 1, a pixel positive when its score is strictly above, eps 1e-8 in each
    denominator, the best of the 21."""
    normalised = (maps - maps.min()) / (maps.max() - maps.min())
    best = 0.0
    for threshold in np.arange(0.0, 1.0 + 1e-3, 0.05):
        predicted = normalised > threshold
        tp = np.logical_and(predicted, masks).sum()
        precision = tp / (predicted.sum() + ADER_EPS)
        recall = tp / (masks.sum() + ADER_EPS)
        best = max(best, 2 * precision * recall / (precision + recall + ADER_EPS))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_exact_pixel_f1_max_is_never_below_aders_grid(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((4, 16, 16)) < 0.1
    maps = (rng.normal(size=masks.shape) + 1.2 * masks).astype(np.float32)
    ours = ranking.rank(maps, masks, what="pixel").f1_max()
    assert ours >= ader_pixel_f1_max(maps, masks) - 1e-7  # the grid's thresholds are among ours


def test_pixel_f1_max_equals_aders_when_the_best_threshold_is_on_its_grid():
    # Min 0 and max 1, so ADer's normalisation changes nothing; the best threshold, >= 0.6 (every
    # defect, two false positives), selects the same pixels as ADer's `> 0.55`.
    masks = np.zeros((1, 4, 5), dtype=bool)
    masks[0, 0, :3] = True
    maps = np.array([[[0.6, 0.7, 0.95, 0.0, 0.6],
                      [0.12, 0.22, 0.33, 0.37, 0.41],
                      [0.43, 0.48, 0.53, 0.07, 0.17],
                      [0.27, 0.21, 0.11, 0.06, 1.0]]], dtype=np.float64)
    ours = ranking.rank(maps, masks, what="pixel").f1_max()
    assert ours == pytest.approx(2 * 3 / (3 + 2 + 3), abs=TOLERANCE)  # >= 0.6: 3 TP, 2 FP (0.6, 1.0)
    assert ader_pixel_f1_max(maps, masks) == pytest.approx(ours, abs=1e-7)


def test_pixel_f1_max_above_aders_when_the_grid_misses_the_best_threshold():
    # The defect scores 0.52-0.53 and a normal pixel 0.51: every grid threshold either keeps the
    # normal pixel (> 0.5) or loses the defect (> 0.55); the exact best, >= 0.52, keeps neither.
    masks = np.zeros((1, 2, 4), dtype=bool)
    masks[0, 0, :2] = True
    maps = np.array([[[0.52, 0.53, 0.51, 0.0], [0.2, 0.3, 0.4, 1.0]]])
    ours = ranking.rank(maps, masks, what="pixel").f1_max()
    assert ours == pytest.approx(2 * 2 / (2 + 1 + 2), abs=TOLERANCE)  # >= 0.52: 2 TP, 1 FP (1.0)
    assert ader_pixel_f1_max(maps, masks) < ours - 0.05
