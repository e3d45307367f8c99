"""One sanity run: train a variant's model on the in-memory synthetic split (one category's, or in
the unified setting the union of several: `data.union_split`) with the trainer's own step
(`train.make_train_step`), schedule, optimiser and loop (`train_loop.run`), fill RGPKD's bank as the
trainer does (`Method.prepare`), and score each category's test split alone with the evaluator's
map (`evaluate.make_map_fn`); or, for the baseline, score the map of a student that outputs the mean
teacher feature. A unified RGPKD run also measures how often retrieval picks a prompt of the
image's own category (`retrieval.same_category_fraction`). Each run records what locates a failure: per-level pixel AUROC, the mean 1 - cos
on defect and on normal pixels per level, the loss terms per epoch, and with a reconstruction its
error's own pixel AUROC and the metrics of map plus error.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.sanity import data, retrieval
from rgpkd_jax import anomaly_maps, evaluate, optim, teacher as teacher_lib, train, train_loop, train_state
from rgpkd_jax.deploy.images import denormalize
from rgpkd_jax.metrics import summary
from rgpkd_jax.metrics.auroc import roc_auc
from rgpkd_jax.data.unified import UnionSource
from rgpkd_jax.models import build_model

SCORES = ("image_auroc", "pixel_auroc", "aupro")


def _level_maps_fn(graphdef):
    """A jitted (state, images) -> per-level 1 - cos maps at image size (L, B, H, W), unsmoothed,
    and the reconstruction's squared error (B, H, W) or None."""

    @jax.jit
    def level_maps(state, images):
        features = nnx.merge(graphdef, state)(images, train=False)
        levels = jnp.stack([anomaly_maps.upsample_align_corners(anomaly_maps.cosine_distance_map(t, s),
                                                                images.shape[1:3])
                            for t, s in zip(features.teacher, features.student)])
        if features.reconstruction is None:
            return levels, None
        return levels, anomaly_maps.reconstruction_error_map(features.reconstruction, denormalize(images))

    return level_maps


def _teacher_fn(model):
    """A jitted (teacher state, images) -> teacher features [F1, F2, F3], and the teacher's state."""
    graphdef, state = nnx.split(model.teacher)
    return jax.jit(lambda state, x: nnx.merge(graphdef, state)(x)), state


def _compiled_key(config, num_train: int) -> str:
    """Runs whose configs differ only in seed and category share jitted functions (same model
    structure and hyperparameters) when they train on as many images (the same schedule; RGPKD's
    bank holds every training image)."""
    settings = config.to_dict()
    settings.pop("seed")
    settings["dataset"].pop("category")
    return json.dumps([settings, num_train], sort_keys=True, default=str)


class _EpochCurve:
    """A `train_loop` hook: the mean of every loss term over each epoch."""

    def __init__(self, steps_per_epoch: int):
        self.steps_per_epoch, self.terms, self.curve = steps_per_epoch, [], []

    def before_step(self, step: int) -> None:
        pass

    def after_step(self, step: int, state, metrics: dict) -> None:
        self.terms.append(metrics)
        if step % self.steps_per_epoch == 0:
            self.curve.append({k: float(np.mean([float(t[k]) for t in self.terms])) for k in self.terms[0]})
            self.terms = []


def run_one(config, train_data: dict, test_splits: dict[str, dict], compiled: dict | None = None,
            union: UnionSource | None = None) -> dict:
    """Trains ``config``'s model on ``train_data`` and scores each category's split of ``test_splits``
    alone; a JSON-able record with the metrics per category (``category_metrics``).

    ``compiled`` (a dict kept between calls) reuses the jitted train step and map functions of an
    earlier run with the same structure, so a run of another seed or category compiles nothing.
    ``union`` (a unified run's training union): a model with a prompt bank also records
    ``retrieval``, its same-category retrieval fraction per test category."""
    started = time.perf_counter()
    tc = config.train
    model = build_model(config, nnx.Rngs(config.seed))
    teacher_lib.load_into(model, config)  # 'random': leaves the seeded initialisation, with a warning
    num_train = len(train_data["image"])
    # As model_setup.setup_model: one un-augmented pass (RGPKD fills its prompt bank).
    model.prepare(lambda: ({"image": train_data["image"][i:i + tc.batch_size],
                            "index": train_data["index"][i:i + tc.batch_size]}
                           for i in range(0, num_train, tc.batch_size)))
    steps_per_epoch = num_train // tc.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{num_train} training images are fewer than one batch of {tc.batch_size}")
    schedule = optim.make_schedule(tc, tc.epochs * steps_per_epoch, steps_per_epoch)
    graphdef, state, frozen = train_state.split(model, tc, schedule)
    compiled = {} if compiled is None else compiled
    key = _compiled_key(config, num_train)
    functions = compiled.get(key)
    if functions is None or functions["structure"] != jax.tree.structure(state):
        eval_graphdef, _ = nnx.split(model)
        functions = compiled[key] = {
            "structure": jax.tree.structure(state), "step": train.make_train_step(graphdef, seed=config.seed),
            "map": evaluate.make_map_fn(model, config)[0], "levels": _level_maps_fn(eval_graphdef)}
    curve = _EpochCurve(steps_per_epoch)
    at_epoch_end = lambda step: step % steps_per_epoch == 0  # noqa: E731
    state = train_loop.run(functions["step"], state, frozen,
                           data.epoch_batches(train_data, tc.epochs, tc.batch_size, config.seed),
                           start=0, stop=tc.epochs * steps_per_epoch,
                           hooks=[train_loop.NonFiniteStop(at_epoch_end), curve])
    train_seconds = time.perf_counter() - started
    trained = train_state.merge(graphdef, state, frozen)["model"]
    _, eval_state = nnx.split(trained)
    category_metrics = {category: _score_split(functions, eval_state, test_data, config)
                        for category, test_data in test_splits.items()}
    result = {"category_metrics": category_metrics, "curve": curve.curve, "final_terms": curve.curve[-1],
              "train_seconds": train_seconds}
    if union is not None and getattr(trained, "prompts", None) is not None:
        teacher, teacher_state = _teacher_fn(trained)
        deepest = {category: teacher(teacher_state, jnp.asarray(test_data["image"]))[-1]
                   for category, test_data in test_splits.items()}
        result["retrieval"] = retrieval.same_category_fraction(trained.prompts, deepest, union)
    return {**result, "total_seconds": time.perf_counter() - started, "backend": jax.default_backend()}


def _score_split(functions: dict, eval_state, test_data: dict, config) -> dict:
    """The map's scores and the per-level diagnostics on one category's whole test split (41
    images) in one call: one compile, no padding."""
    images, masks, labels = jnp.asarray(test_data["image"]), test_data["mask"], test_data["label"]
    maps, scores = (np.asarray(x) for x in functions["map"](eval_state, images))
    record = scores_of(maps, masks, labels, config, scores=scores)
    levels, error = functions["levels"](eval_state, images)
    record.update(level_metrics(np.asarray(levels), error, maps, masks, labels, config))
    return record


def scores_of(maps: np.ndarray, masks: np.ndarray, labels: np.ndarray, config, scores=None) -> dict[str, float]:
    """Image AUROC, pixel AUROC and the official AU-PRO (at `eval.fpr_limit`) of the maps (and
    image scores: the maps' maxima when None)."""
    metrics = summary.compute_metrics(maps, masks, labels, scores=scores, fpr_limit=config.eval.fpr_limit,
                                      per_image_aupro=False)
    return {k: float(metrics[k]) for k in SCORES}


def level_metrics(levels: np.ndarray, error, maps: np.ndarray, masks: np.ndarray, labels: np.ndarray,
                  config) -> dict:
    """Per level: pixel AUROC of the smoothed 1 - cos map, mean 1 - cos on defect and on normal
    pixels; with a reconstruction error: its own pixel AUROC and the metrics of map + error."""
    record = {}
    defect, normal = masks > 0.5, masks < 0.5
    blur = lambda x: np.asarray(anomaly_maps.gaussian_blur(jnp.asarray(x), config.eval.sigma))  # noqa: E731
    for level, level_map in enumerate(levels, 1):
        record[f"pixel_auroc_level{level}"] = roc_auc(blur(level_map), defect)
        record[f"distance_defect_level{level}"] = float(level_map[defect].mean())
        record[f"distance_normal_level{level}"] = float(level_map[normal].mean())
    if error is not None:
        error = blur(error)
        record["pixel_auroc_reconstruction_only"] = roc_auc(error, defect)
        with_error = scores_of(maps + error, masks, labels, config)
        record.update({f"{k}_with_reconstruction": v for k, v in with_error.items()})
    return record


def run_mean_feature(config, train_data: dict, test_splits: dict[str, dict]) -> dict:
    """The map of a 'student' that outputs, at every position, the mean over the training images
    and positions of the teacher's feature at that level: a student that learnt nothing of the
    image. Where it scores below 0.5, an underfit student's map is anti-correlated with the defects.
    Scored on each category's split of ``test_splits`` alone."""
    started = time.perf_counter()
    model = build_model(config, nnx.Rngs(config.seed))
    teacher_lib.load_into(model, config)
    teacher, state = _teacher_fn(model)
    train_features = [teacher(state, jnp.asarray(train_data["image"][i:i + 16]))
                      for i in range(0, len(train_data["image"]), 16)]
    means = [jnp.mean(jnp.concatenate(level), axis=(0, 1, 2)) for level in zip(*train_features)]
    category_metrics = {}
    for category, test_data in test_splits.items():
        images, masks, labels = jnp.asarray(test_data["image"]), test_data["mask"], test_data["label"]
        test_features = teacher(state, images)
        student = [jnp.broadcast_to(m, t.shape) for m, t in zip(means, test_features)]
        maps = np.asarray(anomaly_maps.anomaly_map(test_features, student, images.shape[1:3],
                                                   sigma=config.eval.sigma))
        record = scores_of(maps, masks, labels, config)
        levels = np.stack([np.asarray(anomaly_maps.upsample_align_corners(anomaly_maps.cosine_distance_map(t, s),
                                                                          images.shape[1:3]))
                           for t, s in zip(test_features, student)])
        record.update(level_metrics(levels, None, maps, masks, labels, config))
        category_metrics[category] = record
    return {"category_metrics": category_metrics, "curve": [], "final_terms": {}, "train_seconds": 0.0,
            "total_seconds": time.perf_counter() - started, "backend": jax.default_backend()}
