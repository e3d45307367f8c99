"""Runs a trained model over a test split: anomaly maps -> metrics JSON, figures, a decision threshold.

Each method computes its own anomaly map (`models.Method.anomaly_map`: by default RD4AD's, the sum
over levels of 1 - cos, bilinear align_corners=True upsampling, Gaussian sigma 4), in the same jit
as the forward pass; the image score (max by default) is the evaluator's.

A unified model (trained on several categories, `rgpkd_jax.data.unified`) is evaluated on each
category's test split alone, exactly as a per-category model would be, into
``categories/<category>/``; the run's own ``eval_metrics.json`` holds every category's metrics and
their means (docs/unified.md).

With many processes, every process reads the whole split, its devices compute their rows of each
batch, and the maps come back replicated: every process computes the metrics and the threshold on
the same arrays, and only process 0 writes the files.
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import numpy as np
from absl import logging
from flax import nnx

from rgpkd_jax import (anomaly_maps, checkpointing, files, model_setup, report_assets, sharding, visualize,
                       workdir_lock)
from rgpkd_jax import teacher as teacher_lib
from rgpkd_jax.data import pipeline, unified
from rgpkd_jax.deploy.images import size_hw, to_uint8
from rgpkd_jax.metrics import aupimo, summary
from rgpkd_jax.models import NOT_TRAINED

METRICS_FILE = "eval_metrics.json"
THRESHOLD_FILE = "threshold.json"
# what an evaluation writes
OUTPUT_FILES = [METRICS_FILE, visualize.SHEET_FILE, visualize.CURVES_FILE, report_assets.ASSETS_DIR]


def output_files(result: dict) -> list[str]:
    """The files (or glob patterns) an evaluation with ``result`` wrote into its workdir."""
    if result.get("setting") != unified.UNIFIED:
        return OUTPUT_FILES
    return [METRICS_FILE] + [os.path.join(unified.CATEGORIES_DIR, "*", name) for name in OUTPUT_FILES]


def make_map_fn(model: nnx.Module, config, out_shardings=None):
    """A jitted `(state, images) -> (maps, scores)` for `model`, plus the state to call it with."""
    ec = config.eval
    graphdef, state = nnx.split(model)

    @functools.partial(jax.jit, out_shardings=out_shardings)
    def maps_and_scores(state, images):
        model = nnx.merge(graphdef, state)
        maps = model.anomaly_map(model(images, train=False), images, ec)
        return maps, anomaly_maps.image_scores(maps, mode=ec.score, k=ec.topk)

    return maps_and_scores, state


class MapRunner:
    """Feeds batches of any size through the jitted map function on the device mesh.

    Batches are padded to a fixed size so the function compiles once per runner (build one and
    pass it to every call of a run); BN is in inference mode, so padding cannot change the other
    images' results. Every process passes the same images and gets all the maps back.
    """

    def __init__(self, model, config):
        self.model = model
        self.mesh = sharding.make_mesh()
        self.batch_size = _round_up(config.eval.batch_size, self.mesh.devices.size)
        self.fn, state = make_map_fn(model, config, out_shardings=sharding.replicated(self.mesh))
        self.state = jax.device_put(state, sharding.replicated(self.mesh))

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(images)
        maps, scores = [], []
        for start in range(0, n, self.batch_size):
            chunk = images[start:start + self.batch_size]
            padded = np.zeros((self.batch_size, *chunk.shape[1:]), chunk.dtype)
            padded[:len(chunk)] = chunk
            m, s = self.fn(self.state, sharding.shard_full_batch(padded, self.mesh))
            maps.append(np.asarray(m)[:len(chunk)])
            scores.append(np.asarray(s)[:len(chunk)])
        return np.concatenate(maps), np.concatenate(scores)


def _runner(model_or_runner, config) -> MapRunner:
    return model_or_runner if isinstance(model_or_runner, MapRunner) else MapRunner(model_or_runner, config)


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def collect_test_predictions(model, config) -> dict[str, np.ndarray]:
    """Maps, scores and ground truth of the whole test split, in dataset order (`model`: an nnx
    model or a :class:`MapRunner`). Masks are bool: a quarter of float32's memory, and the metrics
    take them without a copy."""
    runner = _runner(model, config)
    parts: dict[str, list] = {k: [] for k in ("map", "score", "mask", "label", "defect_type",
                                               "file_name", "image")}
    keep_images = config.eval.num_visualise > 0
    timed_seconds, timed_images = 0.0, 0
    for number, batch in enumerate(pipeline.test_batches(config, batch_size=runner.batch_size)):
        start = time.perf_counter()
        maps, scores = runner(batch["image"])  # numpy arrays: the batch is done
        if number:  # the first batch may include compiling
            timed_seconds, timed_images = timed_seconds + time.perf_counter() - start, timed_images + len(maps)
        parts["map"].append(maps)
        parts["score"].append(scores)
        parts["mask"].append(np.asarray(batch["mask"]) > 0)  # 0/1 after the pipeline's threshold
        for key in ("label", "defect_type", "file_name"):
            parts[key].append(np.asarray(batch[key]))
        if keep_images:
            parts["image"].append(to_uint8(batch["image"]))
    if not parts["map"]:
        raise ValueError(f"the test split of {config.dataset.name}/{config.dataset.category} is empty")
    predictions = {k: np.concatenate(v) for k, v in parts.items() if v}
    predictions["inference"] = inference_speed(timed_images, timed_seconds, runner.batch_size)
    return predictions


def inference_speed(images: int, seconds: float, batch_size: int) -> dict:
    """The test pass's throughput (maps and scores, on every device of the mesh; reading and
    decoding the data excluded), over the batches after the first."""
    devices = jax.devices()
    speed = {"images": images, "seconds": seconds, "batch_size": batch_size, "device": devices[0].device_kind,
             "device_count": len(devices)}
    if not images:
        return {**speed, "images_per_s": None, "why_none": "one batch only: its time includes compiling"}
    return {**speed, "images_per_s": images / seconds}


def protocol(config) -> dict:
    """The evaluation choices that change the numbers (docs/protocol.md), as eval_metrics.json
    records them under ``protocol``."""
    ec = config.eval
    return {
        # maps and masks are compared at the model's input size, never at the native resolution
        "resolution": list(size_hw(config.dataset.image_size)),
        "mask_resize": "bilinear",
        "mask_threshold": ec.mask_threshold,  # a resized mask pixel (in [0, 1]) above it is defective
        "gaussian_sigma": ec.sigma,
        "map_combine": ec.combine,
        "image_score": ec.score if ec.score != "topk_mean" else f"topk_mean({ec.topk})",
        "image_score_decimals": ec.image_score_decimals,
        "image_label": "folder",  # good / defect folder, not the resized mask
        "aupro_fpr_limit": ec.fpr_limit,
        "aupimo_fpr_bounds": list(aupimo.FPR_BOUNDS),
        "aupimo_num_thresholds": aupimo.NUM_THRESHOLDS,
    }


def evaluate_model(model, config, workdir: str, *, teacher_info: dict | None = None) -> dict:
    """Evaluates `model` (an nnx model or a :class:`MapRunner`) on the test split; process 0
    writes `eval_metrics.json` and figures into workdir. Every process returns the result. A
    unified model is evaluated per category (module docstring)."""
    summary.check_image_score_decimals(config.eval.image_score_decimals)  # before the long passes
    if not unified.is_unified(config):
        return _evaluate_split(model, config, workdir, teacher_info=teacher_info, run_workdir=workdir)
    runner = _runner(model, config)
    names = unified.category_names(config)
    results = {name: _evaluate_split(runner, unified.for_category(config, name),
                                     os.path.join(workdir, unified.CATEGORIES_DIR, name), teacher_info=teacher_info,
                                     run_workdir=workdir, trained_on=names)
               for name in names}
    result = unified_result(config, results, teacher_info=teacher_info)
    if sharding.is_primary():
        unwritten: dict[str, str] = {}
        with files.failure_recorded(os.path.join(workdir, METRICS_FILE), unwritten):
            files.write_json(os.path.join(workdir, METRICS_FILE), result)
        for name, part in results.items():  # a category's own unwritten files, named by path
            unwritten.update(part.get("unwritten", {}))
        _keep_unwritten(result, unwritten)
    return result


def unified_result(config, results: dict[str, dict], *, teacher_info: dict | None = None) -> dict:
    """A unified run's ``eval_metrics.json``: each category's metrics (``per_category``) and, under
    ``metrics``, their means over the categories. A metric some category lacks (no masks there)
    has no mean: it is listed under ``metrics_unavailable`` with those categories."""
    first = next(iter(results.values()))
    per_category = {name: r["metrics"] for name, r in results.items()}
    means, unavailable = {}, {}
    for key in summary.METRIC_LABELS:
        lacking = [name for name, metrics in per_category.items() if key not in metrics]
        if not lacking:
            means[key] = float(np.mean([metrics[key] for metrics in per_category.values()]))
        elif len(lacking) < len(per_category):
            unavailable[key] = f"no value for {len(lacking)} of {len(per_category)} categories: {lacking}"
        else:
            unavailable[key] = first.get("metrics_unavailable", {}).get(key, "no value for any category")
    result = {
        "setting": unified.UNIFIED, "dataset": config.dataset.name, "category": config.dataset.category,
        "categories": list(results), "method": config.method,
        "num_test_images": int(sum(r["num_test_images"] for r in results.values())),
        "image_size": config.dataset.image_size, "teacher": teacher_info or {},
        "image_score_decimals": config.eval.image_score_decimals, "protocol": first["protocol"],
        "metrics": means, "per_category": per_category,
        "num_test_images_per_category": {name: r["num_test_images"] for name, r in results.items()},
    }
    if unavailable:
        result["metrics_unavailable"] = unavailable
    if first.get("warning"):
        result["warning"] = first["warning"]
    return result


def _evaluate_split(model, config, out_dir: str, *, teacher_info: dict | None, run_workdir: str,
                    trained_on: list[str] | None = None) -> dict:
    """Metrics and figures of ``config``'s (one category's) test split, written into ``out_dir``;
    ``run_workdir`` holds the run's threshold, ``trained_on`` a unified model's categories."""
    ec = config.eval
    predictions = collect_test_predictions(model, config)
    predictions["score"] = summary.round_image_scores(predictions["score"], ec.image_score_decimals)
    metrics = summary.compute_metrics(
        predictions["map"], predictions["mask"] if pipeline.has_masks(config) else None,
        predictions["label"], scores=predictions["score"], defect_types=predictions["defect_type"],
        fpr_limit=ec.fpr_limit, per_image_aupro=ec.rd4ad_per_image_aupro,
        file_names=predictions["file_name"])
    left_out = metrics.pop(summary.PER_IMAGE_AUPRO_LEFT_OUT, None)
    unavailable = metrics.pop(summary.UNAVAILABLE, None)
    result = {
        "setting": unified.UNIFIED if trained_on else unified.PER_CATEGORY,
        "dataset": config.dataset.name, "category": config.dataset.category,
        "method": config.method, "num_test_images": int(len(predictions["label"])),
        "image_size": config.dataset.image_size, "teacher": teacher_info or {},
        "image_score_decimals": ec.image_score_decimals,
        "protocol": protocol(config),
        "metrics": metrics,
    }
    if trained_on:
        result["trained_on"] = list(trained_on)
    if unavailable:  # metric -> why it has no value (no masks; AUPIMO on too few normal pixels)
        result["metrics_unavailable"] = unavailable
    if left_out is not None:  # reason -> file names of the images the per-image AUPRO leaves out
        result["aupro_rd4ad_per_image_left_out"] = left_out
    if (teacher_info or {}).get("weights") == "random":
        result["warning"] = teacher_info.get("warning")
    if sharding.is_primary():
        unwritten: dict[str, str] = {}
        with files.failure_recorded(os.path.join(out_dir, METRICS_FILE), unwritten):
            os.makedirs(out_dir, exist_ok=True)
            files.write_json(os.path.join(out_dir, METRICS_FILE), result)
        if ec.num_visualise > 0:
            threshold = _figure_threshold(run_workdir, model.model if isinstance(model, MapRunner) else model,
                                          category=config.dataset.category if trained_on else None)
            shown = visualize.pick_examples(predictions["label"], predictions["score"], ec.num_visualise)
            curves = summary.metric_curves(  # once, for the figure and the report
                predictions["map"], predictions["mask"] if "pixel_auroc" in metrics else None,
                predictions["label"], predictions["score"], fpr_limit=ec.fpr_limit)
            with files.failure_recorded(f"the figures in {out_dir}", unwritten):
                visualize.write_figures(predictions, metrics, curves, config, out_dir, threshold=threshold,
                                        random_teacher=(teacher_info or {}).get("weights") == "random",
                                        sizes=pipeline.image_sizes(config, "test", shown))
                report_assets.write(predictions, curves, out_dir, threshold=threshold, fpr_limit=ec.fpr_limit,
                                    inference=predictions.get("inference"))
        _keep_unwritten(result, unwritten)
    return result


def _figure_threshold(workdir: str, model, *, category: str | None = None) -> float | None:
    """The threshold the figures draw: the workdir's, if it was computed from ``model`` (a unified
    run's figures of ``category``: that category's)."""
    if not os.path.exists(os.path.join(workdir, THRESHOLD_FILE)):
        return None
    threshold = read_threshold(workdir)
    if not _computed_from(threshold, model):
        logging.warning("%s was computed from other weights: the figures show no threshold (recompute "
                        "it with --mode threshold)", os.path.join(workdir, THRESHOLD_FILE))
        return None
    return choose_threshold(threshold, category)[0]


def _keep_unwritten(result: dict, unwritten: dict[str, str]) -> None:
    """A failed write (disk full) at the end keeps the results: listed in ``result['unwritten']``
    for the command line to report, and the metrics logged so that they are not lost."""
    if not unwritten:
        return
    result.setdefault("unwritten", {}).update(unwritten)
    for what, reason in unwritten.items():
        logging.error("could not write %s: %s", what, reason)
    if "metrics" in result:
        logging.error("the results that were not saved:\n%s", format_summary(result))


def format_summary(result: dict) -> str:
    """The metrics of :func:`evaluate_model`'s result as the lines the command line prints; the
    header names the protocol (docs/protocol.md). A unified run's: a line per category, then the means."""
    m, p = result["metrics"], result["protocol"]
    # The random-teacher warning speaks of "the scores below": it goes above them.
    lines = ["WARNING: " + result["warning"]] if result.get("warning") else []
    unified_run = result.get("setting") == unified.UNIFIED
    if unified_run:
        shown = [key for key in _CATEGORY_COLUMNS if key in m]
        lines.append(f"{result['method']} trained on {len(result['categories'])} categories of "
                     f"{result['dataset']} at once (unified), each category's test split alone:")
        width = max(len(name) for name in result["categories"])
        lines.append(f"  {'':<{width}}  " + "  ".join(f"{summary.METRIC_LABELS[k]:>12}" for k in shown))
        for name, metrics in result["per_category"].items():
            lines.append(f"  {name:<{width}}  " + "  ".join(f"{metrics[k]:>12.4f}" for k in shown))
    scope = (f", mean over the {len(result['categories'])} categories"
             if unified_run else f" on {result['dataset']}/{result['category']}")
    lines.append(f"{result['method']}{scope} "
                 f"({result['num_test_images']} test images; {p['resolution'][0]}x{p['resolution'][1]}, "
                 f"masks > {p['mask_threshold']:g}, sigma {p['gaussian_sigma']:g}, "
                 f"AU-PRO to FPR {p['aupro_fpr_limit']:g}):")
    # Metrics without a value (no masks, AUPIMO on a small set) are left out, and said why below.
    lines += [f"  {label:<24} {m[key]:.4f}" for key, label in summary.METRIC_LABELS.items() if key in m]
    by_reason: dict[str, list[str]] = {}
    for key, reason in (result.get("metrics_unavailable") or {}).items():
        by_reason.setdefault(reason, []).append(key)
    lines += [f"  (not available: {', '.join(keys)}: {reason})" for reason, keys in by_reason.items()]
    if m.get("aupro_rd4ad_per_image/num_skipped"):
        lines.append(f"  ({m['aupro_rd4ad_per_image/num_skipped']} defective images left out of the "
                     "per-image AUPRO: aupro_rd4ad_per_image_left_out in eval_metrics.json)")
    return "\n".join(lines)


# The per-category columns a unified run prints (every metric is in each category's own file).
_CATEGORY_COLUMNS = ("image_auroc", "pixel_auroc", "aupro")


def trained_digest(model) -> str:
    """What identifies a checkpoint's trained weights: a digest of the values training changed
    (parameters and BN statistics of all but the teacher, as float32)."""
    return teacher_lib.fingerprint(model, nnx.All(nnx.Any(nnx.Param, nnx.BatchStat), nnx.Not(NOT_TRAINED)))


def _computed_from(threshold: dict, model) -> bool:
    """Whether ``threshold`` (``read_threshold``'s) was computed from ``model``'s trained weights."""
    return (threshold.get("checkpoint") or {}).get("digest") == trained_digest(model)


def compute_threshold(model, config, workdir: str) -> dict:
    """Decision threshold from normal (training) images only: a quantile of their image scores.

    Training images were fitted, so their scores run lower than unseen normal images': the
    quantile (`eval.threshold_quantile`, default 0.99) is a starting point to tune, not a guarantee.
    `model` is an nnx model or a :class:`MapRunner`, the model of the workdir's newest checkpoint
    (training and imports save it just before); ``threshold.json`` records that checkpoint's step
    and weights (:func:`trained_digest`), and predict and export refuse it for another. A unified
    model gets one threshold per category (``per_category``, from that category's training images)
    and the global one over all of them (``threshold``). Process 0 writes the file.
    """
    runner = _runner(model, config)
    q = config.eval.threshold_quantile
    names = unified.category_names(config) if unified.is_unified(config) else [config.dataset.category]
    scores = {name: _training_scores(runner, unified.for_category(config, name)) for name in names}
    every = np.concatenate(list(scores.values()))
    info = {"threshold": float(np.quantile(every, q)), "quantile": q,
            "source": "image scores of the training split (normal images only)",
            "num_images": int(len(every)), "score": config.eval.score,
            "image_size": config.dataset.image_size,
            "checkpoint": {"step": checkpointing.newest_step(workdir), "digest": trained_digest(runner.model)}}
    if len(names) > 1:
        info["per_category"] = {name: {"threshold": float(np.quantile(s, q)), "num_images": int(len(s))}
                                for name, s in scores.items()}
    if sharding.is_primary():
        unwritten: dict[str, str] = {}
        with files.failure_recorded(os.path.join(workdir, THRESHOLD_FILE), unwritten):
            files.write_json(os.path.join(workdir, THRESHOLD_FILE), info)
        _keep_unwritten(info, unwritten)
    return info


def _training_scores(runner: MapRunner, config) -> np.ndarray:
    batches = pipeline.test_batches(config, batch_size=runner.batch_size, split="train")
    return np.concatenate([runner(b["image"])[1] for b in batches])


def choose_threshold(threshold: dict, category: str | None = None) -> tuple[float, str]:
    """(value, what it is) of ``read_threshold``'s ``threshold`` for images of ``category``: a
    unified model's per-category threshold, or with ``category`` None the global one."""
    per_category = threshold.get("per_category")
    if category is None:
        if per_category:
            return threshold["threshold"], (f"global threshold over the {len(per_category)} categories' "
                                            "training images (choose a category's with --threshold_category)")
        return threshold["threshold"], "threshold of the training images"
    if not per_category:
        raise ValueError(f"--threshold_category={category}: this model was trained on one category and has "
                         "one threshold; leave --threshold_category out")
    if category not in per_category:
        raise ValueError(f"--threshold_category={category}: the model has thresholds for {sorted(per_category)}")
    return per_category[category]["threshold"], f"threshold of category {category}"


def read_threshold(workdir: str) -> dict:
    """The workdir's ``threshold.json`` (what :func:`compute_threshold` wrote)."""
    path = os.path.join(workdir, THRESHOLD_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing; it is written at the end of training "
                                "(--mode=train or train_eval with the same --config and --workdir)")
    with open(path) as f:
        return json.load(f)


class StaleThresholdError(ValueError):
    """threshold.json was computed from other weights than the checkpoint being used."""


def check_threshold(threshold: dict, model, step: int, workdir: str) -> None:
    """Refuses a threshold (``read_threshold``'s) that was not computed from ``model``, the
    workdir's checkpoint ``step`` (e.g. the newest step was moved aside after it), with the
    command that recomputes it."""
    if _computed_from(threshold, model):
        return
    recorded = threshold.get("checkpoint")
    source = (f"from the checkpoint of step {recorded.get('step')}" if recorded
              else "before thresholds recorded their checkpoint")
    raise StaleThresholdError(
        f"{os.path.join(workdir, THRESHOLD_FILE)} was computed {source}, not from the weights of the "
        f"checkpoint in use (step {step}); recompute it: python -m rgpkd_jax.main --config <the same "
        f"config> --workdir {workdir} --mode threshold")


def threshold_checkpoint(config, workdir: str) -> dict:
    """Computes and writes ``threshold.json`` for the workdir's newest checkpoint (after its newest
    step was moved aside, or to change ``eval.threshold_quantile``), holding the workdir's lock."""
    with workdir_lock.hold(workdir, "threshold", enabled=sharding.is_primary()):
        model, _, step = model_setup.load_trained_model(config, workdir)
        logging.info("computing the threshold of the checkpoint of step %d", step)
        return compute_threshold(model, config, workdir)


def format_threshold(info: dict) -> str:
    """:func:`compute_threshold`'s result as the line the command line prints."""
    line = (f"threshold {info['threshold']:.6g}: the {info['quantile']} quantile of {info['num_images']} "
            f"training images' scores, checkpoint of step {info['checkpoint']['step']}")
    return "\n".join([line] + [f"  {name}: {part['threshold']:.6g} ({part['num_images']} images)"
                               for name, part in info.get("per_category", {}).items()])


def evaluate_checkpoint(config, workdir: str) -> dict:
    """Evaluates the workdir's last checkpoint, holding the workdir's lock (process 0): the lock
    also proves the workdir writable before the model is loaded."""
    with workdir_lock.hold(workdir, "eval", enabled=sharding.is_primary()):
        model, teacher_info, step = model_setup.load_trained_model(config, workdir)
        logging.info("evaluating the checkpoint of step %d", step)
        return evaluate_model(model, config, workdir, teacher_info=teacher_info)
