"""Benchmarks of rgpkd_jax, one folder per part; every command line, its flags and what it writes
are in benchmarks/README.md.

- leaderboard: every (method, dataset, category, seed) as a resumable job, then the tables beside
  the published numbers (`leaderboard/published/<method>.py`);
- speed: ours against PyTorch peers (anomalib, the official RD4AD code), and the measuring tools
  it shares with `speed.complexity`, `speed.aupro_timing` and `speed.device_check`;
- sanity: every registered method and RGPKD's ablations on the embedded synthetic data;
- report: the static HTML report of a leaderboard workdir (docs/report.md);
- export: our ONNX export against anomalib's under onnxruntime;
- metrics: our evaluation metrics against scikit-learn's.

Shared by them: `common_flags` (flags that mean the same in every tool), `ablations` (RGPKD's),
`optional` (packages only some tools need).
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
