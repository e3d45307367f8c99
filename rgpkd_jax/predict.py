"""Scores new images with a trained model: per-image scores (JSON + CSV), heat maps, decisions.

    python -m rgpkd_jax.main --config configs/rd4ad.py:mvtec_ad/bottle --workdir W \
        --mode predict --input path/to/image_or_folder

The good/defective decision uses the threshold that training wrote to `W/threshold.json` (a
quantile of the training images' scores: normal images only). An unreadable file is reported by
name and skipped; the others' results are still written. Reading the images and writing the
results is `rgpkd_jax.deploy.scoring`, which the deployed (ONNX) predictor shares.
"""

from __future__ import annotations

import os

from rgpkd_jax import checkpointing, evaluate, sharding
from rgpkd_jax.deploy import scoring
from rgpkd_jax.deploy.scoring import format_summary  # noqa: F401 - what main.py prints


def predict_path(config, workdir: str, input_path: str, *, output_dir: str | None = None) -> dict:
    threshold = evaluate.read_threshold(workdir)["threshold"]
    model, _, _ = checkpointing.load_trained_model(config, workdir)
    # Every process scores the images (the maps are gathered to all of them); process 0 writes.
    return scoring.predict_files(input_path, config.dataset.image_size, evaluate.MapRunner(model, config),
                                 threshold, output_dir or os.path.join(workdir, "predictions"),
                                 write=sharding.is_primary())
