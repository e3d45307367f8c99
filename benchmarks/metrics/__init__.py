"""The metric benchmark (`python -m benchmarks.metrics`): time and peak memory of our evaluation
metrics against scikit-learn's on the same maps (`measure` says what is measured; docs/protocol.md
has the results)."""
