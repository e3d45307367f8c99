"""The sanity check between methods (`python -m benchmarks.sanity`): `variants` (every registered
method, a no-student baseline, RGPKD's ablations), `data` (the synthetic splits in memory), `run`
(one run's training and metrics), `benchmark` (every run not yet recorded), `tables`."""
