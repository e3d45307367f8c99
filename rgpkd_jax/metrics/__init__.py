"""Evaluation metrics from numpy maps, masks and labels.

Modules (import them, e.g. ``from rgpkd_jax.metrics import aupro``; names are not re-exported here
because the function ``aupro.aupro`` would shadow its module):

* ``auroc``: image and pixel AUROC equal to scikit-learn, ROC curves.
* ``aupro``: the official MVTec AU-PRO (exact) and the RD4AD per-image AUPRO variant.
* ``summary``: ``compute_metrics`` (every number of a test set, clearly named), ``metric_curves``
  and ``METRIC_LABELS`` (the words every summary and figure names the headline metrics by).
"""
