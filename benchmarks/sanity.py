"""Sanity check between methods on the embedded synthetic data: RD4AD, SK-RD4AD and every RGPKD
variant, same random ResNet18 teacher, same data, several seeds; mean +- std over categories x seeds.

    python -m benchmarks.sanity --output_dir workdirs/sanity                    # 128 px, 20 epochs, 3x3
    python -m benchmarks.sanity --output_dir workdirs/sanity_small --categories=grid --seeds=0 \\
        --epochs=2 --image_size=64 --variants=rd4ad,rgpkd                        # a few CPU minutes

A **random** teacher makes these numbers meaningless as results on real data; what they check is
that every method separates the synthetic defects at least as a plain RD4AD does (docs/rgpkd.md
"Sanity check"). Never quote them as accuracy.

Each run trains in this process with the trainer's own step (`train.make_train_step`), schedule and
optimiser, fills RGPKD's bank as the trainer does, and scores the test split with the evaluator's
map (`evaluate.MapRunner`). Unlike `rgpkd_jax.train` it keeps the data in memory (the splits are
101 images), shuffles with numpy (`seed`, a fresh permutation per epoch, last partial batch dropped
as the pipeline does) and writes no checkpoints. Every finished run is one line of
`<output_dir>/sanity_runs.jsonl`; a rerun skips the runs already there, so an interrupted benchmark
resumes. The tables are `sanity.json` and `sanity.md` beside it.

Per run it also records what locates a failure: per-level pixel AUROC, the mean 1 - cos on defect
and on normal pixels per level, the distillation loss per epoch, and for RGPKD the pixel AUROC of
the reconstruction error alone and of the map plus that error (`eval.reconstruction_weight=1`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Sequence

import numpy as np
from absl import app, flags

from rgpkd_jax import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS_FILE = "sanity_runs.jsonl"
TABLE_STEM = "sanity"
CATEGORIES = ("grid", "weave", "disc")   # rgpkd_jax.data.synthetic.CATEGORIES (imported late)


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    config: str                      # configs/<config>.py
    overrides: tuple[str, ...] = ()
    description: str = ""
    kind: str = "train"              # "train", or "mean_feature": no student (run_mean_feature)


_OLD_RECIPE = ("train.learning_rate=0.001", "train.b1=0.9", "train.schedule=warmup_linear_decay",
               "train.warmup_epochs=2")
VARIANTS = tuple(Variant(*v) for v in (
    ("rd4ad", "rd4ad", (), "RD4AD (configs/rd4ad.py: Adam 5e-3, betas 0.5/0.999, constant)"),
    ("sk_rd4ad", "sk_rd4ad", (), "SK-RD4AD (configs/sk_rd4ad.py)"),
    ("mean_teacher_feature", "rd4ad", (), "no student: every position gets the mean teacher feature of the "
     "training images at its level, where an underfit student's outputs tend to", "mean_feature"),
    ("rgpkd", "rgpkd", (), "RGPKD default (configs/rgpkd.py): own encoder, same-stride skips, prompts, "
                           "reconstruction, width 64, RD4AD's recipe"),
    ("rgpkd+issue_run", "rgpkd", ("model.base_width=32",) + _OLD_RECIPE,
     "the issue's run: width 32 and the first recipe (Adam 1e-3, b1 0.9, warm-up 2 epochs, linear decay to 0)"),
    ("rgpkd+old_recipe", "rgpkd", _OLD_RECIPE, "default with the first recipe"),
    ("rgpkd+lr1e-3", "rgpkd", ("train.learning_rate=0.001",), "default with Adam 1e-3 (b1 0.5, constant)"),
    ("rgpkd+warmup_decay", "rgpkd", ("train.schedule=warmup_linear_decay", "train.warmup_epochs=2"),
     "default with Adam 5e-3, warm-up 2 epochs then linear decay to 0"),
    ("rgpkd+no_prompts", "rgpkd", ("model.prompts=False",), "no prompt bank, no fusion"),
    ("rgpkd+no_reconstruction", "rgpkd", ("model.reconstruction=False",), "no reconstruction head"),
    ("rgpkd+no_skips", "rgpkd", ("model.skips=False",), "no encoder -> decoder skips"),
    ("rgpkd+top_k3", "rgpkd", ("model.top_k=3",), "prompt = mean of the 3 nearest bank entries"),
    ("rgpkd+width32", "rgpkd", ("model.base_width=32",), "encoder widths 32..256"),
    ("rgpkd+teacher_encoder", "rgpkd", ("model.student_encoder=teacher",),
     "encoder side = the frozen teacher into RD4AD's OCBE bottleneck, SK-RD4AD skips"),
    ("rgpkd+teacher_encoder+width32", "rgpkd", ("model.student_encoder=teacher", "model.base_width=32"),
     "teacher encoder side, decoder widths 128/64/32"),
    ("rgpkd+teacher_encoder+no_skips", "rgpkd", ("model.student_encoder=teacher", "model.skips=False"),
     "teacher encoder side, no skips: the decoder sees the bottleneck only"),
))
VARIANT_NAMES = tuple(v.name for v in VARIANTS)


# --- data ---------------------------------------------------------------------------------------

def load_split(config, split: str, arrays_dir: str) -> dict[str, np.ndarray]:
    """The split's images (normalised, as the pipeline makes them), masks, labels and indices.

    Decoded once through the pipeline and kept in ``arrays_dir`` as uint8 (the pipeline's images
    are uint8 / 255, normalised, so they are rebuilt exactly)."""
    from PIL import Image

    from rgpkd_jax.data import preprocess

    size = config.dataset.image_size
    path = os.path.join(arrays_dir, f"synthetic_{config.dataset.category}_{size}_{split}.npz")
    if not os.path.exists(path):
        from rgpkd_jax import evaluate
        from rgpkd_jax.data import pipeline

        parts: dict[str, list] = {}
        for batch in pipeline.test_batches(config, batch_size=32, split=split):
            parts.setdefault("image", []).append(evaluate.to_uint8(batch["image"]))
            for key in ("mask", "label", "index"):
                parts.setdefault(key, []).append(np.asarray(batch[key]))
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        arrays["mask"] = (arrays["mask"] > 0.5).astype(np.uint8)
        os.makedirs(arrays_dir, exist_ok=True)
        with files.atomic_write(path, "wb") as f:
            np.savez_compressed(f, **arrays)
    with np.load(path) as stored:
        arrays = {k: stored[k] for k in stored.files}
    arrays["image"] = np.stack([preprocess.preprocess_image(Image.fromarray(u), size) for u in arrays["image"]])
    arrays["mask"] = arrays["mask"].astype(np.float32)
    return arrays


# --- one run ------------------------------------------------------------------------------------

def make_config(variant: Variant, category: str, seed: int, *, epochs: int, image_size: int,
                batch_size: int, data_dir: str = "", overrides: Sequence[str] = ()):
    """The variant's config file on synthetic/<category>, with this check's shared settings."""
    from rgpkd_jax.config_files import load_config

    shared = [f"seed={seed}", f"dataset.image_size={image_size}", "teacher.arch=resnet18",
              "teacher.weights=random", f"train.epochs={epochs}", f"train.batch_size={batch_size}",
              "eval.num_visualise=0", "eval.rd4ad_per_image_aupro=False"]
    if data_dir:
        shared.append(f"dataset.data_dir={data_dir}")
    config = load_config(os.path.join(REPO, "configs", f"{variant.config}.py:synthetic/{category}"),
                         shared + list(variant.overrides) + list(overrides))
    return config


def _level_maps_fn(graphdef):
    """A jitted (state, images) -> per-level 1 - cos maps at image size (L, B, H, W), unsmoothed,
    and the reconstruction's squared error (B, H, W) or None."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from rgpkd_jax import anomaly_maps
    from rgpkd_jax.deploy.images import denormalize

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


def _compiled_key(config) -> str:
    """Runs whose configs differ only in seed and category share jitted functions (same model
    structure and hyperparameters; the bank holds 60 images in every category)."""
    settings = config.to_dict()
    settings.pop("seed")
    settings["dataset"].pop("category")
    return json.dumps(settings, sort_keys=True, default=str)


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


def _epoch_batches(train_data: dict, epochs: int, batch_size: int, seed: int):
    """In-memory batches: a fresh permutation per epoch, the last partial batch dropped (as the
    pipeline does)."""
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    num_train = len(train_data["image"])
    for _ in range(epochs):
        order = rng.permutation(num_train)
        for b in range(num_train // batch_size):
            chosen = order[b * batch_size:(b + 1) * batch_size]
            yield {"image": jnp.asarray(train_data["image"][chosen]), "index": jnp.asarray(train_data["index"][chosen])}


def run_one(config, train_data: dict, test_data: dict, compiled: dict | None = None) -> dict:
    """Trains ``config``'s model on ``train_data`` and scores ``test_data``; a JSON-able record.

    ``compiled`` (a dict kept between calls) reuses the jitted train step and map functions of an
    earlier run with the same structure, so a run of another seed or category compiles nothing."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from rgpkd_jax import evaluate, optim, teacher as teacher_lib, train, train_loop, train_state
    from rgpkd_jax.metrics import summary
    from rgpkd_jax.models import build_model

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
    key = _compiled_key(config)
    functions = compiled.get(key)
    if functions is None or functions["structure"] != jax.tree.structure(state):
        eval_graphdef, _ = nnx.split(model)
        functions = compiled[key] = {
            "structure": jax.tree.structure(state), "step": train.make_train_step(graphdef, seed=config.seed),
            "map": evaluate.make_map_fn(model, config)[0], "levels": _level_maps_fn(eval_graphdef)}
    curve = _EpochCurve(steps_per_epoch)
    at_epoch_end = lambda step: step % steps_per_epoch == 0  # noqa: E731
    state = train_loop.run(functions["step"], state, frozen,
                           _epoch_batches(train_data, tc.epochs, tc.batch_size, config.seed),
                           start=0, stop=tc.epochs * steps_per_epoch,
                           hooks=[train_loop.NonFiniteStop(at_epoch_end), curve])
    train_seconds = time.perf_counter() - started
    _, eval_state = nnx.split(train_state.merge(graphdef, state, frozen)["model"])

    # The whole test split (41 images) in one call: one compile, no padding.
    images, masks, labels = jnp.asarray(test_data["image"]), test_data["mask"], test_data["label"]
    maps, scores = (np.asarray(x) for x in functions["map"](eval_state, images))
    metrics = summary.compute_metrics(maps, masks, labels, scores=scores, fpr_limit=config.eval.fpr_limit,
                                      per_image_aupro=False)
    record = {k: float(metrics[k]) for k in ("image_auroc", "pixel_auroc", "aupro")}

    levels, error = functions["levels"](eval_state, images)
    record.update(_level_metrics(np.asarray(levels), error, maps, masks, labels, config))
    return {"metrics": record, "curve": curve.curve, "final_terms": curve.curve[-1],
            "train_seconds": train_seconds, "total_seconds": time.perf_counter() - started,
            "backend": jax.default_backend()}


def _level_metrics(levels: np.ndarray, error, maps: np.ndarray, masks: np.ndarray, labels: np.ndarray,
                   config) -> dict:
    """Per level: pixel AUROC of the smoothed 1 - cos map, mean 1 - cos on defect and on normal
    pixels; with a reconstruction error: its own pixel AUROC and the metrics of map + error."""
    import jax.numpy as jnp

    from rgpkd_jax import anomaly_maps
    from rgpkd_jax.metrics import summary
    from rgpkd_jax.metrics.auroc import roc_auc

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
        with_error = summary.compute_metrics(maps + error, masks, labels, fpr_limit=config.eval.fpr_limit,
                                             per_image_aupro=False)
        for k in ("image_auroc", "pixel_auroc", "aupro"):
            record[f"{k}_with_reconstruction"] = float(with_error[k])
    return record


def run_mean_feature(config, train_data: dict, test_data: dict) -> dict:
    """The map of a 'student' that outputs, at every position, the mean over the training images
    and positions of the teacher's feature at that level: a student that learnt nothing of the
    image. Where it scores below 0.5, an underfit student's map is anti-correlated with the defects."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from rgpkd_jax import anomaly_maps, teacher as teacher_lib
    from rgpkd_jax.metrics import summary
    from rgpkd_jax.models import build_model

    started = time.perf_counter()
    model = build_model(config, nnx.Rngs(config.seed))
    teacher_lib.load_into(model, config)
    graphdef, state = nnx.split(model.teacher)
    teacher = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    train_features = [teacher(state, jnp.asarray(train_data["image"][i:i + 16]))
                      for i in range(0, len(train_data["image"]), 16)]
    means = [jnp.mean(jnp.concatenate(level), axis=(0, 1, 2)) for level in zip(*train_features)]
    images, masks, labels = jnp.asarray(test_data["image"]), test_data["mask"], test_data["label"]
    test_features = teacher(state, images)
    student = [jnp.broadcast_to(m, t.shape) for m, t in zip(means, test_features)]
    maps = np.asarray(anomaly_maps.anomaly_map(test_features, student, images.shape[1:3],
                                               sigma=config.eval.sigma))
    metrics = summary.compute_metrics(maps, masks, labels, fpr_limit=config.eval.fpr_limit, per_image_aupro=False)
    record = {k: float(metrics[k]) for k in ("image_auroc", "pixel_auroc", "aupro")}
    levels = np.stack([np.asarray(anomaly_maps.upsample_align_corners(anomaly_maps.cosine_distance_map(t, s),
                                                                      images.shape[1:3]))
                       for t, s in zip(test_features, student)])
    record.update(_level_metrics(levels, None, maps, masks, labels, config))
    return {"metrics": record, "curve": [], "final_terms": {}, "train_seconds": 0.0,
            "total_seconds": time.perf_counter() - started, "backend": jax.default_backend()}


# --- tables -------------------------------------------------------------------------------------

def config_key(config) -> str:
    """What identifies a run: its whole resolved config (seed and category included) but where the
    data lies. A variant or a config file that changes makes its old runs stale, never reused."""
    resolved = config.to_dict()
    resolved["dataset"].pop("data_dir", None)
    return json.dumps(resolved, sort_keys=True, default=str)


def settings_of(*, epochs: int, image_size: int, batch_size: int, overrides: Sequence[str]) -> str:
    return json.dumps({"epochs": epochs, "image_size": image_size, "batch_size": batch_size,
                       "overrides": list(overrides)}, sort_keys=True)


TABLE_METRICS = ("image_auroc", "pixel_auroc", "aupro", "pixel_auroc_level1", "pixel_auroc_level2",
                 "pixel_auroc_level3", "distance_defect_level3", "distance_normal_level3",
                 "pixel_auroc_reconstruction_only", "pixel_auroc_with_reconstruction",
                 "aupro_with_reconstruction")


def summarise(runs: Sequence[dict], variants: Sequence[Variant]) -> list[dict]:
    """Per variant: mean and sample std (ddof 1) over every (category, seed) run, and per category."""
    rows = []
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant.name]
        if not mine:
            continue
        row = {"variant": variant.name, "description": variant.description,
               "overrides": list(variant.overrides), "runs": len(mine),
               "categories": sorted({r["category"] for r in mine}), "seeds": sorted({r["seed"] for r in mine}),
               "metrics": {}, "per_category": {}}
        values = {m: [r["metrics"][m] for r in mine if m in r["metrics"]] for m in TABLE_METRICS}
        values["final_distillation"] = [d for d in (_distillation(r["final_terms"]) for r in mine) if d is not None]
        for metric, v in values.items():
            if v:
                row["metrics"][metric] = {"mean": float(np.mean(v)),
                                          "std": float(np.std(v, ddof=1)) if len(v) > 1 else None, "n": len(v)}
        for category in row["categories"]:
            per = [r["metrics"] for r in mine if r["category"] == category]
            row["per_category"][category] = {m: float(np.mean([p[m] for p in per]))
                                             for m in ("image_auroc", "pixel_auroc", "aupro")}
        rows.append(row)
    return rows


def _distillation(terms: dict) -> float | None:
    """The distillation term, whatever the method calls it (RD4AD 'distillation', RGPKD 'distill');
    None for a run that trained nothing."""
    value = terms.get("distillation", terms.get("distill", terms.get("loss")))
    return None if value is None else float(value)


def _cell(cell: dict | None) -> str:
    if cell is None:
        return "–"
    if cell["std"] is None:
        return f"{cell['mean']:.3f}"
    return f"{cell['mean']:.3f} ± {cell['std']:.3f}"


def markdown(rows: Sequence[dict], settings: dict) -> str:
    columns = (("image AUROC", "image_auroc"), ("pixel AUROC", "pixel_auroc"), ("AU-PRO", "aupro"),
               ("pixel AUROC L1", "pixel_auroc_level1"), ("L2", "pixel_auroc_level2"),
               ("L3", "pixel_auroc_level3"), ("1-cos L3 defect", "distance_defect_level3"),
               ("1-cos L3 normal", "distance_normal_level3"), ("final distill loss", "final_distillation"),
               ("pixel AUROC rec. error only", "pixel_auroc_reconstruction_only"),
               ("pixel AUROC map + rec.", "pixel_auroc_with_reconstruction"),
               ("AU-PRO map + rec.", "aupro_with_reconstruction"))
    lines = [
        "# Sanity check between methods (random teacher: never a result on real data)", "",
        f"Embedded synthetic data, random ResNet18 teacher, {settings['image_size']} px, "
        f"{settings['epochs']} epochs, batch {settings['batch_size']}"
        + (f", overrides {settings['overrides']}" if settings["overrides"] else "")
        + ". Mean ± sample std over categories x seeds (n runs). AU-PRO is the official one (FPR 0.3).", "",
        "| variant | n | " + " | ".join(c for c, _ in columns) + " |",
        "|---|---|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(row["metrics"].get(key)) for _, key in columns]
        lines.append(f"| {row['variant']} | {row['runs']} | " + " | ".join(cells) + " |")
    lines += ["", "| variant | what it is | overrides | categories | seeds |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['description']} | {' '.join(row['overrides']) or '–'} | "
                     f"{', '.join(row['categories'])} | {', '.join(map(str, row['seeds']))} |")
    lines += ["", "Per category (mean over seeds): image AUROC / pixel AUROC / AU-PRO", "",
              "| variant | " + " | ".join(CATEGORIES) + " |", "|---|" + "---|" * len(CATEGORIES)]
    for row in rows:
        cells = []
        for category in CATEGORIES:
            per = row["per_category"].get(category)
            cells.append("–" if per is None else
                         f"{per['image_auroc']:.3f} / {per['pixel_auroc']:.3f} / {per['aupro']:.3f}")
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(output_dir: str, runs: Sequence[dict], variants: Sequence[Variant], settings: dict) -> dict:

    rows = summarise(runs, variants)
    board = {"settings": settings, "warning": "random teacher: a sanity check between methods, never a result",
             "rows": rows}
    files.write_json(os.path.join(output_dir, f"{TABLE_STEM}.json"), board)
    files.write_text(os.path.join(output_dir, f"{TABLE_STEM}.md"), markdown(rows, settings))
    return board


# --- command line -------------------------------------------------------------------------------

def _selected_variants(names: Sequence[str]) -> list[Variant]:
    by_name = {v.name: v for v in VARIANTS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise app.UsageError(f"--variants: unknown {unknown}; known: {list(VARIANT_NAMES)}")
    return [by_name[n] for n in names]


def run_benchmark(output_dir: str, variants: Sequence[Variant], categories: Sequence[str], seeds: Sequence[int],
                  *, epochs: int, image_size: int, batch_size: int, data_dir: str = "", arrays_dir: str = "",
                  overrides: Sequence[str] = (), log=print) -> dict:
    """Runs every (variant, category, seed) not yet in ``sanity_runs.jsonl``, then writes the tables."""
    os.makedirs(output_dir, exist_ok=True)
    arrays_dir = arrays_dir or os.path.join(output_dir, "arrays")
    runs_path = os.path.join(output_dir, RUNS_FILE)
    settings = settings_of(epochs=epochs, image_size=image_size, batch_size=batch_size, overrides=overrides)
    done = {(r["variant"], r["config_key"]) for r in files.read_json_lines(runs_path)}
    data: dict[tuple, tuple] = {}
    compiled: dict = {}
    jobs = [(v, c, s) for v in variants for c in categories for s in seeds]
    for number, (variant, category, seed) in enumerate(jobs, 1):
        name = f"{variant.name}/{category}/seed{seed}"
        config = make_config(variant, category, seed, epochs=epochs, image_size=image_size,
                             batch_size=batch_size, data_dir=data_dir, overrides=overrides)
        if (variant.name, config_key(config)) in done:
            continue
        if category not in data:
            data[category] = (load_split(config, "train", arrays_dir), load_split(config, "test", arrays_dir))
        if variant.kind == "mean_feature":
            result = run_mean_feature(config, *data[category])
        else:
            result = run_one(config, *data[category], compiled)
        run = {"variant": variant.name, "overrides": list(variant.overrides), "category": category,
               "seed": seed, "settings": settings, "config_key": config_key(config), **result}
        with open(runs_path, "a") as f:  # one line per run: an interrupted benchmark resumes
            f.write(json.dumps(run) + "\n")
        m = result["metrics"]
        distill = _distillation(result["final_terms"])
        log(f"[{number}/{len(jobs)}] {name}: image {m['image_auroc']:.3f} pixel {m['pixel_auroc']:.3f} "
            f"AU-PRO {m['aupro']:.3f}" + ("" if distill is None else f" distill {distill:.3f}")
            + f" ({result['total_seconds']:.0f} s)")
    return write_tables(output_dir, current_runs(runs_path, variants, categories, seeds, epochs=epochs,
                                                 image_size=image_size, batch_size=batch_size,
                                                 overrides=overrides), variants, json.loads(settings))


def current_runs(runs_path: str, variants: Sequence[Variant], categories: Sequence[str],
                 seeds: Sequence[int], **settings) -> list[dict]:
    """The recorded runs of these variants, categories and seeds whose config is what the variant
    and the config files make now (``settings``: epochs, image_size, batch_size, overrides)."""
    wanted = {(v.name, config_key(make_config(v, c, s, **settings)))
              for v in variants for c in categories for s in seeds}
    return [r for r in files.read_json_lines(runs_path) if (r["variant"], r.get("config_key")) in wanted]


def define_flags() -> None:
    """Only when run as a program: importing this module (tests, other tools) defines no flags."""
    flags.DEFINE_string("output_dir", None, "Where sanity_runs.jsonl, sanity.json and sanity.md go.")
    flags.DEFINE_list("variants", list(VARIANT_NAMES), f"Which variants, in this order: {VARIANT_NAMES}.")
    flags.DEFINE_list("categories", list(CATEGORIES), "Synthetic categories.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (model init, random teacher, data order).")
    flags.DEFINE_integer("epochs", 20, "Training epochs (60 training images: 3 steps of 16 each).")
    flags.DEFINE_integer("image_size", 128, "Image side (a multiple of 32).")
    flags.DEFINE_integer("batch_size", 16, "Training batch size.")
    flags.DEFINE_string("data_dir", "", "TFDS data dir of the synthetic dataset (default: the config's).")
    flags.DEFINE_string("arrays_dir", "", "Cache of the decoded splits as .npz (default: "
                        "<output_dir>/arrays); with every split there, no dataset is read.")
    flags.DEFINE_multi_string("overrides", [], "Extra key.sub=value overrides for every run.")
    flags.DEFINE_bool("table_only", False, "Only write the tables from sanity_runs.jsonl.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    if not f.output_dir:
        raise app.UsageError("--output_dir is required")
    from rgpkd_jax import cli

    cli.enable_compilation_cache()
    variants = _selected_variants(f.variants)
    unknown = [c for c in f.categories if c not in CATEGORIES]
    if unknown:
        raise app.UsageError(f"--categories: unknown {unknown}; known: {list(CATEGORIES)}")
    try:
        seeds = [int(s) for s in f.seeds]
    except ValueError:
        raise app.UsageError("--seeds: give whole numbers, e.g. --seeds=0,1,2") from None
    if f.image_size % 32:
        raise app.UsageError(f"--image_size={f.image_size}: RGPKD needs a multiple of 32")
    kwargs = dict(epochs=f.epochs, image_size=f.image_size, batch_size=f.batch_size)
    if f.table_only:
        runs = current_runs(os.path.join(f.output_dir, RUNS_FILE), variants, f.categories,
                            seeds, overrides=f.overrides, **kwargs)
        write_tables(f.output_dir, runs, variants,
                     json.loads(settings_of(overrides=f.overrides, **kwargs)))
    else:
        run_benchmark(f.output_dir, variants, f.categories, seeds, data_dir=f.data_dir,
                      arrays_dir=f.arrays_dir, overrides=f.overrides, **kwargs)
    print(f"wrote {TABLE_STEM}.md and {TABLE_STEM}.json to {f.output_dir}", flush=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
