"""benchmarks.sanity: its variant list, real runs' records and tables in both settings, resuming,
mean and std, the union of training splits and the same-category retrieval fraction.

No accuracy is asserted: one epoch at 64 px with a random teacher is a structure check only.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import jax.numpy as jnp

from benchmarks import ablations
from benchmarks.sanity import benchmark, data, retrieval, tables, variants
from rgpkd_jax import files
from rgpkd_jax.data.unified import UnionSource
from rgpkd_jax.models import list_methods
from rgpkd_jax.models.prompt import PromptMemory
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


def test_runs_in_both_settings_write_their_records_and_the_tables_and_a_rerun_resumes(tmp_path, synthetic_data_dir):
    output = str(tmp_path / "sanity")
    chosen = variants.select(["rgpkd", "mean_teacher_feature"])
    logged = []
    # Batch 4: XLA compiles the chunked kernel gradients of a batch of 16 several times slower.
    settings = benchmark.Settings(epochs=1, image_size=64, batch_size=4)
    kwargs = dict(config_dir=CONFIGS, data_dir=synthetic_data_dir, log=logged.append)
    # Per category on grid alone, unified on grid + weave: every path at the cost of two trainings.
    benchmark.run_benchmark(output, chosen, ["grid"], [0], settings, setting_names=["per_category"], **kwargs)
    board = benchmark.run_benchmark(output, chosen, ["grid", "weave"], [0], settings, setting_names=["unified"],
                                    **kwargs)

    runs = {(r["variant"], r["setting"]): r for r in files.read_json_lines(os.path.join(output, benchmark.RUNS_FILE))}
    assert set(runs) == {(v, s) for v in ("rgpkd", "mean_teacher_feature") for s in benchmark.SETTINGS}
    assert len(logged) == 4
    baseline = runs["mean_teacher_feature", "per_category"]
    assert baseline["curve"] == [] and 0.0 <= baseline["metrics"]["pixel_auroc_level3"] <= 1.0
    run = runs["rgpkd", "per_category"]
    assert (run["variant"], run["category"], run["seed"]) == ("rgpkd", "grid", 0)
    assert list(run["category_metrics"]) == ["grid"] and run["metrics"] == run["category_metrics"]["grid"]
    assert "retrieval" not in run  # one category: nothing to tell apart
    assert len(run["curve"]) == 1 and {"loss", "distill", "rec_mse", "rec_ssim"} <= set(run["final_terms"])
    metrics = run["metrics"]
    for key in ("image_auroc", "pixel_auroc", "aupro", "pixel_auroc_reconstruction_only",
                "pixel_auroc_with_reconstruction", "aupro_with_reconstruction"):
        assert 0.0 <= metrics[key] <= 1.0
    for level in (1, 2, 3):
        assert 0.0 <= metrics[f"pixel_auroc_level{level}"] <= 1.0
        assert metrics[f"distance_defect_level{level}"] >= 0 and metrics[f"distance_normal_level{level}"] >= 0

    # The unified model: one training on 120 images (30 steps of 4), scored on each category alone.
    joint = runs["rgpkd", "unified"]
    assert joint["category"] == "grid+weave" and len(joint["curve"]) == 1
    assert set(joint["category_metrics"]) == {"grid", "weave"}
    assert joint["category_metrics"]["grid"] != joint["category_metrics"]["weave"]
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        per = [joint["category_metrics"][c][key] for c in ("grid", "weave")]
        assert all(0.0 <= p <= 1.0 for p in per) and joint["metrics"][key] == pytest.approx(np.mean(per), rel=1e-12)
    fractions = joint["retrieval"]
    for category in ("grid", "weave"):
        # 60 training images each: the bank is half of each category; 41 test images each.
        assert fractions["per_category"][category]["chance"] == 0.5
        assert fractions["per_category"][category]["images"] == 41
        assert 0.0 <= fractions["per_category"][category]["fraction"] <= 1.0
    assert fractions["overall"]["images"] == 82 and fractions["overall"]["fraction"] == pytest.approx(
        np.mean([fractions["per_category"][c]["fraction"] for c in ("grid", "weave")]), rel=1e-12)
    assert "retrieval" not in runs["mean_teacher_feature", "unified"]
    assert set(runs["mean_teacher_feature", "unified"]["category_metrics"]) == {"grid", "weave"}

    rows = {(r["variant"], r["setting"]): r for r in board["rows"]}
    assert set(rows) == {("rgpkd", "unified"), ("mean_teacher_feature", "unified")}
    row = rows["rgpkd", "unified"]
    assert row["runs"] == 1 and row["metrics"]["image_auroc"]["n"] == 2 and set(row["per_category"]) == {"grid", "weave"}
    assert row["retrieval"]["weave"]["fraction"]["mean"] == fractions["per_category"]["weave"]["fraction"]
    assert "final_distillation" not in rows["mean_teacher_feature", "unified"]["metrics"]  # it trained nothing

    # Both settings in one table: the per-category rows read only the grid run they have.
    board = benchmark.write_tables(output, chosen, ["grid", "weave"], [0], settings, config_dir=CONFIGS)
    assert [(r["variant"], r["setting"]) for r in board["rows"]] == [
        ("rgpkd", "per_category"), ("rgpkd", "unified"), ("mean_teacher_feature", "per_category"),
        ("mean_teacher_feature", "unified")]  # asked order
    row = board["rows"][0]
    assert row["runs"] == 1 and row["metrics"]["pixel_auroc"] == {"mean": metrics["pixel_auroc"], "std": None, "n": 1}
    with open(os.path.join(output, "sanity.json")) as f:
        assert len(json.load(f)["rows"]) == 4
    with open(os.path.join(output, "sanity.md")) as f:
        table = f.read()
    assert "random teacher" in table and "| rgpkd | per_category | 1 | 1 |" in table
    assert "| rgpkd | unified | 1 | 2 |" in table and "per_category: image AUROC" in table
    assert "Same-category retrieval" in table and "(chance 0.500)" in table

    # A rerun with the same settings trains nothing; other settings are other runs.
    benchmark.run_benchmark(output, chosen, ["grid"], [0], settings, setting_names=["per_category"], **kwargs)
    benchmark.run_benchmark(output, chosen, ["grid", "weave"], [0], settings, setting_names=["unified"], **kwargs)
    assert len(logged) == 4 and len(files.read_json_lines(os.path.join(output, benchmark.RUNS_FILE))) == 4
    other = benchmark.Settings(epochs=2, image_size=64, batch_size=4)
    assert benchmark.write_tables(output, chosen, ["grid", "weave"], [0], other, config_dir=CONFIGS)["rows"] == []
    with pytest.raises(ValueError, match="--settings=unified .* at least two --categories"):
        benchmark.run_benchmark(output, chosen, ["grid"], [0], settings, setting_names=["unified"], **kwargs)


def test_the_union_gives_each_image_its_union_index_and_category():
    splits = {"grid": {"image": np.zeros((3, 2, 2, 3)), "index": np.array([2, 0, 1])},
              "disc": {"image": np.ones((2, 2, 2, 3)), "index": np.array([1, 0])}}
    arrays, union = data.union_split(splits)
    np.testing.assert_array_equal(arrays["index"], [2, 0, 1, 4, 3])
    np.testing.assert_array_equal(arrays["image"][:, 0, 0, 0], [0, 0, 0, 1, 1])
    assert list(union.category_of(arrays["index"])) == ["grid"] * 3 + ["disc"] * 2
    with pytest.raises(ValueError, match="synthetic/disc: training indices"):
        data.union_split({**splits, "disc": {"image": np.ones((2, 2, 2, 3)), "index": np.array([1, 2])}})


def _one_hot_bank(entry_indices) -> PromptMemory:
    """A bank whose entry at position p has the one-hot F3 e_p, so a query e_p retrieves position p."""
    count = len(entry_indices)
    bank = PromptMemory((2, 2, count))
    level = lambda c: jnp.zeros((count, 1, 1, c))  # noqa: E731
    bank.set([level(2), level(2), jnp.eye(count).reshape(count, 1, 1, count)], np.asarray(entry_indices))
    return bank


def test_same_category_fraction_maps_bank_entries_through_the_union_offsets():
    # Union of grid (2 images: union indices 0, 1) and disc (3 images: 2, 3, 4). The bank keeps
    # indices 1, 2, 3, 4 (as a capped bank would): position 1 holds union index 2, a disc image, which
    # a mapping by bank position (or by a wrong offset) would call grid.
    union = UnionSource([range(2), range(3)], ["grid", "disc"])
    bank = _one_hot_bank([1, 2, 3, 4])
    query = lambda positions: jnp.eye(4)[np.asarray(positions)].reshape(-1, 1, 1, 4) + 0.01  # noqa: E731
    result = retrieval.same_category_fraction(bank, {"grid": query([0, 1, 1, 2]), "disc": query([1, 2, 3])}, union)
    assert result["per_category"]["grid"] == {"fraction": 0.25, "chance": 0.25, "images": 4}
    assert result["per_category"]["disc"] == {"fraction": 1.0, "chance": 0.75, "images": 3}
    assert result["overall"] == {"fraction": pytest.approx(4 / 7), "chance": pytest.approx((4 * 0.25 + 3 * 0.75) / 7),
                                 "images": 7}


def test_summary_is_mean_and_sample_std_over_categories_and_seeds():
    rng = np.random.default_rng(0)
    variant = variants.VARIANTS[0]
    runs = [{"variant": variant.name, "category": c, "seed": s,
             "metrics": {m: float(rng.uniform()) for m in ("image_auroc", "pixel_auroc", "aupro")},
             "final_terms": {"loss": 1.0, "distillation": float(rng.uniform())}, "setting": "per_category"}
            for c in ("grid", "disc") for s in (0, 1, 2)]
    for r in runs:
        r["category_metrics"] = {r["category"]: r["metrics"]}
    (row,) = tables.summarise(runs, [variant], benchmark.SETTINGS)
    values = [r["metrics"]["pixel_auroc"] for r in runs]
    assert row["metrics"]["pixel_auroc"]["mean"] == pytest.approx(np.mean(values), rel=1e-12)
    assert row["metrics"]["pixel_auroc"]["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    assert row["metrics"]["final_distillation"]["n"] == 6
    assert row["per_category"]["grid"]["aupro"] == pytest.approx(np.mean([r["metrics"]["aupro"] for r in runs[:3]]))
    assert "pixel_auroc_level1" not in row["metrics"]  # absent from the runs: no cell, no crash
    assert f"| {variant.name} | per_category | 6 | 6 |" in tables.markdown(
        [row], benchmark.Settings(epochs=1, image_size=64).record())
