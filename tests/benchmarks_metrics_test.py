"""`python -m benchmarks.metrics` on tiny maps: the rows, files and values it reports (no timing
is asserted: the machine's load decides those)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks.metrics import measure as metrics
from tests.helpers import REPO


def _run(*args):
    return subprocess.run([sys.executable, "-m", "benchmarks.metrics", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": REPO})


def test_tiny_run_writes_every_row_and_agrees_with_sklearn(tmp_path):
    done = _run(f"--output_dir={tmp_path}", "--num_images=12,6", "--image_size=32", "--repeats=2")
    assert done.returncode == 0, done.stderr[-3000:]
    written = json.loads((tmp_path / metrics.JSON_FILE).read_text())
    assert written["command"].startswith("python -m benchmarks.metrics --output_dir=")
    assert [r["inputs"]["num_images"] for r in written["test_sets"]] == [12, 6]
    report = written["test_sets"][0]
    assert report["inputs"]["pixels"] == 12 * 32 * 32 and report["inputs"]["good_images"] == 4
    names = [row["name"] for row in report["rows"]]
    assert names == ["ours/seven", "ours/evaluator", "ours/pixel_three", "sklearn/pixel_three", "sklearn/six"]
    for row in report["rows"]:
        assert len(row["seconds"]) == 2 and row["best_s"] == min(row["seconds"]) and row["peak_mib"] > 0
    # The same numbers from both sides (exact definitions; float rounding only).
    assert report["max_abs_difference_ours_vs_sklearn"] < 1e-12
    assert set(metrics.SHARED_METRICS) <= set(report["values"]["ours/seven"]) >= {"aupro", "mad"}
    assert set(report["values"]["sklearn/six"]) == set(metrics.SHARED_METRICS)
    markdown = (tmp_path / metrics.MARKDOWN_FILE).read_text()
    assert all(markdown.count(f"| {name} |") == 2 for name in names)
    assert "## 12 maps of 32 x 32 px" in markdown and "## 6 maps of 32 x 32 px" in markdown
    assert f"wrote {tmp_path / metrics.JSON_FILE} and {tmp_path / metrics.MARKDOWN_FILE}" in done.stdout


def test_bad_flags_are_refused_before_any_work(tmp_path):
    done = _run(f"--output_dir={tmp_path}", "--image_size=40")
    assert done.returncode == 1 and "error: --image_size=40: give a multiple of 16" in done.stderr
    assert not (tmp_path / metrics.JSON_FILE).exists()
    done = _run(f"--output_dir={tmp_path}", "--num_images=12,2")
    assert done.returncode == 1 and "error: --num_images=12,2: give sizes of at least 3" in done.stderr
    done = _run(f"--output_dir={tmp_path}", "--num_images=many")
    assert done.returncode == 1 and "error: --num_images=many: give whole numbers" in done.stderr
    done = _run("--num_images=12")
    assert done.returncode == 1 and "error: --output_dir is required" in done.stderr
