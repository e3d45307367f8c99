"""ONNX exports side by side (`python -m benchmarks.export`): our RD4AD through `rgpkd_jax.exporting`
against anomalib 2.7's own ONNX export of its ReverseDistillation, both under onnxruntime
(`onnx_bench`). Needs the `peers` and `export` extras (benchmarks/README.md)."""
