"""A unified model (one model, several categories): evaluated per category, thresholds per category,
predict says which threshold decided."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from rgpkd_jax import evaluate, model_setup, predict, visualize
from rgpkd_jax.data import pipeline, synthetic, unified
from rgpkd_jax.metrics import summary
from tests.helpers import METHODS, tiny_config

CATEGORIES = ("grid", "disc")


@pytest.fixture(scope="module", params=METHODS)
def saved_unified(request, module_tmp_path, synthetic_data_dir):
    """A workdir holding an (untrained) tiny unified checkpoint of each method, its thresholds and
    evaluation, and the map runner (compiled once) that computed them."""
    config = tiny_config(request.param, data_dir=synthetic_data_dir, category="+".join(CATEGORIES), num_visualise=2)
    workdir = str(module_tmp_path / request.param)
    model, teacher_info = model_setup.setup_model(config)
    model_setup.save_imported_model(model, config, workdir, teacher_info=teacher_info)
    runner = evaluate.MapRunner(model, config)
    evaluate.compute_threshold(runner, config, workdir)
    return config, workdir, evaluate.evaluate_model(runner, config, workdir, teacher_info=teacher_info), runner


def _read(path) -> dict:
    with open(path) as f:
        return json.load(f)


def test_each_category_s_metrics_are_those_of_its_own_maps_and_the_means_are_theirs(saved_unified):
    """The same program on the same images: the per-category files equal metrics computed here from
    each category's maps alone (float64 metrics of the same float32 maps: equal to rounding, 1e-12)."""
    config, workdir, result, runner = saved_unified
    written = _read(os.path.join(workdir, evaluate.METRICS_FILE))
    assert written["setting"] == "unified" and written["categories"] == list(CATEGORIES)
    for category in CATEGORIES:
        alone = unified.for_category(config, category)
        predictions = evaluate.collect_test_predictions(runner, alone)
        expected = summary.compute_metrics(
            predictions["map"], predictions["mask"], predictions["label"], scores=predictions["score"],
            defect_types=predictions["defect_type"], fpr_limit=config.eval.fpr_limit,
            per_image_aupro=config.eval.rd4ad_per_image_aupro, file_names=predictions["file_name"])
        own = _read(os.path.join(workdir, unified.CATEGORIES_DIR, category, evaluate.METRICS_FILE))
        assert (own["setting"], own["category"], own["trained_on"]) == ("unified", category, list(CATEGORIES))
        assert own["num_test_images"] == pipeline.num_examples(alone, "test")
        for key, value in own["metrics"].items():
            assert value == pytest.approx(expected[key], rel=1e-12, abs=1e-12), (category, key)
        assert written["per_category"][category] == own["metrics"]
        with Image.open(os.path.join(workdir, unified.CATEGORIES_DIR, category, visualize.SHEET_FILE)) as sheet:
            assert sheet.size[0] > 100
    for key in ("image_auroc", "pixel_auroc", "aupro", "mad"):
        assert written["metrics"][key] == pytest.approx(
            np.mean([written["per_category"][c][key] for c in CATEGORIES]), rel=1e-12), key
    assert "aupimo" in written["metrics_unavailable"]  # too few normal pixels in a tiny test split: said
    printed = evaluate.format_summary(result)
    assert all(any(line.strip().startswith(c) for line in printed.splitlines()) for c in CATEGORIES)
    assert "mean over the 2 categories" in printed


def test_thresholds_per_category_come_from_that_category_s_training_images(saved_unified):
    config, workdir, _, runner = saved_unified
    threshold = evaluate.read_threshold(workdir)
    q = config.eval.threshold_quantile
    every = []
    for category in CATEGORIES:
        batches = pipeline.test_batches(unified.for_category(config, category), batch_size=8, split="train")
        scores = np.concatenate([runner(b["image"])[1] for b in batches])
        every.append(scores)
        assert threshold["per_category"][category] == {"threshold": pytest.approx(float(np.quantile(scores, q))),
                                                       "num_images": len(scores)}
    assert threshold["threshold"] == pytest.approx(float(np.quantile(np.concatenate(every), q)))
    assert threshold["num_images"] == sum(map(len, every))


def test_predict_of_a_unified_model_says_which_threshold_decided(saved_unified, tmp_path):
    config, workdir, _, _ = saved_unified
    image, _ = synthetic.make_example("disc", "scratch", seed=1, size=64)
    Image.fromarray(image).save(tmp_path / "part.png")
    threshold = evaluate.read_threshold(workdir)
    global_run = predict.predict_path(config, workdir, str(tmp_path / "part.png"), output_dir=str(tmp_path / "a"))
    assert global_run["threshold"] == threshold["threshold"]
    assert "global threshold over the 2 categories" in predict.format_summary(global_run)
    disc_run = predict.predict_path(config, workdir, str(tmp_path / "part.png"), output_dir=str(tmp_path / "b"),
                                    threshold_category="disc")
    assert disc_run["threshold"] == threshold["per_category"]["disc"]["threshold"]
    assert _read(tmp_path / "b" / "predictions.json")["threshold_source"] == "threshold of category disc"
    with pytest.raises(ValueError, match=r"thresholds for \['disc', 'grid'\]"):
        predict.predict_path(config, workdir, str(tmp_path / "part.png"), output_dir=str(tmp_path / "c"),
                             threshold_category="weave")
