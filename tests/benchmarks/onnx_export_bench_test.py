"""The ONNX-export benchmark's pieces that need neither anomalib nor a model: inputs, sizes, table."""

from benchmarks import onnx_export_bench as bench


def test_inputs_sizes_and_table(tmp_path):
    assert bench.example_input("ours", 2, 8).shape == (2, 8, 8, 3)
    assert bench.example_input("anomalib", 2, 8).shape == (2, 3, 8, 8)
    (tmp_path / "model.onnx").write_bytes(b"x" * 10)
    (tmp_path / "model.onnx.data").write_bytes(b"x" * 90)
    (tmp_path / "model.onnx.json").write_text("{}")
    assert bench.artefact_bytes(str(tmp_path / "model.onnx")) == 100
    result = {
        "onnxruntime": "1.32.0", "threads": 2, "arch": "wide_resnet50_2", "image_size": 256,
        "batch_sizes": [1, 16], "repeats": 5, "load_average_before": [1.0], "load_average_after": [1.0],
        "weights": "random", "artefact_bytes": {"ours": 4e8, "anomalib": 3e8},
        "median_latency_s": {"ours": {"1": 1.0, "16": 10.0}, "anomalib": {"1": 0.5, "16": 12.0}},
        "memory_mib": {e: {b: {"session_mib": 400.0, "peak_mib": 500.0} for b in ("1", "16")}
                       for e in ("ours", "anomalib")},
    }
    table = bench.markdown(result)
    assert "| 1 | 1.000 | 0.500 | 0.50 |" in table and "| 16 | 10.000 | 12.000 | 1.20 |" in table
    assert "ours 400.0 MB, anomalib 300.0 MB" in table
