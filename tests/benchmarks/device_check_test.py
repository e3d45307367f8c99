"""`bash benchmarks/device_check.sh --dry-run`: the accelerator check's structure, on this CPU.

The real check runs on a GPU (benchmarks/NOTES.md has its table); here every step runs at the
tiny size, so a broken step, flag or report is found before a GPU lease is spent on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks.speed import device_check, run
from tests.helpers import REPO


def test_dry_run_runs_every_step_and_reports_every_row(tmp_path):
    done = subprocess.run(["bash", "benchmarks/device_check.sh", "--dry-run", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"results in {tmp_path}" in done.stdout
    report = json.loads((tmp_path / device_check.JSON_FILE).read_text())
    assert report["dry_run"] is True
    assert [s["name"] for s in report["steps"]] == [s.name for s in device_check.plan(str(tmp_path), True)]
    for step in report["steps"]:
        assert step["rc"] == 0 and not step["timed_out"], (step, (tmp_path / step["log"]).read_text()[-2000:])
    rows = {row["name"] for row in report["rows"]}
    assert {f"variant/{task}[{impl},{dtype}]" for task in ("train", "infer")
            for impl, dtype in run.VARIANTS} <= rows
    assert {"memory/train", "memory/infer"} <= rows
    values = {row["name"]: row["ours"] for row in report["rows"]}
    assert {"job/prepare_s", "job/setup_s", "job/compile_s", "job/train_s", "job/data_wait_s", "job/evaluate_s"} <= rows
    assert values["job/job_s"] >= values["job/train_s"] + values["job/evaluate_s"] > 0
    # The StableHLO artefact for this backend (here the CPU lowering) gives the JAX model's maps
    # (tests/export_deploy_test.py's bound).
    assert values["stablehlo/max_map_diff"] <= 1e-5 and values["stablehlo/max_score_diff"] <= 1e-5
    assert (tmp_path / "leaderboard" / "leaderboard.json").exists()
    collected = (tmp_path / "tests.log").read_text()
    assert all(path in collected for path in device_check.GPU_TESTS)
    markdown = (tmp_path / device_check.MARKDOWN_FILE).read_text()
    assert "| speed_xla | 0 |" in markdown and "variant/train[xla,float32]" in markdown


def test_steps_share_the_budget_and_those_past_it_are_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(device_check, "BUDGET_S", 2.0)
    monkeypatch.setattr(device_check, "MIN_STEP_S", 0.5)
    sleep = lambda s: [sys.executable, "-c", f"import time; time.sleep({s})"]  # noqa: E731
    steps = [device_check.Step("quick", sleep(0.1), 60), device_check.Step("long", sleep(30), 60),
             device_check.Step("late", sleep(0.1), 60)]
    quick, long, late = device_check.run_steps(steps, str(tmp_path), dry_run=False)
    assert quick["rc"] == 0 and not quick["skipped"]
    assert long["timed_out"] and long["seconds"] < 10  # cut to what was left of the 2 s, not its 60 s
    assert late["skipped"] and late["rc"] is None
    assert "| late | skipped |" in device_check.to_markdown(
        {"dry_run": False, "environment": device_check.environment(), "steps": [quick, long, late], "rows": []})
