"""Benchmarks of rgpkd_jax. Tools (each `python -m benchmarks.<tool>`, flags defined only when run):

- leaderboard: every (method, dataset, category, seed) as a resumable job (`jobs`), then the tables
  (`aggregate` reads the job workdirs, `stats` computes the numbers, `tables` writes CSV and
  Markdown, `plots` the PNGs) beside the published numbers (`published`);
- complexity: parameters, GFLOPs, latency, throughput and peak memory of one config's model;
- speed: ours against anomalib (`peers`) and the official RD4AD code from a checkout the user
  gives (`official_peer`) in interleaved rounds (`speed_setup` sizes, configs and peers,
  `speed_memory` the memory probes, `speed_report` the rows and files, `aupro_reference_loop` the
  AU-PRO reference);
- aupro_timing: our AU-PRO and AUROC on test sets of growing size.

Shared by them: `timing` (interleaved timing, medians, rates, XLA flop counts, matmul peak),
`memory` (RSS and peak memory), `harness` (our model, train step and inference for a config) and
`inputs` (random images and test sets).
"""
