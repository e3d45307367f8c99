"""Structure of `python -m benchmarks.speed` (no timing assertions): a tiny run writes a JSON and a
Markdown table with every row of the sections it ran, ratios where a peer ran, targets attached."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.speed import (anomalib_peer, aupro_loop, inputs, memory_probe, official_peer, peers, report, run,
                              sections, sizes)
from tests.helpers import REPO, import_oracle

TRAIN_ROWS = {"train/rd4ad", "train/rd4ad_fraction_of_peak", "train/rd4ad_teacher_cache",
              "train/rd4ad_teacher_cache_vs_ours", "train/rd4ad_remat", "train/rd4ad_remat_vs_ours"}
OTHER_ROWS = {"infer/batch1", "infer/batch16", "eval/end_to_end",
              "aupro/rd4ad_per_image_vs_threshold_loop", "aupro/rd4ad_per_image_vs_loop_labelled_once",
              "aupro/official_vs_threshold_loop", "memory/train", "memory/train_process", "memory/infer", "memory/infer_process",
              "memory/train_remat", "memory/train_teacher_cache"}
VARIANT_ROWS = {f"variant/{task}[{impl},{dtype}]" for task in ("train", "infer") for impl, dtype in run.VARIANTS}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("speed")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed", "--tiny", "--peers=none", "--methods=rd4ad",
         f"--sections={','.join(sections.SECTIONS)}", f"--output_dir={out}"], cwd=REPO, capture_output=True, text=True,
        timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / report.JSON_FILE) as f:
        result = json.load(f)
    return result, (out / report.MARKDOWN_FILE).read_text()


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
        assert row["target"] == "{} {:g}".format(*report.TARGETS[name]) and row["met"] in (True, False)
    assert rows["train/rd4ad"]["ratio"] is None and rows["train/rd4ad"]["met"] is None
    # The cached and the remat step are measured against our plain step too, so they have a ratio
    # without a peer; against the peer (none here) they have none.
    for variant in ("teacher_cache", "remat"):
        against_ours = rows[f"train/rd4ad_{variant}_vs_ours"]
        assert against_ours["ratio"] == pytest.approx(against_ours["ours"] / against_ours["peer"]), variant
        assert against_ours["target"] is None
        assert rows[f"train/rd4ad_{variant}"]["peer"] is None, variant
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
    assert result["peers"] == {"none": {"label": "(not run)", "reason": "not requested (--peers=none)"}}


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
    assert aupro_loop.threshold_loop_aupro(maps, masks, label_once=label_once) == pytest.approx(
        aupro.aupro_rd4ad_per_image(maps, masks).mean, abs=1e-12)


def test_ratio_and_target_semantics():
    faster = report.Row("infer/batch16", "images/s", 30.0, 10.0, "peer")
    assert faster.ratio == 3.0 and faster.met is True and faster.target == ">= 2"
    heavier = report.Row("memory/train", "MiB", 1200.0, 1000.0, "peer")
    assert heavier.ratio == pytest.approx(1.2) and heavier.met is False
    alone = report.Row("train/rd4ad", "images/s", 1.0, None, "(no peer)")
    assert alone.ratio is None and alone.met is None


# The official RD4AD code is never vendored nor downloaded: these tests drive a stand-in checkout
# with its interface (tests/torch_rd4ad.py), written into a temporary folder. Its main.py imports
# test.py as the official one does, so the stand-in's `test` must win over Python's `test` package.
STANDIN_FILES = {
    "resnet.py": "from tests.torch_rd4ad import standin_resnet18 as resnet18\n",
    "de_resnet.py": "from tests.torch_rd4ad import standin_de_resnet18 as de_resnet18\n",
    "test.py": "from tests.torch_rd4ad import standin_cal_anomaly_map as cal_anomaly_map\n",
    "main.py": "from test import cal_anomaly_map  # noqa: F401  (the official main.py imports test.py)\n"
               "from tests.torch_rd4ad import standin_loss as loss_fucntion\n",
}
OFFICIAL_ROWS = {"train/rd4ad_vs_official", "train/rd4ad_teacher_cache_vs_official", "train/rd4ad_remat_vs_official",
                 "infer/batch1_vs_official", "infer/batch16_vs_official",
                 "memory/train_remat_vs_official", "memory/train_teacher_cache_vs_official",
                 "memory/train_vs_official", "memory/train_process_vs_official", "memory/infer_vs_official",
                 "memory/infer_process_vs_official"}


def write_standin(folder, files=STANDIN_FILES):
    """A stand-in with the official RD4AD code's interface (not the official code) in `folder`."""
    os.makedirs(folder, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(f'"""A stand-in for the official RD4AD {name}: its interface, not its code."""\n'
                                   + text)
    return folder


@pytest.fixture(scope="module")
def standin_dir(module_tmp_path):
    import_oracle("torch")
    import_oracle("torchvision")
    import_oracle("scipy")
    return write_standin(module_tmp_path / "official_standin")


@pytest.fixture(scope="module")
def official_run(standin_dir, module_tmp_path):
    out = module_tmp_path / "speed_official"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed", "--tiny", "--peers=official", f"--official_dir={standin_dir}",
         "--sections=train,inference,memory", "--methods=rd4ad", f"--output_dir={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / report.JSON_FILE) as f:
        return json.load(f), (out / report.MARKDOWN_FILE).read_text()


def test_official_peer_rows_next_to_ours(official_run):
    result, markdown = official_run
    rows = {row["name"]: row for row in result["rows"]}
    assert OFFICIAL_ROWS <= set(rows)
    label = "official RD4AD @ unknown commit"  # the stand-in folder is no git checkout
    for name in OFFICIAL_ROWS:
        row = rows[name]
        assert row["peer_label"] == label, name
        assert row["ours"] is not None and row["peer"] is not None and np.isfinite(row["peer"]), name
        if name.startswith(("train", "infer")):  # rates; tiny memory probes share one process
            assert row["peer"] > 0 and row["ratio"] == pytest.approx(row["ours"] / row["peer"]), name
    # anomalib's rows stay, without a peer; each official row comes right after its own.
    assert rows["train/rd4ad"]["peer"] is None and rows["memory/train"]["peer"] is None
    names = [row["name"] for row in result["rows"]]
    assert names.index("infer/batch16_vs_official") == names.index("infer/batch16") + 1
    assert "official" in rows["train/rd4ad_vs_official"]["note"]
    assert result["extra"]["rd4ad_train_step"]["official_flops_per_step"] > 0
    assert result["peers"] == {"official": {"label": label, "reason": ""}}
    assert result["versions"]["official_rd4ad"] == "unknown commit" and "torch" in result["versions"]
    assert f"official: {label}" in markdown
    # the stand-in's cal_anomaly_map takes one image: the batch-2 row proves the maps went image by image
    assert set(result["seconds_per_call"]["infer/batch2"]) == {"ours", "matmul", "official"}


def test_official_memory_probe_in_its_own_process(standin_dir):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed.memory_probe", "--probe=infer:official", "--tiny",
         f"--official_dir={standin_dir}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["impl"] == "official" and probe["peak_mib"] > 0


@pytest.mark.parametrize("variant", sorted(memory_probe.OUR_TRAIN_VARIANTS))
def test_our_train_variant_memory_probe_in_its_own_process(variant):
    """The full-size run probes in subprocesses (the tiny run in its own process): the same path."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.speed.memory_probe", f"--probe=train:{variant}", "--tiny"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["impl"] == variant and probe["peak_mib"] > 0


def test_official_peer_maps_and_train_step(standin_dir):
    loaded, _ = peers.load_peers(["official"], str(standin_dir))
    model = loaded["official"].build("resnet18", 64)
    batch = model.prepare(inputs.random_images(3, 64))
    maps, scores = model.maps_and_scores(batch)
    assert maps.shape == (3, 64, 64) and np.array_equal(scores, maps.max(axis=(1, 2)))
    assert np.isfinite(model.train_step(batch))


def test_official_import_leaves_modules_and_path_as_they_were(standin_dir):
    import test as python_test  # Python's own package of that name, imported before
    path = list(sys.path)
    code = official_peer.import_official(str(standin_dir))
    assert code.test.__file__ == str(standin_dir / "test.py")
    assert sys.modules["test"] is python_test and "main" not in sys.modules and sys.path == path


@pytest.mark.parametrize("official_dir, message", [
    (None, "--official_dir: required with --peers=official"),
    ("missing_files", "no resnet.py, de_resnet.py, main.py there"),
    ("missing_package", "the official code imports 'not_installed_package_xyz', which is not installed"),
], ids=["no_dir", "missing_files", "missing_package"])
def test_official_dir_errors_name_the_flag(official_dir, message, tmp_path):
    if official_dir == "missing_files":
        write_standin(tmp_path, {"test.py": ""})
    elif official_dir == "missing_package":
        write_standin(tmp_path, {**STANDIN_FILES, "main.py": "import not_installed_package_xyz\n"})
    given = str(tmp_path) if official_dir else None
    with pytest.raises(official_peer.OfficialCodeError, match=message):
        peers.load_peers(["official"], given)
    assert "main" not in sys.modules and "resnet" not in sys.modules


def test_official_dir_error_is_one_line_from_the_command(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--tiny", "--peers=official",
                           f"--official_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (f"error: --official_dir={tmp_path}: no resnet.py, de_resnet.py, "
                                                    "main.py, test.py there; give a checkout of the official RD4AD "
                                                    f"code ({official_peer.CLONE_HINT})")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("names, official_dir, message", [
    (["anomalib", "none"], None, "'none' runs ours alone"),
    (["onnx"], None, "--peers: unknown"),
    (["anomalib"], "somewhere", "--official_dir is only used with --peers=official"),
])
def test_peer_flag_errors(names, official_dir, message):
    with pytest.raises(ValueError, match=message):
        peers.check_peers(names, official_dir)


def test_missing_anomalib_still_runs_the_official_peer(standin_dir, monkeypatch):
    monkeypatch.setattr(anomalib_peer, "REQUIRED", ("torch", "not_installed_package_xyz"))
    loaded, reasons = peers.load_peers(["anomalib", "official"], str(standin_dir))
    assert list(loaded) == ["official"] and loaded["official"].row_suffix == "_vs_official"
    assert "missing: not_installed_package_xyz" in reasons["anomalib"] and set(reasons) == {"anomalib"}


def test_a_failing_section_is_listed_and_the_other_sections_keep_their_rows(monkeypatch):
    """A full-size run takes ~15 min: an error in one section must not lose the others' rows."""
    def failing(run):
        raise RuntimeError("memory probe train:ours_remat failed:\n...\nthe error's last line")

    def passing(run):
        run.rows.append(report.Row("aupro/rd4ad_per_image_vs_threshold_loop", "images/s", 2.0, 1.0, "loop"))

    monkeypatch.setattr(sections, "inference_section", failing)
    monkeypatch.setattr(sections, "aupro_section", passing)
    result = sections.benchmark(sizes.TINY, sections=("inference", "aupro"), methods=("rd4ad",))
    assert result["failed"] == ["inference: RuntimeError: the error's last line"]
    assert [row["name"] for row in result["rows"]] == ["aupro/rd4ad_per_image_vs_threshold_loop"]
    assert "inference: RuntimeError: the error's last line" in report.to_markdown(result)
