"""The evaluator's outputs and predict on new images (including an unreadable file)."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil

import numpy as np
import pytest
import sklearn.metrics
from PIL import Image

from rgpkd_jax import evaluate, model_setup, predict, report_assets, train, visualize
from rgpkd_jax.data import pipeline, preprocess
from rgpkd_jax.data.errors import DatasetError
from rgpkd_jax.deploy import scoring
from rgpkd_jax.metrics import summary
from tests.data import fixtures
from tests.helpers import make_unwritable, tiny_config


@pytest.fixture(scope="module")
def saved_workdir(module_tmp_path, synthetic_data_dir):
    """A workdir holding an (untrained) tiny RD4AD checkpoint and its threshold."""
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir, num_visualise=2)
    workdir = str(module_tmp_path / "workdir")
    model, teacher_info = model_setup.setup_model(config)
    model_setup.save_imported_model(model, config, workdir, teacher_info=teacher_info)
    evaluate.compute_threshold(model, config, workdir)
    return config, workdir


def test_evaluation_writes_metrics_and_figures(saved_workdir):
    config, workdir = saved_workdir
    result = evaluate.evaluate_checkpoint(config, workdir)
    with open(os.path.join(workdir, evaluate.METRICS_FILE)) as f:
        written = json.load(f)
    assert written["metrics"] == pytest.approx(result["metrics"])
    assert written["num_test_images"] == pipeline.num_examples(config, "test")
    for key in ("image_auroc", "pixel_auroc", "aupro", "aupro_rd4ad_per_image", *summary.MAD_METRICS):
        assert 0.0 <= written["metrics"][key] <= 1.0, key
    assert written["metrics"]["mad"] == pytest.approx(np.mean([written["metrics"][k] for k in summary.MAD_METRICS]))
    assert any(k.startswith("image_auroc/") for k in written["metrics"])
    # The protocol, as data: the config's values (docs/protocol.md), and in the printed header.
    assert written["protocol"] == evaluate.protocol(config)
    assert (written["protocol"]["resolution"], written["protocol"]["mask_threshold"],
            written["protocol"]["gaussian_sigma"], written["protocol"]["aupro_fpr_limit"]) == (
        [config.dataset.image_size] * 2, config.eval.mask_threshold, config.eval.sigma, config.eval.fpr_limit)
    header = f"({written['num_test_images']} test images; 64x64, masks > 0.5, sigma 1, AU-PRO to FPR 0.3):"
    assert header in evaluate.format_summary(result)
    # A tiny test set has too few normal pixels for AUPIMO's FPR of 1e-5: said, not a number.
    assert "aupimo" not in written["metrics"] and "normal images" in written["metrics_unavailable"]["aupimo"]
    assert "RANDOM TEACHER" in written["warning"]
    for name in (visualize.SHEET_FILE, visualize.CURVES_FILE):
        with Image.open(os.path.join(workdir, name)) as image:
            assert image.size[0] > 100 and image.size[1] > 100


def test_evaluation_records_what_the_report_shows(saved_workdir):
    """report_assets/: the gallery's images with their own scores and the run's threshold, the
    curves whose areas are the metrics, thumbnails, and the test pass's speed."""
    config, workdir = saved_workdir
    result = evaluate.evaluate_checkpoint(config, workdir)
    folder = os.path.join(workdir, report_assets.ASSETS_DIR)
    with open(os.path.join(folder, report_assets.ASSETS_FILE)) as f:
        assets = json.load(f)
    predictions = evaluate.collect_test_predictions(model_setup.load_trained_model(config, workdir)[0], config)
    scores = dict(zip(predictions["file_name"], predictions["score"]))
    threshold = evaluate.read_threshold(workdir)["threshold"]
    assert assets["threshold"] == threshold
    expected = report_assets.gallery_picks(predictions["label"], predictions["score"])
    assert [item["file_name"] for item in assets["gallery"]] == [predictions["file_name"][i] for i, _ in expected]
    for item in assets["gallery"]:
        assert item["score"] == pytest.approx(float(scores[item["file_name"]]), rel=1e-6)
        assert item["decision"] == ("defective" if item["score"] > threshold else "good")
        with Image.open(os.path.join(folder, item["file"])) as thumbnail:
            assert thumbnail.format == "JPEG"
            assert thumbnail.size == (2 * config.dataset.image_size + 2, config.dataset.image_size)
    curves = assets["curves"]
    for curve, metric in (("image_roc", "image_auroc"), ("pixel_roc", "pixel_auroc")):
        x, y = curves[f"{curve}/fpr"], curves[f"{curve}/tpr"]
        assert (x[0], x[-1], y[-1]) == (0.0, 1.0, 1.0)
        # Thinned to CURVE_POINTS points of a monotone curve: between two kept points the full curve
        # stays in their bounding box, so the area moves by at most sum(dx * dy) <= min(max dx, max dy).
        bound = min(np.max(np.diff(x)), np.max(np.diff(y)))
        assert abs(np.trapezoid(y, x) - result["metrics"][metric]) <= bound + 1e-9
    assert max(curves["pro/fpr"]) == pytest.approx(config.eval.fpr_limit)
    speed = assets["inference"]
    assert speed["images"] == result["num_test_images"] - min(speed["batch_size"], result["num_test_images"])
    assert (speed["images_per_s"] is None) == (speed["images"] == 0)


def test_evaluation_rounds_image_scores_when_configured(saved_workdir, tmp_path):
    """config.eval.image_score_decimals: image AUROC of the rounded scores (SK-RD4AD --seg 0)."""
    config, workdir = saved_workdir
    assert config.eval.image_score_decimals == -1
    runner = evaluate.MapRunner(model_setup.load_trained_model(config, workdir)[0], config)
    predictions = evaluate.collect_test_predictions(runner, config)
    labels, scores = predictions["label"], predictions["score"].astype(np.float64)
    unrounded = sklearn.metrics.roc_auc_score(labels, scores)
    # the most decimals whose rounding changes the AUROC (ties between close scores)
    decimals = max(d for d in range(8) if sklearn.metrics.roc_auc_score(labels, np.round(scores, d)) != unrounded)
    rounded = config.copy_and_resolve_references()
    rounded.eval.image_score_decimals = decimals
    result = evaluate.evaluate_model(runner, rounded, str(tmp_path))
    expected = sklearn.metrics.roc_auc_score(labels, np.round(scores, decimals))
    assert result["metrics"]["image_auroc"] == pytest.approx(expected, abs=1e-12)
    assert result["image_score_decimals"] == decimals


def test_threshold_comes_from_training_images(saved_workdir):
    config, workdir = saved_workdir
    with open(os.path.join(workdir, evaluate.THRESHOLD_FILE)) as f:
        info = json.load(f)
    assert info["num_images"] == pipeline.num_examples(config, "train")
    assert info["quantile"] == config.eval.threshold_quantile


def test_predict_scores_a_folder_and_names_the_unreadable_file(saved_workdir, tmp_path):
    config, workdir = saved_workdir
    folder = tmp_path / "new_images"
    (folder / "sub").mkdir(parents=True)
    test_batch = next(iter(pipeline.test_batches(config, batch_size=3)))
    images = np.clip(np.asarray(evaluate.to_uint8(test_batch["image"])), 0, 255)
    Image.fromarray(images[0]).save(folder / "a.png")
    Image.fromarray(images[1]).save(folder / "sub" / "b.jpg")
    Image.fromarray(images[2]).save(folder / "sub" / "c.webp", lossless=True)
    Image.fromarray(images[2]).save(folder / "d.gif")  # a suffix predict does not read: named
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.txt").write_text("ignored: not an image suffix")

    result = predict.predict_path(config, workdir, str(folder), output_dir=str(tmp_path / "out"))
    scored = {os.path.basename(r["file"]) for r in result["predictions"]}
    assert scored == {"a.png", "b.jpg", "c.webp"}
    assert list(result["errors"]) == [str(folder / "broken.png")]
    assert result["skipped"] == ["d.gif", "notes.txt"]
    assert ("skipped 2 file(s) whose suffix is not an image's (.png .jpg .jpeg .bmp .tif .tiff .webp): "
            "d.gif, notes.txt") in predict.format_summary(result).splitlines()
    with open(tmp_path / "out" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [os.path.basename(r["file"]) for r in rows] == ["a.png", "b.jpg", "c.webp"]
    for row in result["predictions"]:
        assert row["defective"] == (row["score"] > result["threshold"])
        assert os.path.exists(row["heatmap"])
    # predict's score of a file equals the evaluator's score of the same preprocessed file.
    image = preprocess.preprocess_image(str(folder / "a.png"), config.dataset.image_size)
    runner_scores = evaluate.MapRunner(model_setup.load_trained_model(config, workdir)[0], config)(
        image[None])[1]
    np.testing.assert_allclose(result["predictions"][0]["score"], runner_scores[0], rtol=1e-4)


def test_predict_without_training_says_what_to_do(tmp_path, synthetic_data_dir):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    with pytest.raises(FileNotFoundError, match="threshold.json"):
        predict.predict_path(config, str(tmp_path), str(tmp_path))


def test_evaluation_lists_images_left_out_of_the_per_image_aupro(tmp_path, monkeypatch):
    """eval_metrics.json names the defective images whose mask is empty at the evaluation size."""
    rng = np.random.default_rng(3)
    masks = np.zeros((4, 16, 16), np.float32)
    masks[2, 4:9, 5:11] = 1                      # image 3 is defective but its mask vanished
    labels = np.array([0, 0, 1, 1], np.int32)
    names = np.array(["test/good/0.png", "test/good/1.png", "test/crack/0.png", "test/crack/1.png"])
    predictions = {"map": rng.random(masks.shape) + masks, "score": rng.random(4), "mask": masks,
                   "label": labels, "defect_type": np.array(["good", "good", "crack", "crack"]),
                   "file_name": names}
    monkeypatch.setattr(evaluate, "collect_test_predictions", lambda model, config: predictions)
    config = tiny_config("rd4ad", data_dir=str(tmp_path))
    result = evaluate.evaluate_model(None, config, str(tmp_path))
    with open(os.path.join(str(tmp_path), evaluate.METRICS_FILE)) as f:
        written = json.load(f)
    assert written["metrics"]["aupro_rd4ad_per_image/num_skipped"] == 1
    assert written["aupro_rd4ad_per_image_left_out"] == {
        "labelled defective but the mask is empty at the evaluation size": ["test/crack/1.png"]}
    assert "1 defective images left out" in evaluate.format_summary(result)


def test_image_label_datasets_get_no_pixel_metrics(tmp_path, monkeypatch):
    """A dataset without masks (elpv: its masks are all zero, no ground truth) reports the image
    metrics; the pixel metrics and mAD are absent and listed as unavailable, never numbers."""
    rng = np.random.default_rng(4)
    labels = np.array([0, 0, 0, 1, 1], np.int32)
    predictions = {"map": rng.random((5, 8, 8)), "score": np.array([0.1, 0.4, 0.2, 0.3, 0.9]),
                   "mask": np.zeros((5, 8, 8), bool), "label": labels,
                   "defect_type": np.array(["good"] * 3 + ["p100"] * 2),
                   "file_name": np.array([f"{i}.png" for i in range(5)]),
                   "image": rng.integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)}
    monkeypatch.setattr(evaluate, "collect_test_predictions", lambda model, config: predictions)
    monkeypatch.setattr(pipeline, "image_sizes", lambda config, split, indices: {int(i): (8, 8) for i in indices})
    config = tiny_config("rd4ad", data_dir=str(tmp_path), num_visualise=1)
    config.dataset.name, config.dataset.category = "elpv", "mono"
    result = evaluate.evaluate_model(None, config, str(tmp_path))
    assert "unwritten" not in result and os.path.exists(tmp_path / visualize.CURVES_FILE)  # image ROC only
    assert set(result["metrics"]) == {"image_auroc", "image_ap", "image_f1_max", "image_auroc/p100"}
    assert result["metrics"]["image_ap"] == pytest.approx(
        sklearn.metrics.average_precision_score(labels, predictions["score"]))
    assert set(result["metrics_unavailable"]) == set(summary.MASK_METRICS)
    assert "not available: pixel_auroc, pixel_ap, pixel_f1_max, aupro, mad" in evaluate.format_summary(result)


def test_a_folder_without_ground_truth_trains_evaluates_its_image_metrics_and_predicts(tmp_path):
    """A user's folder in MVTec layout with image labels only (no ground_truth folder, the first
    data many users have): it trains, its evaluation gives the image metrics and lists the pixel
    metrics as unavailable (never numbers), and predict scores its images."""
    root = tmp_path / "parts"
    fixtures.write_mvtec(str(root), "part", num_train=8, num_test_good=3, defects=(("crack", 2), ("dent", 1)))
    shutil.rmtree(root / "part" / "ground_truth")
    config = tiny_config("rd4ad", data_dir=str(tmp_path / "tfds"), num_visualise=1)
    config.dataset.name, config.dataset.category, config.dataset.manual_dir = "folder", "part", str(root)
    workdir = str(tmp_path / "workdir")
    train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, evaluate.METRICS_FILE)) as f:
        written = json.load(f)
    assert {"image_auroc", "image_ap", "image_f1_max"} <= set(written["metrics"])
    assert not set(summary.MASK_METRICS) & set(written["metrics"])
    assert set(written["metrics_unavailable"]) == set(summary.MASK_METRICS)
    result = predict.predict_path(config, workdir, str(root / "part" / "test"), output_dir=str(tmp_path / "out"))
    assert len(result["predictions"]) == 6 and not result["errors"]
    # with a ground_truth folder, a defective image without its mask is still refused
    (root / "part" / "ground_truth" / "crack").mkdir(parents=True)
    config.dataset.data_dir = str(tmp_path / "tfds_with_masks")
    with pytest.raises(DatasetError, match="has no ground-truth mask"):
        pipeline.prepared_builder(config)


def test_the_printed_summary_names_each_metric_present_by_its_label_in_report_order():
    """An image-label-only dataset has no pixel metrics: their lines are left out, not printed empty."""
    run = {"method": "rd4ad", "dataset": "d", "category": "c", "num_test_images": 4,
           "protocol": evaluate.protocol(tiny_config("rd4ad", data_dir="unused"))}
    everything = {"image_auroc": 0.91234, "image_ap": 0.8, "image_f1_max": 0.7, "pixel_auroc": 0.5,
                  "pixel_ap": 0.1, "pixel_f1_max": 0.2, "aupro": 0.25, "mad": 0.5, "aupimo": 0.3,
                  "aupro_rd4ad_per_image": 0.75}
    lines = evaluate.format_summary({**run, "metrics": everything}).splitlines()[1:]
    assert lines == ["  image AUROC              0.9123", "  image AP                 0.8000",
                     "  image F1-max             0.7000", "  pixel AUROC              0.5000",
                     "  pixel AP                 0.1000", "  pixel F1-max             0.2000",
                     "  AU-PRO (official)        0.2500", "  mAD (mean of the 7)      0.5000",
                     "  AUPIMO                   0.3000", "  AUPRO (RD4AD per-image)  0.7500"]
    assert evaluate.format_summary({**run, "metrics": {"image_auroc": 0.5}}).splitlines()[1:] == [
        "  image AUROC              0.5000"]


def test_each_predict_run_writes_its_own_folder(saved_workdir, tmp_path):
    config, workdir = saved_workdir
    folder = tmp_path / "first"
    folder.mkdir()
    test_batch = next(iter(pipeline.test_batches(config, batch_size=2)))
    images = np.asarray(evaluate.to_uint8(test_batch["image"]))
    Image.fromarray(images[0]).save(folder / "a.png")
    first = predict.predict_path(config, workdir, str(folder))
    (folder / "a.png").rename(folder / "b.png")  # the second run scores another file
    second = predict.predict_path(config, workdir, str(folder))

    assert first["output_dir"] != second["output_dir"]
    assert os.path.dirname(first["output_dir"]) == os.path.join(workdir, predict.PREDICTIONS_DIR)
    # The first run's results are intact and no heat map of it sits beside the second run's.
    with open(os.path.join(first["output_dir"], "predictions.json")) as f:
        assert [os.path.basename(r["file"]) for r in json.load(f)["predictions"]] == ["a.png"]
    assert sorted(os.listdir(second["output_dir"])) == ["b_heatmap.png", "predictions.csv", "predictions.json"]


def test_a_disk_full_midway_through_predict_is_one_error_and_leaves_no_outputs(saved_workdir, tmp_path, monkeypatch):
    config, workdir = saved_workdir
    folder = tmp_path / "images"
    folder.mkdir()
    test_batch = next(iter(pipeline.test_batches(config, batch_size=3)))
    for i, image in enumerate(np.asarray(evaluate.to_uint8(test_batch["image"]))):
        Image.fromarray(image).save(folder / f"{i}.png")
    save_png, saved = scoring._save_png, []

    def fills_the_disk(picture, path):
        if saved:  # the second heat map finds the disk full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        save_png(picture, path)
        saved.append(path)

    monkeypatch.setattr(scoring, "_save_png", fills_the_disk)
    predictions = os.path.join(workdir, predict.PREDICTIONS_DIR)
    runs_before = set(os.listdir(predictions)) if os.path.isdir(predictions) else set()
    with pytest.raises(OSError) as error:
        predict.predict_path(config, workdir, str(folder))
    message = str(error.value)
    assert message.startswith(f"could not write the predictions into {predictions}{os.sep}")
    assert "(No space left on device); the files written there so far were removed" in message
    assert os.path.exists(os.path.dirname(saved[0])) is False  # the run's folder went with its heat map
    assert set(os.listdir(predictions)) == runs_before


def test_predict_into_an_unwritable_folder_fails_before_loading_the_model(saved_workdir, tmp_path, monkeypatch):
    config, workdir = saved_workdir
    out = str(tmp_path / "readonly")
    make_unwritable(out, monkeypatch)
    monkeypatch.setattr(model_setup, "load_trained_model", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(OSError, match=f"cannot write to the output folder {re.escape(out)}"):
        predict.predict_path(config, workdir, str(tmp_path), output_dir=out)
