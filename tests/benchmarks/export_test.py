"""The ONNX-export benchmark's pieces that need neither anomalib nor a model (inputs, sizes, table,
the interleaved latency with real onnxruntime sessions), and its one-line error without its extras."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import optional
from benchmarks.export import onnx_bench as bench
from tests.helpers import REPO, import_oracle


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


def _identity_model(path, layout):
    """An ONNX graph (Identity) taking what one engine takes: NHWC for ours, NCHW for anomalib."""
    onnx = import_oracle("onnx")
    from onnx import TensorProto, helper
    shape = ["batch", 8, 8, 3] if layout == "nhwc" else ["batch", 3, 8, 8]
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "identity",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def test_latency_rounds_and_memory_probe_with_real_sessions(tmp_path):
    import_oracle("onnxruntime")
    paths = {"ours": _identity_model(tmp_path / "ours.onnx", "nhwc"),
             "anomalib": _identity_model(tmp_path / "anomalib.onnx", "nchw")}
    times = bench.interleaved_latency(paths, image_size=8, batch_sizes=(1, 3), repeats=4, threads=1)
    assert {e: {b: len(v) for b, v in per.items()} for e, per in times.items()} == \
        {e: {1: 4, 3: 4} for e in paths}
    assert all(t > 0 for per in times.values() for v in per.values() for t in v)
    probe = subprocess.run([sys.executable, "-m", "benchmarks.export", f"--memory_probe=ours:{paths['ours']}",
                            "--image_size=8", "--batch_sizes=2", "--threads=1"],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert probe.returncode == 0, probe.stderr[-2000:]
    memory = json.loads(probe.stdout.strip().splitlines()[-1])
    assert set(memory) == {"session_mib", "peak_mib"} and np.isfinite(memory["peak_mib"])


def test_a_missing_package_is_one_line_naming_it_and_the_install():
    with pytest.raises(optional.MissingPackageError) as raised:
        optional.require(("numpy", "not_installed_package_xyz"), what="this check", install="pip install xyz")
    assert str(raised.value) == ("this check needs not_installed_package_xyz, not installed here; "
                                 "install: pip install xyz")
    optional.require(("numpy",), what="this check", install="pip install xyz")  # installed: no error


def test_missing_extras_stop_the_command_with_one_line():
    missing = optional.missing(bench.REQUIRED)
    if not missing:
        pytest.skip("every extra is installed here; the command would run the whole benchmark")
    done = subprocess.run([sys.executable, "-m", "benchmarks.export"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: the ONNX export benchmark needs {', '.join(missing)}, not installed here; "
        f"install: {optional.EXPORT_HINT}")
