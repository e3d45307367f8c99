"""One sort of a test set's scores, and every threshold metric of it with integer counts.

A :class:`Ranking` holds, at each distinct positive score ``v``, how many positives and negatives
score at or above ``v``. That is all that ROC AUC, average precision and F1-max need
(docs/reference.md §5.6):

* ROC AUC = P(pos > neg) + ½ P(pos == neg), from integer counts (= ``sklearn.metrics.roc_auc_score``);
* AP = Σ over distinct positive scores, highest first, of (recall gain) × precision
  (= ``sklearn.metrics.average_precision_score``: no interpolation);
* F1-max = the best F1 over every distinct threshold. Lowering a threshold past negatives only adds
  false positives, so the best F1 is reached at a positive score; tied scores form one threshold
  (as ``sklearn.metrics.precision_recall_curve``).

Building it costs one in-place sort of a copy of the negatives (the one full-size temporary, freed
once counted) and an argsort of the positives (few, for pixels); no full-size index array is made,
and what it keeps grows with the number of positives only. The official AU-PRO reuses the same
ranking (``rgpkd_jax.metrics.aupro``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Elements copied per step when splitting scores by label: bounds the temporaries to a few MiB.
_CHUNK = 1 << 20


def check_finite_scores(scores, what: str) -> np.ndarray:
    """Returns ``scores`` as a float array; raises if any value is NaN or infinite.

    A float64 sum is finite exactly when every float32/float64 value is (it cannot overflow from
    finite float32 values), so the common case needs no full-size temporary.
    """
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    if np.isfinite(np.sum(scores, dtype=np.float64)):
        return scores
    num_bad = scores.size - int(np.count_nonzero(np.isfinite(scores)))
    if num_bad:
        raise ValueError(
            f"{what}: {num_bad} of {scores.size} values are NaN or infinite; metrics need finite "
            "scores (a NaN map usually means the model diverged or a feature norm was zero).")
    return scores  # finite float64 values whose sum overflowed


def as_binary(values, what: str) -> np.ndarray:
    """Returns ``values`` (bool, integer or float in {0, 1}) as a bool array; raises otherwise."""
    values = np.asarray(values)
    if values.dtype == bool:
        return values
    is_one = values == 1
    flat = values.reshape(-1)
    num_zeros = sum(int(np.count_nonzero(flat[start:start + _CHUNK] == 0))
                    for start in range(0, flat.size, _CHUNK))
    if np.count_nonzero(is_one) + num_zeros != values.size:
        bad = np.unique(values[~(is_one | (values == 0))])[:5]
        raise ValueError(f"{what} must contain only 0 and 1; found {bad.tolist()} "
                         "(binarise resized masks first: config.eval.mask_threshold).")
    return is_one


@dataclasses.dataclass(frozen=True)
class Ranking:
    """Counts of one test set's scores at each distinct positive score.

    Attributes:
      num_negatives: how many scores have label 0.
      positive_order: the permutation that sorts ``scores[labels]`` (positives in C order) ascending;
        the official AU-PRO uses it to sort its per-pixel region weights the same way.
      multiplicity: how many positives have each distinct positive score (ascending scores).
      positives_at_or_above: positives scoring >= each such score (true positives at that threshold).
      negatives_below, negatives_at_or_below: negatives scoring < and <= each such score.
    """

    num_negatives: int
    positive_order: np.ndarray
    multiplicity: np.ndarray
    positives_at_or_above: np.ndarray
    negatives_below: np.ndarray
    negatives_at_or_below: np.ndarray

    @property
    def num_positives(self) -> int:
        return int(self.positive_order.size)

    def false_positives(self) -> np.ndarray:
        """Negatives scoring >= each distinct positive score (false positives at that threshold)."""
        return self.num_negatives - self.negatives_below

    def roc_auc(self) -> float:
        """Area under the ROC curve (trapezoid, ties merged) = ``sklearn.metrics.roc_auc_score``."""
        # 2 * (#neg < pos) + (#neg == pos), summed over the positives, in exact integers.
        twice_wins = int(np.dot(self.multiplicity, self.negatives_below)) + int(
            np.dot(self.multiplicity, self.negatives_at_or_below))
        return twice_wins / (2.0 * self.num_positives * self.num_negatives)

    def average_precision(self) -> float:
        """Σ (R_k - R_k-1) P_k over the thresholds, highest first (no interpolation), as sklearn."""
        tp = self.positives_at_or_above
        precision = tp / (tp + self.false_positives())
        return float(np.dot(self.multiplicity[::-1], precision[::-1]) / self.num_positives)

    def f1_max(self) -> float:
        """The largest F1 = 2 TP / (2 TP + FP + FN) over every distinct threshold."""
        tp = self.positives_at_or_above
        return float(np.max(2 * tp / (tp + self.false_positives() + self.num_positives)))

    def roc_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The exact ROC polyline ``(fpr, tpr)`` from (0, 0) to (1, 1), ascending FPR.

        Its vertices are the points of sklearn's ``roc_curve(..., drop_intermediate=False)`` around
        each distinct positive score: just above it, and at it (ties give the diagonal between).
        Between two such scores the curve runs horizontally (negatives only), so nothing is lost;
        its trapezoid area is :meth:`roc_auc`.
        """
        tp_at_or_above = self.positives_at_or_above[::-1]
        tp_above = tp_at_or_above - self.multiplicity[::-1]
        fp_at_or_above = self.false_positives()[::-1]
        fp_above = self.num_negatives - self.negatives_at_or_below[::-1]
        fp = np.concatenate([[0], np.stack([fp_above, fp_at_or_above], axis=1).ravel(), [self.num_negatives]])
        tp = np.concatenate([[0], np.stack([tp_above, tp_at_or_above], axis=1).ravel(), [self.num_positives]])
        return fp / self.num_negatives, tp / self.num_positives

    def precision_recall_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(recall, precision)`` at each distinct positive score, ascending recall: the points
        where the recall changes, whose right-continuous steps :meth:`average_precision` sums."""
        tp = self.positives_at_or_above[::-1]
        return tp / self.num_positives, tp / (tp + self.false_positives()[::-1])


def _split_by_label(scores: np.ndarray, labels: np.ndarray, num_positives: int) -> tuple[np.ndarray, np.ndarray]:
    """(negatives, positives) in C order, copied chunk by chunk: no full-size temporary."""
    flat_scores, flat_labels = scores.reshape(-1), labels.reshape(-1)
    negatives = np.empty(flat_scores.size - num_positives, flat_scores.dtype)
    positives = np.empty(num_positives, flat_scores.dtype)
    num_neg = num_pos = 0
    for start in range(0, flat_scores.size, _CHUNK):
        chunk, is_positive = flat_scores[start:start + _CHUNK], flat_labels[start:start + _CHUNK]
        chosen = chunk[is_positive]
        positives[num_pos:num_pos + chosen.size] = chosen
        num_pos += chosen.size
        chosen = chunk[~is_positive]
        negatives[num_neg:num_neg + chosen.size] = chosen
        num_neg += chosen.size
    return negatives, positives


def rank(scores, labels, *, what: str) -> Ranking:
    """The :class:`Ranking` of ``scores`` against binary ``labels`` (any equal shapes).

    Higher score means more anomalous. ``what`` names the inputs in errors. Raises ValueError if
    a class is missing (every metric here compares the two; sklearn would warn and return 0, 1 or
    NaN), a label is not 0/1, or a score is not finite. A constant score is allowed: one threshold.
    """
    scores = check_finite_scores(scores, f"{what} scores")
    labels = as_binary(labels, f"{what} labels")
    if scores.shape != labels.shape:
        raise ValueError(f"{what}: {scores.size} scores but {labels.size} labels; they must match.")
    num_positives = int(np.count_nonzero(labels))
    for name, count in (("positive (anomalous, label 1)", num_positives),
                        ("negative (normal, label 0)", labels.size - num_positives)):
        if count == 0:
            raise ValueError(f"{what} AUROC, AP and F1-max are undefined: no {name} samples among "
                             f"{labels.size}.")
    negatives, positives = _split_by_label(np.ascontiguousarray(scores), np.ascontiguousarray(labels),
                                           num_positives)
    negatives.sort()
    positive_order = np.argsort(positives)
    positives = positives[positive_order]
    starts = np.flatnonzero(np.concatenate([[True], positives[1:] != positives[:-1]]))
    values = positives[starts]
    return Ranking(
        num_negatives=negatives.size, positive_order=positive_order,
        multiplicity=np.diff(np.append(starts, num_positives)),
        positives_at_or_above=num_positives - starts,
        negatives_below=np.searchsorted(negatives, values, side="left"),
        negatives_at_or_below=np.searchsorted(negatives, values, side="right"))
