"""Scores new images with a trained model: per-image scores (JSON + CSV), heat maps, decisions.

    python -m rgpkd_jax.main --config configs/rd4ad.py:mvtec_ad/bottle --workdir W \
        --mode predict --input path/to/image_or_folder

The good/defective decision uses the threshold that training wrote to `W/threshold.json` (a
quantile of the training images' scores: normal images only), which must have been computed from
the checkpoint predict loads (`--mode threshold` recomputes it). A unified model (trained on several
categories) has a threshold per category and a global one: predict uses the global one unless
`--threshold_category` names a category, and says which it used. Each run writes into a new folder
`W/predictions/<UTC time>/`, so a rerun never overwrites an earlier one's results. An unreadable
file is reported by name and skipped; the others' results are still written. A write that fails
midway (a full disk) removes what the run had written and is one error. Reading the images
and writing the results is `rgpkd_jax.deploy.scoring`, which the deployed (ONNX) predictor shares.
"""

from __future__ import annotations

import contextlib
import os

from rgpkd_jax import evaluate, files, model_setup, sharding
from rgpkd_jax.deploy import images, scoring


PREDICTIONS_DIR = "predictions"
OUTPUT_FILES = [scoring.PREDICTIONS_JSON, scoring.PREDICTIONS_CSV]
HEATMAP_PATTERN = "*" + scoring.HEATMAP_SUFFIX  # one per scored image, beside them


def predict_path(config, workdir: str, input_path: str, *, output_dir: str | None = None,
                 threshold_category: str | None = None) -> dict:
    """Scores ``input_path``; results go to ``output_dir``, by default a new folder
    ``<workdir>/predictions/<UTC time>`` per run, checked writable before the model is loaded.
    ``threshold_category``: a unified model's category whose threshold decides (None: the global one)."""
    threshold = evaluate.read_threshold(workdir)
    value, source = evaluate.choose_threshold(threshold, threshold_category)
    primary = sharding.is_primary()
    if primary:
        files.ensure_writable_dir(output_dir or os.path.join(workdir, PREDICTIONS_DIR))
    images.list_images(input_path)  # a missing or image-less --input, before the model loads
    model, _, step = model_setup.load_trained_model(config, workdir)
    evaluate.check_threshold(threshold, model, step, workdir)
    if primary and not output_dir:
        output_dir = files.new_run_dir(os.path.join(workdir, PREDICTIONS_DIR))
    # Every process scores the images (the maps are gathered to all of them); process 0 writes,
    # all of its outputs or none.
    with files.nothing_kept_on_write_failure(output_dir, "the predictions") if primary else contextlib.nullcontext():
        return scoring.predict_files(input_path, config.dataset.image_size, evaluate.MapRunner(model, config),
                                     value, output_dir or "", write=primary, threshold_source=source)


def format_summary(result: dict) -> str:
    """What the command line prints: the threshold used and why, then the scoring summary."""
    return f"decided with {result['threshold_source']}: {result['threshold']:.6g}\n" + scoring.format_summary(result)
