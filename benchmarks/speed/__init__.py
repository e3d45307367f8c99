"""Speed, memory and complexity of rgpkd_jax (benchmarks/README.md lists the commands).

- `python -m benchmarks.speed`: ours against PyTorch peers in interleaved rounds: `sections` times
  each part into a `run.Run`, `memory_rows` starts a `memory_probe` per task and implementation,
  `report` writes the rows with their targets; `sizes` holds the full and tiny sizes, `peers` the
  peers (`anomalib_peer`, `official_peer`, both built on `torch_peer`), `aupro_loop` the AU-PRO
  reference;
- `python -m benchmarks.speed.complexity`: parameters, GFLOPs, latency, throughput and peak memory
  of one config's model (the leaderboard's complexity jobs);
- `python -m benchmarks.speed.aupro_timing`: our AU-PRO and AUROC on test sets of growing size;
- `python -m benchmarks.speed.device_check` (through `benchmarks/device_check.sh`): the accelerator check.

Shared by these and by `benchmarks.export`: `timing` (interleaved timing, medians, rates, XLA flop
counts, matmul peak), `memory` (RSS and peak memory), `harness` (our model, train step and
inference for a config), `inputs` (random images and test sets).
"""
