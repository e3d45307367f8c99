"""The leaderboard harness: job list, split, skip/retry, overrides, aggregation, published data.

Aggregation is tested on fake job workdirs holding random metrics: every number of ours in the
tables must trace back to those files, and means/stds must equal numpy's. The last tests run the
real `--tiny` pipeline (tiny trainings in both settings + complexity) end to end and open its HTML
report in a real browser.
"""

from __future__ import annotations

import csv
import html
import html.parser
import importlib
import json
import os
import pkgutil
import random
import re
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import ablations
from benchmarks.leaderboard import aggregate, jobs as jobs_lib, published, stats, tables
from benchmarks.report import browser
from benchmarks.report import build as report_build
from benchmarks.report import content as report_content
from benchmarks.report import pages as report_pages
from rgpkd_jax import files
from rgpkd_jax.data import pipeline
from rgpkd_jax.models import list_methods
from tests.helpers import REPO, tiny_config

MVTEC = jobs_lib.categories("mvtec_ad")
METRICS = stats.METRIC_NAMES
OFFICIAL = {"resolution": [256, 256], "mask_threshold": 0.5, "aupro_fpr_limit": 0.3}  # a recorded protocol


def write_fake_job(root, method, dataset, category, seed, *, variant="", weights="imagenet", rng,
                   protocol=OFFICIAL):
    """A finished job: its job.json (as the harness writes it) and an eval_metrics.json of random numbers."""
    job = jobs_lib.Job(jobs_lib.TRAIN, method, dataset, category, seed, variant=variant)
    workdir = jobs_lib.claim_workdir(job, root)
    metrics = {m: float(rng.uniform(0.5, 1.0)) for m in METRICS}
    metrics["image_auroc/scratch"] = float(rng.uniform())  # per-defect keys are not tabulated
    data = {"dataset": dataset, "category": category, "method": method, "num_test_images": 10,
            "teacher": {"arch": "resnet18", "weights": weights}, "metrics": metrics, "protocol": protocol}
    if weights == "random":
        data["warning"] = "random teacher"
    files.write_json(os.path.join(workdir, jobs_lib.METRICS_FILE), data)
    return metrics


@pytest.fixture(scope="module")
def fake_board(tmp_path_factory):
    """MVTec AD: rd4ad and sk_rd4ad on all 15 categories x 3 seeds; rgpkd on 3 categories, 1 seed (an
    incomplete mean); an rgpkd ablation evaluated with masks binarised at > 0; a random-teacher
    synthetic job; one failed job."""
    root = str(tmp_path_factory.mktemp("board"))
    rng = np.random.default_rng(0)
    written = {}  # (dataset, category, method_label) -> {seed: metrics}
    for method in ("rd4ad", "sk_rd4ad"):  # method subset: a fixture of fake jobs
        for category in MVTEC:
            for seed in (0, 1, 2):
                written.setdefault(("mvtec_ad", category, method), {})[seed] = write_fake_job(
                    root, method, "mvtec_ad", category, seed, rng=rng)
    for category in ("bottle", "carpet", "zipper"):
        written[("mvtec_ad", category, "rgpkd")] = {0: write_fake_job(root, "rgpkd", "mvtec_ad", category, 0, rng=rng)}
    written[("mvtec_ad", "bottle", "rgpkd+no_prompts")] = {
        0: write_fake_job(root, "rgpkd", "mvtec_ad", "bottle", 0, variant="no_prompts", rng=rng,
                          protocol={**OFFICIAL, "mask_threshold": 0.0})}
    written[("synthetic", "grid", "rd4ad")] = {
        5: write_fake_job(root, "rd4ad", "synthetic", "grid", 5, weights="random", rng=rng)}
    failed = jobs_lib.Job(jobs_lib.TRAIN, "rgpkd", "mvtec_ad", "cable", 0)
    jobs_lib.claim_workdir(failed, root)
    jobs_lib.record_failure(failed, root, RuntimeError("out of memory\nsecond line"))
    board = aggregate.aggregate(root, pending=["x/y/z/seed0"], plots=True)
    return root, board, written


def write_fake_unified_job(root, method, dataset, categories, seed, *, rng) -> dict:
    """A finished unified job as the evaluator writes it: each category's eval_metrics.json under
    categories/<category>/ and the job's own file listing them (its means are not what the tables read)."""
    job = jobs_lib.Job(jobs_lib.TRAIN, method, dataset, "all", seed, setting="unified")
    workdir = jobs_lib.claim_workdir(job, root)
    per_category = {}
    for category in categories:
        metrics = {m: float(rng.uniform(0.5, 1.0)) for m in METRICS}
        per_category[category] = metrics
        os.makedirs(os.path.join(workdir, "categories", category))
        files.write_json(os.path.join(workdir, "categories", category, jobs_lib.METRICS_FILE), {
            "setting": "unified", "dataset": dataset, "category": category, "method": method,
            "teacher": {"arch": "wide_resnet50_2", "weights": "imagenet"}, "metrics": metrics, "protocol": OFFICIAL})
    files.write_json(os.path.join(workdir, jobs_lib.METRICS_FILE), {
        "setting": "unified", "dataset": dataset, "category": "all", "categories": list(categories),
        "method": method, "metrics": {m: 0.0 for m in METRICS}, "per_category": per_category, "protocol": OFFICIAL})
    return per_category


@pytest.fixture(scope="module")
def unified_board(tmp_path_factory):
    """MVTec AD: rd4ad per category (1 seed) and unified (2 seeds), every category."""
    root = str(tmp_path_factory.mktemp("unified_board"))
    rng = np.random.default_rng(1)
    per_category = {c: write_fake_job(root, "rd4ad", "mvtec_ad", c, 0, rng=rng) for c in MVTEC}
    unified_runs = {seed: write_fake_unified_job(root, "rd4ad", "mvtec_ad", MVTEC, seed, rng=rng) for seed in (0, 1)}
    return root, aggregate.aggregate(root, plots=False), per_category, unified_runs


def test_unified_rows_come_from_each_category_s_file_beside_the_unified_published_numbers(unified_board):
    root, board, per_category, unified_runs = unified_board
    rows = {(r["setting"], r["category"]): r for r in board["rows"]}
    assert set(rows) == {(s, c) for s in ("per_category", "unified") for c in MVTEC}
    for category in MVTEC:
        cell = rows[("unified", category)]["metrics"]["image_auroc"]
        assert cell["per_seed"] == {s: unified_runs[s][category]["image_auroc"] for s in (0, 1)}
        assert rows[("per_category", category)]["metrics"]["image_auroc"]["per_seed"] == {
            0: per_category[category]["image_auroc"]}
    ader = next(r for r in published.references(method="rd4ad", dataset="mvtec_ad", setting="unified", primary=True))
    means = {s["setting"]: s for s in board["summaries"] if s["scope"] == "mean"}
    unified_mean = means["unified"]["metrics"]["image_auroc"]
    expected = np.mean([[unified_runs[s][c]["image_auroc"] for s in (0, 1)] for c in MVTEC])
    assert unified_mean["mean"] == pytest.approx(expected, rel=1e-12)
    assert unified_mean["published_percent"] == ader.values["image_auroc"]["mean"]
    assert unified_mean["diff_points"] == pytest.approx(100 * expected - ader.values["image_auroc"]["mean"])
    # the per-category mean stands beside the per-category paper, never beside ADer's unified run
    assert means["per_category"]["metrics"]["image_auroc"]["published_reference"] == "rd4ad_paper"
    # ADer publishes the official-definition AU-PRO per category: beside our unified rows only
    assert rows[("unified", "bottle")]["metrics"]["aupro"]["published_percent"] == ader.values["aupro"]["bottle"]
    assert rows[("per_category", "bottle")]["metrics"]["aupro"]["published_percent"] is None
    assert {c["setting"] for c in board["secondary"]} == {"per_category", "unified"}
    markdown = tables.markdown(board)
    assert "### mvtec_ad, unified" in markdown and "### mvtec_ad, per category" in markdown
    side = markdown[markdown.index("the two settings side by side"):].splitlines()
    rd4ad_line = next(line for line in side if line.startswith("| rd4ad |"))
    assert f"| {tables.fmt_ours(unified_mean)} | {ader.values['image_auroc']['mean']} |" in rd4ad_line
    assert {line.split(",")[1] for line in tables.leaderboard_csv(board["rows"], board["summaries"]).splitlines()[1:]} == {
        "per_category", "unified"}


def test_a_unified_job_missing_a_category_s_file_is_a_clear_error(unified_board, tmp_path):
    root = str(tmp_path)
    write_fake_unified_job(root, "rd4ad", "mvtec_ad", ("bottle", "cable"), 0, rng=np.random.default_rng(2))
    job = jobs_lib.Job(jobs_lib.TRAIN, "rd4ad", "mvtec_ad", "all", 0, setting="unified")
    os.remove(os.path.join(job.workdir(root), "categories", "cable", jobs_lib.METRICS_FILE))
    with pytest.raises(ValueError, match="lists category 'cable'.*rerun the job"):
        aggregate.collect(root)


def _expected_cell(per_seed: dict) -> tuple[float, float | None]:
    values = np.array(list(per_seed.values()))
    return values.mean(), (values.std(ddof=1) if len(values) > 1 else None)


def test_every_row_number_traces_to_a_metrics_file_and_stats_match_numpy(fake_board):
    _, board, written = fake_board
    rows = {(r["dataset"], r["category"], r["method_label"]): r for r in board["rows"]}
    assert set(rows) == set(written)
    for key, seeds in written.items():
        for metric in METRICS:
            cell = rows[key]["metrics"][metric]
            assert cell["per_seed"] == {s: m[metric] for s, m in seeds.items()}  # exact, from the file
            mean, std = _expected_cell({s: m[metric] for s, m in seeds.items()})
            assert cell["mean"] == pytest.approx(mean, rel=1e-12)
            assert (cell["std"] is None) == (std is None)
            if std is not None:
                assert cell["std"] == pytest.approx(std, rel=1e-12)


def test_dataset_and_texture_object_means(fake_board):
    _, board, written = fake_board
    summaries = {(s["dataset"], s["scope"], s["method_label"]): s for s in board["summaries"]}
    for scope, categories in (("mean", MVTEC), ("mean/textures", published.GROUPS["mvtec_ad"]["textures"]),
                              ("mean/objects", published.GROUPS["mvtec_ad"]["objects"])):
        for metric in METRICS:
            table = np.array([[written[("mvtec_ad", c, "rd4ad")][s][metric] for s in (0, 1, 2)] for c in categories])
            cell = summaries[("mvtec_ad", scope, "rd4ad")]["metrics"][metric]
            assert cell["mean"] == pytest.approx(table.mean(), rel=1e-12)
            assert cell["std"] == pytest.approx(table.mean(axis=0).std(ddof=1), rel=1e-12)
            assert cell["complete"]
    # RD4AD's paper publishes the image-AUROC texture mean: the difference is ours minus it, in points.
    textures = summaries[("mvtec_ad", "mean/textures", "rd4ad")]["metrics"]["image_auroc"]
    assert textures["published_percent"] == 99.5
    assert textures["diff_points"] == pytest.approx(100 * textures["mean"] - 99.5)
    # rgpkd ran 3 of 15 categories: its mean is shown but never compared with the published 99.8.
    partial = summaries[("mvtec_ad", "mean", "rgpkd")]["metrics"]["image_auroc"]
    assert partial["num_categories"] == 3 and not partial["complete"]
    assert partial["published_percent"] == 99.8 and partial["diff_points"] is None


def test_published_numbers_sit_beside_the_matching_protocol(fake_board):
    _, board, written = fake_board
    rows = {(r["dataset"], r["category"], r["method_label"]): r for r in board["rows"]}
    bottle = rows[("mvtec_ad", "bottle", "rd4ad")]["metrics"]
    paper = next(r for r in published.references() if r.key == "rd4ad_paper")
    assert bottle["aupro_rd4ad_per_image"]["published_percent"] == paper.values["aupro_rd4ad_per_image"]["bottle"]
    # Only ADer publishes the official AU-PRO and image AP, in the unified setting: never beside our
    # per-category runs, neither as their published column nor as a secondary comparison.
    assert bottle["aupro"]["published_percent"] is None and bottle["image_ap"]["published_percent"] is None
    mean, _ = _expected_cell({s: m["pixel_auroc"] for s, m in written[("mvtec_ad", "bottle", "rd4ad")].items()})
    assert bottle["pixel_auroc"]["diff_points"] == pytest.approx(100 * mean - 98.7)
    # Ablations have no published counterpart; SK-RD4AD publishes no image AUROC.
    assert rows[("mvtec_ad", "bottle", "rgpkd+no_prompts")]["metrics"]["image_auroc"]["published_percent"] is None
    assert rows[("mvtec_ad", "bottle", "sk_rd4ad")]["metrics"]["image_auroc"]["published_percent"] is None
    secondary = {(c["reference"], c["scope"], c["metric"]) for c in board["secondary"]}
    assert ("anomalib_rd", "bottle", "pixel_auroc") in secondary
    assert ("rgpkd_repo_result_test", "transistor", "aupro_rd4ad_per_image") in secondary
    assert not {c["reference"] for c in board["secondary"]} & {r.key for r in published.references(setting="unified")}


def test_csv_numbers_are_the_json_numbers(fake_board):
    root, board, written = fake_board
    with open(os.path.join(root, "leaderboard.csv")) as f:
        lines = list(csv.DictReader(f))
    rows = {(r["dataset"], r["category"], r["method_label"]): r for r in board["rows"]}
    checked = 0
    for line in lines:
        label = line["method"] + (f"+{line['variant']}" if line["variant"] else "")
        key = (line["dataset"], line["scope"], label)
        if key not in rows:
            continue
        per_seed = {int(k): float(v) for k, v in (p.split(":") for p in line["per_seed"].split(";"))}
        assert per_seed == {s: m[line["metric"]] for s, m in written[key].items()}
        mean, std = _expected_cell(per_seed)
        assert float(line["mean"]) == pytest.approx(mean, rel=1e-12)
        assert (line["std"] == "") == (std is None)
        checked += 1
    assert checked == sum(len(METRICS) for _ in written)


def _markdown_table(text: str, heading: str) -> list[list[str]]:
    section = text.split(f"## {heading}\n", 1)[1].lstrip("\n")
    lines = section.split("\n\n", 1)[0].splitlines()
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_markdown_shows_mean_std_published_and_marks(fake_board):
    root, board, written = fake_board
    text = open(os.path.join(root, "leaderboard.md")).read()
    table = _markdown_table(text, "mvtec_ad")
    header_metrics = tables.result_header("Category", ["image_auroc", "pixel_auroc", "aupro_rd4ad_per_image"])
    header_line = text.split("## mvtec_ad\n", 1)[1].lstrip("\n").splitlines()[0]
    # every metric has a column; pub. and Δ only beside those some source publishes for MVTec AD
    assert [c.strip() for c in header_line.strip("|").split("|")] == header_metrics
    assert [c for c in header_metrics if c in dict(stats.METRICS).values()] == list(dict(stats.METRICS).values())
    by_key = {(r[0], r[1]): dict(zip(header_metrics, r)) for r in table}
    for category in MVTEC:
        for method in ("rd4ad", "sk_rd4ad"):  # method subset: the fixture's complete methods
            cells = by_key[(category, method)]
            mean, std = _expected_cell({s: m["image_auroc"] for s, m in written[("mvtec_ad", category, method)].items()})
            assert cells["image AUROC"] == f"{100 * mean:.2f} ± {100 * std:.2f}"
            mean, std = _expected_cell({s: m["aupro"] for s, m in written[("mvtec_ad", category, method)].items()})
            assert cells["AU-PRO (official)"] == f"{100 * mean:.2f} ± {100 * std:.2f}"
    assert by_key[("bottle", "rd4ad")]["Seeds"] == "0,1,2"
    assert "**mean** (3/15 categories)" in [r[0] for r in table]
    assert "**mean/textures**" in [r[0] for r in table]
    synthetic = _markdown_table(text, "synthetic")
    assert tables.RANDOM_TEACHER_MARK in synthetic[0][1]
    assert "RuntimeError" in text and "out of memory" in text and "second line" not in text
    assert "x/y/z/seed0" in text
    assert os.path.getsize(os.path.join(root, "leaderboard_mvtec_ad.png")) > 1000
    assert "![mvtec_ad](leaderboard_mvtec_ad.png)" in text
    failed = json.load(open(os.path.join(root, "leaderboard.json")))["failed"]
    assert [f["job"] for f in failed] == ["rgpkd/mvtec_ad/cable/seed0"]


def test_each_table_states_its_protocol_and_flags_a_mixed_one(fake_board):
    """The protocol every job recorded is shown with its table; a table whose jobs used different
    protocols says so and names the rows of each (their numbers are not comparable)."""
    root, board, _ = fake_board
    text = open(os.path.join(root, "leaderboard.md")).read()
    official, binarised_at_zero = stats.protocol_text(OFFICIAL), stats.protocol_text({**OFFICIAL, "mask_threshold": 0.0})
    assert '"mask_threshold 0.5' not in official and "mask_threshold 0.5" in official
    mvtec = text.split("## mvtec_ad\n", 1)[1].split("\n## ", 1)[0]
    assert "evaluated under 2 protocols" in mvtec
    assert f"> - {binarised_at_zero}: bottle/rgpkd+no_prompts" in mvtec.splitlines()
    official_line = next(line for line in mvtec.splitlines() if line.startswith(f"> - {official}: "))
    assert "bottle/rd4ad" in official_line and "bottle/rgpkd+no_prompts" not in official_line
    synthetic = text.split("## synthetic\n", 1)[1]
    assert f"Protocol (docs/protocol.md): {official}." in synthetic and "protocols" not in synthetic.split("##")[0]
    with open(os.path.join(root, "leaderboard.csv")) as f:
        protocols = {(r["scope"], r["variant"]): r["protocol"] for r in csv.DictReader(f)}
    assert protocols[("bottle", "no_prompts")] == binarised_at_zero and protocols[("bottle", "")] == official
    assert stats.protocol_text(None) == stats.NO_PROTOCOL


def test_published_data_is_internally_consistent():
    paper = next(r for r in published.references() if r.key == "rd4ad_paper")
    groups = published.GROUPS["mvtec_ad"]
    assert sorted(groups["textures"] + groups["objects"]) == sorted(MVTEC)
    image = paper.values["image_auroc"]
    # Recomputing the paper's means from its per-class values gives the published means (docs/reference.md §2.9).
    assert np.mean([image[c] for c in MVTEC]) == pytest.approx(image["mean"], abs=0.05)
    assert np.mean([image[c] for c in groups["textures"]]) == pytest.approx(image["mean/textures"], abs=0.05)
    assert np.mean([image[c] for c in groups["objects"]]) == pytest.approx(image["mean/objects"], abs=0.05)
    for metric in ("pixel_auroc", "aupro_rd4ad_per_image"):
        values = paper.values[metric]
        assert np.mean([values[c] for c in MVTEC]) == pytest.approx(values["mean"], abs=0.05)
    sk_visa = next(r for r in published.references() if r.key == "sk_rd4ad_readme_visa")
    visa = jobs_lib.categories("visa")
    for metric, values in sk_visa.values.items():
        assert np.mean([values[c] for c in visa]) == pytest.approx(values["mean"], abs=0.1)
    scopes = {"mean", *(f"mean/{g}" for g in groups)}
    for ref in published.references():
        assert ref.method in list_methods() and ref.source and ref.caveat
        assert set(ref.values) <= set(METRICS)
        for values in ref.values.values():
            assert set(values) - scopes <= set(jobs_lib.categories(ref.dataset)), ref.key
    for ref in published.references(setting="per_category"):  # their PRO is always the per-image variant
        assert "aupro" not in ref.values, ref.key
    primaries = [(r.method, r.dataset, r.setting) for r in published.references(primary=True)]
    assert len(primaries) == len(set(primaries))
    keys = [r.key for r in published.references()]
    assert len(keys) == len(set(keys))


def test_aders_unified_tables_cover_their_dataset_and_add_up_to_their_printed_means():
    """ADer's per-category values (3 decimals, from its logs) average to its README's means (1 decimal)
    within 0.0005 + 0.05; its mAD is the mean of the README's seven means within mAD's own rounding,
    0.05: ADer averages the printed means (averaging the logs' 3-decimal means instead, two of the
    eight mADs would round the other way)."""
    unified = published.references(setting="unified")
    assert sorted((r.method, r.dataset, r.primary) for r in unified) == sorted(
        (m, d, primary) for m in ("rd4ad", "rd_pp")  # method subset: the methods ADer benchmarks
        for d in ("mvtec_ad", "visa") for primary in (True, False))
    assert all(r.primary == r.key.endswith("_300e") for r in unified)  # 300 epochs primary, 100 beside it
    for ref in unified:
        categories = jobs_lib.categories(ref.dataset)
        assert set(ref.values) == set(published.ADER_COLUMNS) | {"mad"}, ref.key
        for metric in published.ADER_COLUMNS:
            values = ref.values[metric]
            assert set(values) == {*categories, "mean"}, (ref.key, metric)
            assert np.mean([values[c] for c in categories]) == pytest.approx(values["mean"], abs=0.0505 + 1e-9)
        assert set(ref.values["mad"]) == {"mean"}
        seven = np.mean([ref.values[metric]["mean"] for metric in published.ADER_COLUMNS])
        assert ref.values["mad"]["mean"] == pytest.approx(seven, abs=0.05 + 1e-9), ref.key


def test_a_reference_of_an_unknown_setting_is_a_clear_error():
    with pytest.raises(ValueError, match="setting 'multi_class' is none of"):
        published.Reference("k", "t", "rd4ad", "mvtec_ad", True, "s", "c", {}, setting="multi_class")


def test_published_numbers_are_one_file_per_method_found_by_listing_the_package():
    names = sorted(m.name for m in pkgutil.iter_modules(published.__path__))
    assert names and set(names) <= set(list_methods())
    for name in names:
        module = importlib.import_module(f"{published.__name__}.{name}")
        assert {r.method for r in module.REFERENCES} == {name}
        assert list(module.REFERENCES) == published.references(method=name)


@pytest.fixture
def published_dir(tmp_path, monkeypatch):
    """The published package reading its files from an empty folder (the tests write them)."""
    monkeypatch.setattr(published, "__path__", [str(tmp_path)])
    for name in list(sys.modules):
        if name.startswith(published.__name__ + "."):
            monkeypatch.delitem(sys.modules, name)
    published._all.cache_clear()
    yield tmp_path
    published._all.cache_clear()


def test_adding_a_methods_published_numbers_is_adding_its_file(published_dir):
    method = list_methods()[-1]
    (published_dir / f"{method}.py").write_text(
        "from benchmarks.leaderboard.published import IMAGE_AUROC, Reference\n"
        f"REFERENCES = (Reference(key='new', title='t', method={method!r}, dataset='mvtec_ad', primary=True, "
        "source='s', caveat='c', values={IMAGE_AUROC: {'mean': 99.0}}),)\n")
    assert [r.key for r in published.references()] == ["new"]
    assert published.references(method=method, primary=True)[0].values == {"image_auroc": {"mean": 99.0}}


@pytest.mark.parametrize("file_name, text, message", [
    ("not_a_method.py", "REFERENCES = ()\n", "is none of"),
    (f"{list_methods()[0]}.py", "from benchmarks.leaderboard.published import Reference\n"
     "REFERENCES = (Reference('k', 't', 'another', 'mvtec_ad', True, 's', 'c', {}),)\n", "name another method"),
], ids=["unregistered_file", "reference_of_another_method"])
def test_a_misplaced_published_file_is_a_clear_error(published_dir, file_name, text, message):
    (published_dir / file_name).write_text(text)
    with pytest.raises(ValueError, match=message):
        published.references()


def test_split_covers_every_job_exactly_once():
    methods = list(reversed(list_methods()))
    kwargs = dict(datasets=["mvtec_ad", "visa"], category_names=["all"], seeds=[0, 1, 2], ablations=True,
                  ablation_bank_sizes=[16, 64], complexity=True)
    jobs = jobs_lib.build_jobs(methods=methods, **kwargs)
    shuffled = random.Random(0).sample(methods, len(methods))
    assert jobs == jobs_lib.build_jobs(methods=shuffled, **kwargs)  # order does not depend on flag order
    rgpkd_variants = 1 + len(ablations.SWITCHES) + 2
    assert len(jobs) == (len(methods) - 1 + rgpkd_variants) * ((15 + 12) * 3 + 2)
    names = [j.name for j in jobs]
    assert len(set(names)) == len(names)
    for num_tasks in (1, 2, 7, len(jobs), len(jobs) + 3):
        shares = [jobs_lib.split(jobs, i, num_tasks) for i in range(num_tasks)]
        flat = [j.name for share in shares for j in share]
        assert sorted(flat) == sorted(names)
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    with pytest.raises(ValueError, match="task_index"):
        jobs_lib.split(jobs, 3, 3)


def test_unified_jobs_are_one_per_method_variant_and_seed_over_the_requested_categories():
    both = jobs_lib.build_jobs(methods=["rd4ad"], datasets=["mvtec_ad"], category_names=["all"],  # method subset: names
                               seeds=[0, 1], settings=("per_category", "unified"))
    unified_jobs = [j for j in both if j.setting == "unified"]
    assert [(j.name, j.category, j.config_arg) for j in unified_jobs] == [
        (f"rd4ad/mvtec_ad/unified/seed{s}", "all", "mvtec_ad/all") for s in (0, 1)]
    assert len(both) - len(unified_jobs) == 2 * len(jobs_lib.categories("mvtec_ad"))
    subset = jobs_lib.build_jobs(methods=["rd4ad"], datasets=["mvtec_ad"], category_names=["bottle", "cable"],  # method subset: names
                                 seeds=[0], settings=("unified",))
    assert [(j.name, j.category) for j in subset] == [("rd4ad/mvtec_ad/unified-bottle+cable/seed0", "bottle+cable")]
    with pytest.raises(ValueError, match="several categories"):
        jobs_lib.build_jobs(methods=["rd4ad"], datasets=["mvtec_ad"], category_names=["bottle"], seeds=[0],  # method subset: names
                            settings=("unified",))
    with pytest.raises(ValueError, match=r"--settings: unknown \['multi'\]"):
        jobs_lib.build_jobs(methods=["rd4ad"], datasets=["mvtec_ad"], category_names=["bottle"], seeds=[0],  # method subset: names
                            settings=("multi",))


def test_job_list_errors_are_clear():
    with pytest.raises(ValueError, match="not categories of 'mvtec_ad'"):
        jobs_lib.build_jobs(methods=["rd4ad"], datasets=["mvtec_ad"], category_names=["bottel"], seeds=[0])
    with pytest.raises(ValueError, match="unknown"):
        jobs_lib.build_jobs(methods=["rd5ad"], datasets=["mvtec_ad"], category_names=["all"], seeds=[0])
    with pytest.raises(ValueError, match="add it to --methods"):
        jobs_lib.build_jobs(methods=["rd4ad"], datasets=["mvtec_ad"], category_names=["all"], seeds=[0],
                            ablations=True)
    with pytest.raises(ValueError, match="name the categories"):
        jobs_lib.build_jobs(methods=["rd4ad"], datasets=["no_such_set"], category_names=["all"], seeds=[0])
    with pytest.raises(ValueError, match="name the categories"):  # a folder's categories are on disk
        jobs_lib.build_jobs(methods=["rd4ad"], datasets=["folder"], category_names=["all"], seeds=[0])


def test_skip_finished_record_failed_and_retry(tmp_path):
    root = str(tmp_path)
    jobs = jobs_lib.build_jobs(methods=["rd4ad"], datasets=["mvtec_ad"], category_names=["bottle", "cable", "grid"],
                               seeds=[0])
    calls, broken = [], {"rd4ad/mvtec_ad/cable/seed0"}

    def runner(job, workdir):
        calls.append(job.name)
        if job.name in broken:
            raise FloatingPointError("loss is nan")
        if job.category != "grid":  # grid stops early (e.g. max_steps_this_run) without a result
            files.write_json(os.path.join(workdir, jobs_lib.METRICS_FILE), {"metrics": {}})

    first = jobs_lib.run_jobs(jobs, root, runner)
    assert calls == [j.name for j in jobs]
    assert first["finished"] == ["rd4ad/mvtec_ad/bottle/seed0"]
    assert first["failed"] == ["rd4ad/mvtec_ad/cable/seed0"]
    assert first["unfinished"] == ["rd4ad/mvtec_ad/grid/seed0"]
    error = jobs_lib.read_error(jobs[1], root)
    assert error["type"] == "FloatingPointError" and error["message"] == "loss is nan"
    assert "raise FloatingPointError" in error["traceback"]

    calls.clear()
    second = jobs_lib.run_jobs(jobs, root, runner)
    assert calls == ["rd4ad/mvtec_ad/grid/seed0"]  # finished and failed jobs are skipped
    assert second["skipped_finished"] == ["rd4ad/mvtec_ad/bottle/seed0"]
    assert second["skipped_failed"] == ["rd4ad/mvtec_ad/cable/seed0"]

    calls.clear()
    broken.clear()
    third = jobs_lib.run_jobs(jobs, root, runner, retry_failed=True)
    assert calls == ["rd4ad/mvtec_ad/cable/seed0", "rd4ad/mvtec_ad/grid/seed0"]
    assert third["finished"] == ["rd4ad/mvtec_ad/cable/seed0"]
    assert jobs_lib.read_error(jobs[1], root) is None and jobs_lib.status(jobs[1], root) == "finished"


def test_a_workdir_holding_another_spec_is_refused(tmp_path):
    job = jobs_lib.Job(jobs_lib.TRAIN, "rd4ad", "mvtec_ad", "bottle", 0, overrides=("train.epochs=10",))
    jobs_lib.claim_workdir(job, str(tmp_path))
    jobs_lib.claim_workdir(job, str(tmp_path))  # the same spec again is fine
    other = jobs_lib.Job(jobs_lib.TRAIN, "rd4ad", "mvtec_ad", "bottle", 0, overrides=("train.epochs=20",))
    with pytest.raises(ValueError, match="job.json records a different job"):
        jobs_lib.claim_workdir(other, str(tmp_path))
    # A finished job with other settings is not skipped silently: nothing runs at all.
    files.write_json(os.path.join(job.workdir(str(tmp_path)), jobs_lib.METRICS_FILE), {"metrics": {}})
    calls = []
    with pytest.raises(ValueError, match="train.epochs=10"):
        jobs_lib.run_jobs([other], str(tmp_path), lambda job, workdir: calls.append(job))
    assert calls == []


def test_overrides_are_typed_by_the_existing_field_and_unknown_keys_fail():
    configs = os.path.join(REPO, "configs")
    job = jobs_lib.Job(jobs_lib.TRAIN, "rgpkd", "mvtec_ad", "bottle", 3, overrides=(
        "model.prompts=False", "model.top_k=3", "train.learning_rate=2e-4", "teacher.arch=resnet34"))
    config = jobs_lib.load_config(job, configs)
    assert config.model.prompts is False and config.model.top_k == 3 and config.seed == 3
    assert config.train.learning_rate == 2e-4 and config.teacher.arch == "resnet34"
    for bad, message in (("model.top_kk=3", "has no key 'top_kk'"), ("modle.top_k=3", "no key 'modle'"),
                         ("model.top_k=three", "top_k is int"), ("model.prompts=maybe", "is a bool"),
                         ("model.top_k", "key.sub=value")):
        with pytest.raises(ValueError, match=message):
            jobs_lib.load_config(jobs_lib.Job(jobs_lib.TRAIN, "rgpkd", "mvtec_ad", "bottle", overrides=(bad,)), configs)
    random_teacher = jobs_lib.Job(jobs_lib.TRAIN, "rd4ad", "mvtec_ad", "bottle", overrides=("teacher.weights=random",))
    with pytest.raises(ValueError, match="only with --tiny"):
        jobs_lib.load_config(random_teacher, configs)
    tiny = jobs_lib.Job(jobs_lib.TRAIN, "rd4ad", "synthetic", "grid", tiny=True)
    assert jobs_lib.load_config(tiny, configs).teacher.weights == "random"


def test_command_line_lists_jobs_and_aggregates(fake_board, tmp_path):
    root, _, _ = fake_board
    command = [sys.executable, "-m", "benchmarks.leaderboard", f"--workdir={root}", "--methods=rd4ad,rgpkd",
               "--categories=bottle,cable", "--seeds=0,1", "--task_index=0", "--num_tasks=3", "--settings=per_category"]
    listed = subprocess.run(command + ["--mode=list"], cwd=REPO, capture_output=True, text=True, check=True)
    lines = [line.split() for line in listed.stdout.splitlines()]
    everything = jobs_lib.build_jobs(methods=["rd4ad", "rgpkd"], datasets=["mvtec_ad"],  # method subset: --methods
                                     category_names=["bottle", "cable"], seeds=[0, 1])
    assert [name for _, name in lines] == [j.name for j in everything[0::3]]
    assert lines == [["finished", "rd4ad/mvtec_ad/bottle/seed0"], ["finished", "rd4ad/mvtec_ad/cable/seed1"],
                     ["failed", "rgpkd/mvtec_ad/cable/seed0"]]
    out = tmp_path / "tables"
    subprocess.run(command[:4] + ["--mode=aggregate", f"--output_dir={out}", "--noplots"], cwd=REPO,
                   capture_output=True, text=True, check=True)
    assert sorted(os.listdir(out)) == ["complexity.csv", "leaderboard.csv", "leaderboard.json", "leaderboard.md",
                                       "report"]
    assert (out / "report" / "index.html").is_file()
    bad = subprocess.run(command[:4] + ["--mode=list", "--seeds=zero"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("error: --seeds=zero")
    assert "Traceback" not in bad.stderr


TINY_CATEGORIES = ("grid", "disc")


@pytest.fixture(scope="module")
def tiny_run(module_tmp_path, synthetic_data_dir):
    """The real pipeline: a tiny training (random teacher) and a complexity job per method, shared by
    two tasks running at once as two hosts would (the dataset prepared before them: they only read
    it), in both settings (a model per category, and one unified model for both categories), then
    the tables and the report. Returns the workdir and the command (without the task flags)."""
    tmp_path = module_tmp_path
    root = tmp_path / "tiny"
    for category in TINY_CATEGORIES:
        pipeline.prepared_builder(tiny_config("rd4ad", data_dir=synthetic_data_dir, category=category))
    command = [sys.executable, "-m", "benchmarks.leaderboard", f"--workdir={root}", "--tiny",
               f"--categories={','.join(TINY_CATEGORIES)}", "--overrides=train.epochs=1",
               f"--data_dir={synthetic_data_dir}", "--num_tasks=2"]
    logs = [tmp_path / f"task{i}.log" for i in (0, 1)]  # files, not pipes: neither task waits on a reader
    tasks = []
    for i, log in enumerate(logs):
        with open(log, "w") as out:  # the child keeps its own descriptor
            tasks.append(subprocess.Popen(command + [f"--task_index={i}"], cwd=REPO, stdout=out,
                                          stderr=subprocess.STDOUT))
    for task, log in zip(tasks, logs):
        assert task.wait(timeout=900) == 0, log.read_text()[-6000:]
    done = subprocess.run(command + ["--mode=aggregate"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"wrote the report" in done.stdout and str(root / "report" / "index.html") in done.stdout
    return root


def test_tiny_end_to_end(tiny_run):
    root = tiny_run
    board = json.load(open(root / "leaderboard.json"))
    assert not board["failed"] and not board["pending"]
    assert sorted((r["method"], r["setting"], r["category"]) for r in board["rows"]) == sorted(
        (m, setting, c) for m in list_methods() for setting in ("per_category", "unified") for c in TINY_CATEGORIES)
    for row in board["rows"]:
        metrics_file = json.load(open(row["files"][0]))
        assert (metrics_file["setting"], metrics_file["category"]) == (row["setting"], row["category"])
        assert row["random_teacher"] and metrics_file["teacher"]["weights"] == "random"
        # every metric the job computed is tabulated; one it could not compute says why in its file
        # (AUPIMO needs normal images it can bound the FPR on: the tiny test split may have too few)
        assert set(row["metrics"]) == set(METRICS) & set(metrics_file["metrics"])
        assert set(METRICS) - set(row["metrics"]) <= set(metrics_file.get("metrics_unavailable", {}))
        for metric in row["metrics"]:
            assert row["metrics"][metric]["per_seed"] == {"0": metrics_file["metrics"][metric]}
        assert row["protocols"] == [stats.protocol_text(metrics_file["protocol"])]
    unified_means = [s for s in board["summaries"] if s["setting"] == "unified" and s["scope"] == "mean"]
    for summary_ in unified_means:  # the unified job's own mean over its categories is the table's
        job = jobs_lib.Job(jobs_lib.TRAIN, summary_["method"], "synthetic", "+".join(TINY_CATEGORIES), setting="unified")
        job_file = json.load(open(os.path.join(job.workdir(str(root)), "eval_metrics.json")))
        assert summary_["metrics"]["image_auroc"]["mean"] == pytest.approx(job_file["metrics"]["image_auroc"], rel=1e-12)
    assert sorted(s["method"] for s in unified_means) == sorted(list_methods())
    markdown = open(root / "leaderboard.md").read()
    assert tables.RANDOM_TEACHER_MARK in markdown
    assert "### synthetic, unified" in markdown and "the two settings side by side" in markdown
    for name in ("leaderboard_synthetic.png", "leaderboard_synthetic_unified.png"):
        assert (root / name).stat().st_size > 1000
    complexity = {c["method"]: c for c in board["complexity"]}
    assert sorted(complexity) == sorted(list_methods())
    for record in complexity.values():
        assert record["params_trainable"] > 0 and record["params_frozen"] > 0
        # XLA drops what the map does not use (RGPKD's reconstruction head), so inference may be < forward.
        assert record["gflops_per_image_inference"] > 0 and record["gflops_per_image_forward"] > 0
        assert record["images_per_s_batch16"] > 0 and record["train_images_per_s"] > 0
        assert record["device"] and record["jax_version"] and record["peak_memory_kind"]
    rerun = subprocess.run([sys.executable, "-m", "benchmarks.leaderboard", f"--workdir={root}", "--tiny",
                            f"--categories={','.join(TINY_CATEGORIES)}", "--overrides=train.epochs=1"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    # per method: one job per category, a unified one, a complexity one
    assert rerun.returncode == 0 and f"{4 * len(list_methods())} skipped_finished" in rerun.stdout



class _Page(html.parser.HTMLParser):
    """A report page's tables (by id: rows of cells, each its data-sort value or text), links and images."""

    def __init__(self, path):
        super().__init__()
        self.tables, self.links, self.images, self._table, self._cell = {}, [], [], None, None
        self.text = open(path, encoding="utf-8").read()
        self.feed(self.text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"table{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None and self._table:
            self._cell = [attrs.get("data-sort"), ""]
            self._table[-1].append(self._cell)
        elif tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])
        elif tag in ("img", "link", "script") and (attrs.get("src") or attrs.get("href")):
            self.images.append(attrs.get("src") or attrs.get("href"))

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


def _report_pages(root) -> list:
    return sorted((root / "report").glob("*.html"))


def test_the_tiny_report_shows_the_leaderboard_s_numbers_and_links_only_to_its_own_files(tiny_run):
    root = tiny_run
    board = json.load(open(root / "leaderboard.json"))
    pages = _report_pages(root)
    # the index and a page per (setting, category)
    assert sorted(p.name for p in pages) == sorted(["index.html"] + [
        f"synthetic--{s}--{c}.html" for s in ("per_category", "unified") for c in TINY_CATEGORIES])
    index = _Page(root / "report" / "index.html")
    for setting in ("per_category", "unified"):
        table = index.tables[f"summary--synthetic--{setting}"]
        header = [text.strip() for _, text in table[0]]
        shown = {row[0][1].replace("RT", "").strip(): row for row in table[1:]}
        means = [s for s in board["summaries"] if (s["setting"], s["scope"]) == (setting, "mean")]
        assert sorted(shown) == sorted(s["method_label"] for s in means)
        for summary_ in means:
            for metric, cell in summary_["metrics"].items():
                column = header.index(stats.METRIC_LABELS[metric])
                assert float(shown[summary_["method_label"]][column][0]) == cell["mean"], (setting, metric)
    for page in pages:
        parsed = _Page(page)
        assert "Random teacher" in parsed.text.split("<main>")[0], page.name  # the banner, above everything
        for target in parsed.links + parsed.images:
            assert not target.startswith(("http:", "https:", "//")), (page.name, target)
            local = target.split("#")[0]
            assert not local or (root / "report" / local).is_file(), (page.name, target)
    for page in pages[1:]:  # category pages: the curves of every method, each method's gallery
        parsed = _Page(page)
        assert parsed.text.count('<svg class="chart"') == 4
        assert sum(src.startswith("img/") for src in parsed.images) >= len(list_methods()) * 2
    for record in board["complexity"]:  # efficiency names the device each number was measured on
        named = report_pages.device_text(record["environment"])
        assert record["environment"]["device"] and html.escape(named) in index.text
        assert record["model"] in index.text
    config_links = [link for link in index.links if link.startswith("configs/")]
    # every training job's config: one per category and the unified one, per method
    assert len(config_links) == (len(TINY_CATEGORIES) + 1) * len(list_methods())
    assert json.load(open(root / "report" / config_links[0]))["method"] in list_methods()
    size = sum(p.stat().st_size for p in (root / "report").rglob("*") if p.is_file())
    assert size < 3 * 2**20, size  # thumbnails, not images: about 0.75 MB for 12 training jobs


ARTEFACTS = os.environ.get("RGPKD_JAX_ARTEFACTS", os.path.join(REPO, "workdirs", "artefacts"))


@pytest.mark.parametrize("screen, width, height, mobile", [("desktop", 1280, 900, False), ("phone", 390, 844, True)])
def test_the_tiny_report_opens_cleanly_in_a_real_browser(tiny_run, chromium, screen, width, height, mobile):
    """Every page from file://: no console error, no network request, every image loaded, no table
    overflowing a container that does not scroll, no sideways page; screenshots kept as artefacts."""
    os.makedirs(ARTEFACTS, exist_ok=True)
    problems = {}
    with browser.Browser(chromium) as opened:
        for page in _report_pages(tiny_run):
            shot = None
            if page.name == "index.html" or page.name == "synthetic--per_category--grid.html":
                shot = os.path.join(ARTEFACTS, f"report_{screen}_{page.stem.replace('--', '_')}.png")
            report = opened.check_page(str(page), width=width, height=height, screenshot=shot, mobile=mobile)
            if report.problems():
                problems[page.name] = report.problems()
            assert any(url.endswith(page.name) for url in report.file_requests)
    assert not problems, problems
    assert os.path.getsize(os.path.join(ARTEFACTS, f"report_{screen}_index.png")) > 10_000


def test_the_report_of_fake_jobs_marks_best_published_random_teacher_and_failures(fake_board, tmp_path):
    root, board, _ = fake_board
    written = report_build.write_report(root, str(tmp_path / "report"), pending=["x/y/z/seed0"])
    index = _Page(written["index"])
    table = index.tables["summary--mvtec_ad--per_category"]
    header = [text.strip() for _, text in table[0]]
    rows = {row[0][1].strip(): row for row in table[1:]}
    means = {s["method_label"]: s for s in board["summaries"]
             if (s["dataset"], s["setting"], s["scope"]) == ("mvtec_ad", "per_category", "mean")}
    assert sorted(rows) == sorted(means)
    for metric, label in stats.METRICS:
        column = header.index(label)
        best = max(s["metrics"][metric]["mean"] for s in means.values() if metric in s["metrics"])
        for method, summary_ in means.items():
            cell = summary_["metrics"][metric]
            assert float(rows[method][column][0]) == cell["mean"]
            if cell["diff_points"] is not None:  # the published number and Δ beside ours
                assert f"pub {cell['published_percent']:g} Δ {cell['diff_points']:+.1f}" in rows[method][column][1]
        marked = re.findall(rf'<td data-sort="([^"]+)" class=best>', index.text.split('id="summary--mvtec_ad--per_category"')[1].split("</table>")[0])
        assert repr(best) in marked
    assert {"summary--mvtec_ad--per_category--mean-textures", "summary--mvtec_ad--per_category--mean-objects"} <= set(index.tables)
    assert "RuntimeError: out of memory" in index.text and "second line" not in index.text
    assert "Pending: x/y/z/seed0" in index.text
    assert "(mixed: the rows were evaluated differently)" in index.text  # the ablation's other mask threshold
    report = tmp_path / "report"
    bottle, synthetic = report / "mvtec_ad--per_category--bottle.html", report / "synthetic--per_category--grid.html"
    assert "Random teacher" not in _Page(bottle).text and "Random teacher" in _Page(synthetic).text
    assert "No curves recorded" in _Page(bottle).text and "No gallery recorded" in _Page(bottle).text


def test_training_time_and_speed_come_from_the_logged_windows():
    records = [{"step": 10, "step_time_s": 2.0}, {"step": 30, "step_time_s": 0.5}, {"step": 40, "step_time_s": 0.25}]
    summary_ = report_content.training_summary(records, batch_size=8)
    assert summary_["seconds"] == 10 * 2.0 + 20 * 0.5 + 10 * 0.25
    assert summary_["images_per_s"] == pytest.approx(30 * 8 / (20 * 0.5 + 10 * 0.25))  # the compile window left out
    assert report_content.training_summary(records[:1], batch_size=8)["images_per_s"] is None
    assert report_content.training_summary([], batch_size=8) is None
