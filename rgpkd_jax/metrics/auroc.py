"""ROC AUC equal to ``sklearn.metrics.roc_auc_score``, fast enough for every pixel of a test set.

The area under the ROC curve (trapezoid, tied scores merged into one threshold, as sklearn) equals
the Mann-Whitney statistic with ties counted one half:
``AUC = P(score_pos > score_neg) + 0.5 * P(score_pos == score_neg)``. We compute it from two
value-only sorts and ``searchsorted`` with integer counts, which avoids the full ``argsort`` that
sklearn needs (about 5x slower on 10M pixels) and is exact up to one final division.
Degenerate inputs are refused with a clear message, except a constant score, whose AUC is 0.5
(every positive ties with every negative), as sklearn.
"""

from __future__ import annotations

import numpy as np


def check_finite_scores(scores: np.ndarray, what: str) -> np.ndarray:
    """Returns ``scores`` as a float array; raises if any value is NaN or infinite."""
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    num_bad = scores.size - int(np.count_nonzero(np.isfinite(scores)))
    if num_bad:
        raise ValueError(
            f"{what}: {num_bad} of {scores.size} values are NaN or infinite; metrics need finite "
            "scores (a NaN map usually means the model diverged or a feature norm was zero).")
    return scores


def as_binary(values: np.ndarray, what: str) -> np.ndarray:
    """Returns ``values`` (bool, integer or float in {0, 1}) as a bool array; raises otherwise."""
    values = np.asarray(values)
    if values.dtype == bool:
        return values
    is_one = values == 1
    if not np.all(is_one | (values == 0)):
        bad = np.unique(values[~(is_one | (values == 0))])[:5]
        raise ValueError(f"{what} must contain only 0 and 1; found {bad.tolist()} "
                         "(threshold resized masks at 0.5 first).")
    return is_one


def _split_by_label(scores, labels, what: str) -> tuple[np.ndarray, np.ndarray]:
    scores = check_finite_scores(scores, f"{what} scores").ravel()
    labels = as_binary(labels, f"{what} labels").ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{what}: {scores.size} scores but {labels.size} labels; they must match.")
    positives, negatives = scores[labels], scores[~labels]
    for name, part in (("positive (anomalous, label 1)", positives),
                       ("negative (normal, label 0)", negatives)):
        if part.size == 0:
            raise ValueError(f"{what} AUROC is undefined: no {name} samples among {labels.size}.")
    return positives, negatives


def roc_auc(scores, labels, *, what: str = "roc_auc") -> float:
    """Area under the ROC curve of ``scores`` against binary ``labels`` (any equal shapes).

    Equals ``sklearn.metrics.roc_auc_score(labels.ravel(), scores.ravel())``. Higher score means
    more anomalous. Raises ValueError if a class is missing or a score is not finite.
    """
    positives, negatives = _split_by_label(scores, labels, what)
    positives, negatives = np.sort(positives), np.sort(negatives)
    below = np.searchsorted(negatives, positives, side="left").astype(np.int64)
    below_or_equal = np.searchsorted(negatives, positives, side="right").astype(np.int64)
    # 2 * (#neg < pos) + (#neg == pos), summed over positives, in exact integers.
    twice_wins = int(below.sum()) + int(below_or_equal.sum())
    return twice_wins / (2.0 * positives.size * negatives.size)


def roc_curve(scores, labels, *, what: str = "roc_curve") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve with tied scores merged: ``(fpr, tpr, thresholds)``, starting at (0, 0).

    The points are sklearn's ``roc_curve(..., drop_intermediate=False)`` points; the first threshold
    is ``inf`` as in sklearn. Trapezoid integration of ``(fpr, tpr)`` gives :func:`roc_auc`.
    """
    positives, negatives = _split_by_label(scores, labels, what)
    thresholds = np.unique(np.concatenate([positives, negatives]))[::-1]
    positives, negatives = np.sort(positives), np.sort(negatives)
    # Number of samples with score >= threshold, for descending thresholds.
    tp = positives.size - np.searchsorted(positives, thresholds, side="left")
    fp = negatives.size - np.searchsorted(negatives, thresholds, side="left")
    fpr = np.concatenate([[0.0], fp / negatives.size])
    tpr = np.concatenate([[0.0], tp / positives.size])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])
