"""benchmarks.sanity: its variant list, one real run's record and tables, resuming, mean and std.

No accuracy is asserted: one epoch at 64 px with a random teacher is a structure check only.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from benchmarks import ablations
from benchmarks.sanity import benchmark, tables, variants
from rgpkd_jax import files
from rgpkd_jax.models import list_methods
from tests.helpers import REPO

CONFIGS = os.path.join(REPO, "configs")


def test_the_variants_are_every_registered_method_and_every_rgpkd_ablation_of_the_leaderboard():
    names = set(variants.VARIANT_NAMES)
    # Every registered method, as its config file has it, comes first and in the registry's order.
    methods = [v for v in variants.VARIANTS if v.config == v.name and not v.overrides and v.kind == "train"]
    assert [v.name for v in methods] == list(list_methods()) == list(variants.VARIANT_NAMES[:len(methods)])
    assert {a.label for a in ablations.SWITCHES} <= names
    assert len(names) == len(variants.VARIANTS)
    for variant in variants.VARIANTS:
        assert os.path.exists(os.path.join(CONFIGS, f"{variant.config}.py"))
        config = benchmark.make_config(variant, "grid", 0, benchmark.Settings(epochs=1, image_size=64),
                                       config_dir=CONFIGS)
        assert config.teacher.weights == "random" and config.dataset.name == "synthetic"
        assert config.method == variant.config and config.train.epochs == 1
    with pytest.raises(ValueError, match="--variants: unknown"):
        variants.select(["rd5ad"])


def test_one_run_writes_its_record_and_the_tables_and_a_rerun_resumes(tmp_path, synthetic_data_dir):
    output = str(tmp_path / "sanity")
    chosen = variants.select(["rgpkd", "mean_teacher_feature"])
    logged = []
    # Batch 4: XLA compiles the chunked kernel gradients of a batch of 16 several times slower.
    settings = benchmark.Settings(epochs=1, image_size=64, batch_size=4)
    kwargs = dict(config_dir=CONFIGS, data_dir=synthetic_data_dir, log=logged.append)
    board = benchmark.run_benchmark(output, chosen, ["grid"], [0], settings, **kwargs)

    runs = {r["variant"]: r for r in files.read_json_lines(os.path.join(output, benchmark.RUNS_FILE))}
    assert set(runs) == {"rgpkd", "mean_teacher_feature"} and len(logged) == 2
    baseline = runs["mean_teacher_feature"]
    assert baseline["curve"] == [] and 0.0 <= baseline["metrics"]["pixel_auroc_level3"] <= 1.0
    run = runs["rgpkd"]
    assert (run["variant"], run["category"], run["seed"]) == ("rgpkd", "grid", 0)
    assert len(run["curve"]) == 1 and {"loss", "distill", "rec_mse", "rec_ssim"} <= set(run["final_terms"])
    metrics = run["metrics"]
    for key in ("image_auroc", "pixel_auroc", "aupro", "pixel_auroc_reconstruction_only",
                "pixel_auroc_with_reconstruction", "aupro_with_reconstruction"):
        assert 0.0 <= metrics[key] <= 1.0
    for level in (1, 2, 3):
        assert 0.0 <= metrics[f"pixel_auroc_level{level}"] <= 1.0
        assert metrics[f"distance_defect_level{level}"] >= 0 and metrics[f"distance_normal_level{level}"] >= 0

    rows = {r["variant"]: r for r in board["rows"]}
    assert "final_distillation" not in rows["mean_teacher_feature"]["metrics"]  # it trained nothing
    row = rows["rgpkd"]
    assert row["runs"] == 1
    assert row["metrics"]["pixel_auroc"] == {"mean": metrics["pixel_auroc"], "std": None, "n": 1}
    with open(os.path.join(output, "sanity.json")) as f:
        assert [r["variant"] for r in json.load(f)["rows"]] == ["rgpkd", "mean_teacher_feature"]  # asked order
    with open(os.path.join(output, "sanity.md")) as f:
        table = f.read()
    assert "random teacher" in table and "| rgpkd | 1 |" in table

    # A rerun with the same settings trains nothing; other settings are other runs.
    benchmark.run_benchmark(output, chosen, ["grid"], [0], settings, **kwargs)
    assert len(logged) == 2 and len(files.read_json_lines(os.path.join(output, benchmark.RUNS_FILE))) == 2
    other = benchmark.Settings(epochs=2, image_size=64, batch_size=4)
    assert benchmark.write_tables(output, chosen, ["grid"], [0], other, config_dir=CONFIGS)["rows"] == []


def test_summary_is_mean_and_sample_std_over_categories_and_seeds():
    rng = np.random.default_rng(0)
    variant = variants.VARIANTS[0]
    runs = [{"variant": variant.name, "category": c, "seed": s,
             "metrics": {m: float(rng.uniform()) for m in ("image_auroc", "pixel_auroc", "aupro")},
             "final_terms": {"loss": 1.0, "distillation": float(rng.uniform())}}
            for c in ("grid", "disc") for s in (0, 1, 2)]
    (row,) = tables.summarise(runs, [variant])
    values = [r["metrics"]["pixel_auroc"] for r in runs]
    assert row["metrics"]["pixel_auroc"]["mean"] == pytest.approx(np.mean(values), rel=1e-12)
    assert row["metrics"]["pixel_auroc"]["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    assert row["metrics"]["final_distillation"]["n"] == 6
    assert row["per_category"]["grid"]["aupro"] == pytest.approx(np.mean([r["metrics"]["aupro"] for r in runs[:3]]))
    assert "pixel_auroc_level1" not in row["metrics"]  # absent from the runs: no cell, no crash
    assert f"| {variant.name} | 6 |" in tables.markdown([row], benchmark.Settings(epochs=1, image_size=64).record())
