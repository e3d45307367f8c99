"""Evaluation metrics from numpy maps, masks and labels.

Modules (import them, e.g. ``from rgpkd_jax.metrics import aupro``; names are not re-exported here
because the function ``aupro.aupro`` would shadow its module):

* ``ranking``: one sort of a test set's scores (``rank``) and, from its integer counts, ROC AUC,
  average precision and F1-max equal to scikit-learn's definitions; the input checks.
* ``auroc``: image and pixel AUROC equal to scikit-learn, ROC curves.
* ``aupro``: the official MVTec AU-PRO (exact, from the same ranking) and the RD4AD per-image variant.
* ``aupimo``: AUPIMO as anomalib defines it.
* ``summary``: ``compute_metrics`` (every number of a test set, clearly named, mAD), ``metric_curves``
  and ``METRIC_LABELS`` (the words every summary and figure names the headline metrics by).
"""
