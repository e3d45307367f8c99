"""Structure of `python -m benchmarks.speed` (no timing assertions): a tiny run writes a JSON and a
Markdown table with every row of the sections it ran, ratios where a peer ran, targets attached."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import aupro_reference_loop, inputs, speed, speed_report
from tests.helpers import REPO

TRAIN_ROWS = {"train/rd4ad", "train/rd4ad_teacher_cache", "train/rd4ad_fraction_of_peak"}
OTHER_ROWS = {"infer/batch1", "infer/batch16", "eval/end_to_end",
              "aupro/rd4ad_per_image_vs_threshold_loop", "aupro/rd4ad_per_image_vs_loop_labelled_once",
              "aupro/official_vs_threshold_loop", "memory/train", "memory/train_process", "memory/infer", "memory/infer_process"}
VARIANT_ROWS = {f"variant/{task}[{impl},{dtype}]" for task in ("train", "infer") for impl, dtype in speed.VARIANTS}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("speed")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed", "--tiny", "--peer=none", "--method=rd4ad",
         f"--section={','.join(speed.SECTIONS)}", f"--output_dir={out}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / speed_report.JSON_FILE) as f:
        result = json.load(f)
    return result, (out / speed_report.MARKDOWN_FILE).read_text()


def test_tiny_run_has_every_row_with_values(tiny_run):
    result, _ = tiny_run
    rows = {row["name"]: row for row in result["rows"]}
    assert set(rows) == TRAIN_ROWS | OTHER_ROWS | VARIANT_ROWS
    assert not result["skipped"]
    for name, row in rows.items():
        assert row["ours"] is not None and np.isfinite(row["ours"]) and row["ours"] > 0, name
        assert {"peer", "peer_label", "ratio", "target", "met", "unit", "note", "ceiling"} <= set(row), name
    # Ratios need a second number: with --peers=none only the rows measured against something
    # other than anomalib (the threshold loop, the matmul peak) have one.
    for name in ("aupro/rd4ad_per_image_vs_threshold_loop", "train/rd4ad_fraction_of_peak"):
        row = rows[name]
        assert row["ratio"] == pytest.approx(row["ours"] / row["peer"]), name
        assert row["target"] == "{} {:g}".format(*speed_report.TARGETS[name]) and row["met"] in (True, False)
    assert rows["train/rd4ad"]["ratio"] is None and rows["train/rd4ad"]["met"] is None
    # The cached step is measured against ours running the teacher, so it has a ratio without a peer.
    cached = rows["train/rd4ad_teacher_cache"]
    assert cached["ratio"] == pytest.approx(cached["ours"] / cached["peer"]) and cached["target"] is None
    # Our per-image AUPRO and both threshold loops compute the same metric.
    values = result["extra"]["aupro_values"]
    for loop in ("threshold_loop", "threshold_loop_label_once"):
        assert values["per_image"] == pytest.approx(values[loop], abs=1e-9), loop


def test_tiny_run_records_load_and_raw_timings(tiny_run):
    result, _ = tiny_run
    assert len(result["load_average_start"]) == 3
    assert set(result["load_average_per_section"]) >= {"train/rd4ad", "inference", "aupro"}
    assert all(len(times) == result["setup"]["repeats"]
               for section in result["seconds_per_call"].values() for times in section.values())
    assert result["peer"]["label"] == "(no peer)" and "--peer=none" in result["peer"]["reason"]


def test_markdown_table_lists_every_row(tiny_run):
    result, markdown = tiny_run
    header = next(line for line in markdown.splitlines() if line.startswith("| row "))
    assert "ours / peer" in header and "target" in header
    table = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| row ")]
    assert [line.split(" | ")[0][2:] for line in table] == [row["name"] for row in result["rows"]]


@pytest.mark.parametrize("label_once", [False, True])
def test_threshold_loop_matches_our_per_image_aupro(label_once):
    """The benchmark's reference is the same metric as ours (else the speed ratio means nothing)."""
    from rgpkd_jax.metrics import aupro
    maps, masks, _ = inputs.anomaly_test_set(9, 48, seed=3)
    assert aupro_reference_loop.threshold_loop_aupro(maps, masks, label_once=label_once) == pytest.approx(
        aupro.aupro_rd4ad_per_image(maps, masks).mean, abs=1e-12)


def test_ratio_and_target_semantics():
    faster = speed_report.Row("infer/batch16", "images/s", 30.0, 10.0, "peer")
    assert faster.ratio == 3.0 and faster.met is True and faster.target == ">= 2"
    heavier = speed_report.Row("memory/train", "MiB", 1200.0, 1000.0, "peer")
    assert heavier.ratio == pytest.approx(1.2) and heavier.met is False
    alone = speed_report.Row("train/rd4ad", "images/s", 1.0, None, "(no peer)")
    assert alone.ratio is None and alone.met is None
