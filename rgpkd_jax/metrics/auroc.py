"""ROC AUC equal to ``sklearn.metrics.roc_auc_score``, fast enough for every pixel of a test set.

The area under the ROC curve (trapezoid, tied scores merged into one threshold, as sklearn) equals
the Mann-Whitney statistic with ties counted one half:
``AUC = P(score_pos > score_neg) + 0.5 * P(score_pos == score_neg)``. It is computed from one
:func:`~rgpkd_jax.metrics.ranking.rank` (a value sort and integer counts), which avoids the full
``argsort`` that sklearn needs (about 5x slower on 10M pixels) and is exact up to one final
division. Degenerate inputs are refused with a clear message, except a constant score, whose AUC
is 0.5 (every positive ties with every negative), as sklearn.
"""

from __future__ import annotations

import numpy as np

from rgpkd_jax.metrics import ranking


def roc_auc(scores, labels, *, what: str = "roc_auc") -> float:
    """Area under the ROC curve of ``scores`` against binary ``labels`` (any equal shapes).

    Equals ``sklearn.metrics.roc_auc_score(labels.ravel(), scores.ravel())``. Higher score means
    more anomalous. Raises ValueError if a class is missing or a score is not finite.
    """
    return ranking.rank(scores, labels, what=what).roc_auc()


def roc_curve(scores, labels, *, what: str = "roc_curve") -> tuple[np.ndarray, np.ndarray]:
    """The exact ROC polyline ``(fpr, tpr)`` from (0, 0) to (1, 1) (:meth:`Ranking.roc_curve
    <rgpkd_jax.metrics.ranking.Ranking.roc_curve>`); its trapezoid area is :func:`roc_auc`."""
    return ranking.rank(scores, labels, what=what).roc_curve()
