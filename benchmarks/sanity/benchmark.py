"""The sanity benchmark: every (variant, setting, category, seed) run not yet recorded, then the tables.

Two settings (issue 22, docs/unified.md): ``per_category`` trains one model per category;
``unified`` trains one model on the union of the chosen categories' training splits (a fresh
permutation of the union per epoch, as the pipeline's natural sampling) and scores it on each
category's test split alone. Every finished run is one line of `<output_dir>/sanity_runs.jsonl`, identified by its whole
resolved config: a rerun skips the runs already there (an interrupted benchmark resumes), and a
changed variant or config file makes its old runs stale, never reused.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Sequence

import numpy as np

from benchmarks.sanity import data, run, tables
from benchmarks.sanity.variants import Variant
from rgpkd_jax import config_files, files
from rgpkd_jax.data import unified

RUNS_FILE = "sanity_runs.jsonl"
SETTINGS = unified.SETTINGS



@dataclasses.dataclass(frozen=True)
class Settings:
    """What every run of one benchmark shares: 20 epochs at 128 px by default, a random ResNet18
    teacher, and the user's overrides after the variant's."""
    epochs: int = 20
    image_size: int = 128
    batch_size: int = 16
    overrides: tuple[str, ...] = ()

    def record(self) -> dict:
        return {"epochs": self.epochs, "image_size": self.image_size, "batch_size": self.batch_size,
                "overrides": list(self.overrides)}


def make_config(variant: Variant, category: str, seed: int, settings: Settings, *, config_dir: str,
                data_dir: str = ""):
    """`<config_dir>/<variant.config>.py` on synthetic/<category> (one, or several joined by '+': the
    unified setting), with the benchmark's shared settings."""
    shared = [f"seed={seed}", f"dataset.image_size={settings.image_size}", "teacher.arch=resnet18",
              "teacher.weights=random", f"train.epochs={settings.epochs}", f"train.batch_size={settings.batch_size}",
              "eval.num_visualise=0", "eval.rd4ad_per_image_aupro=False"]
    if data_dir:
        shared.append(f"dataset.data_dir={data_dir}")
    return config_files.load_config(f"{os.path.join(config_dir, variant.config)}.py:synthetic/{category}",
                                    shared + list(variant.overrides) + list(settings.overrides))


def config_key(config) -> str:
    """What identifies a run: its whole resolved config (seed and category included) but where the
    data lies."""
    resolved = config.to_dict()
    resolved["dataset"].pop("data_dir", None)
    return json.dumps(resolved, sort_keys=True, default=str)


def _jobs(variants: Sequence[Variant], categories: Sequence[str], seeds: Sequence[int],
          setting_names: Sequence[str]) -> list[tuple[Variant, str, str, int]]:
    """(variant, setting, dataset.category, seed) of every run: per category one run per category
    and seed; unified one run per seed on every category at once."""
    if unified.UNIFIED in setting_names and len(categories) < 2:
        raise ValueError(f"--settings={unified.UNIFIED} trains on several categories: give at least two "
                         f"--categories (got {list(categories)})")
    jobs = []
    for variant in variants:
        for setting in setting_names:
            names = categories if setting == unified.PER_CATEGORY else [unified.SEPARATOR.join(categories)]
            jobs += [(variant, setting, name, seed) for name in names for seed in seeds]
    return jobs


def _mean_over_categories(category_metrics: dict[str, dict]) -> dict[str, float]:
    """The metrics every category has, averaged over the categories (as a unified run's
    eval_metrics.json holds the means of its categories/<c>/ files)."""
    per = list(category_metrics.values())
    return {k: float(np.mean([m[k] for m in per])) for k in per[0] if all(k in m for m in per)}


def _log_line(variant: Variant, setting: str, category: str, seed: int, result: dict) -> str:
    m = result["metrics"]
    distill = tables.distillation(result["final_terms"])
    line = (f"{variant.name}/{setting}/{category}/seed{seed}: image {m['image_auroc']:.3f} pixel {m['pixel_auroc']:.3f} "
            f"AU-PRO {m['aupro']:.3f}" + ("" if distill is None else f" distill {distill:.3f}"))
    if "retrieval" in result:
        overall = result["retrieval"]["overall"]
        line += f" same-category retrieval {overall['fraction']:.3f} (chance {overall['chance']:.3f})"
    return line + f" ({result['total_seconds']:.0f} s)"


def run_benchmark(output_dir: str, variants: Sequence[Variant], categories: Sequence[str], seeds: Sequence[int],
                  settings: Settings, *, config_dir: str, data_dir: str = "", arrays_dir: str = "",
                  setting_names: Sequence[str] = SETTINGS, log: Callable[[str], None] = print) -> dict:
    """Runs every (variant, setting, category, seed) not yet in ``sanity_runs.jsonl``, then writes the tables."""
    jobs = _jobs(variants, categories, seeds, setting_names)
    os.makedirs(output_dir, exist_ok=True)
    arrays_dir = arrays_dir or os.path.join(output_dir, "arrays")
    runs_path = os.path.join(output_dir, RUNS_FILE)
    done = {(r["variant"], r["config_key"]) for r in files.read_json_lines(runs_path)}
    splits: dict[str, tuple] = {}
    compiled: dict = {}
    for number, (variant, setting, category, seed) in enumerate(jobs, 1):
        config = make_config(variant, category, seed, settings, config_dir=config_dir, data_dir=data_dir)
        if (variant.name, config_key(config)) in done:
            continue
        names = unified.category_names(config)
        for name in names:
            if name not in splits:
                single = unified.for_category(config, name)
                splits[name] = tuple(data.load_split(single, split, arrays_dir) for split in ("train", "test"))
        tests = {name: splits[name][1] for name in names}
        union = None
        if setting == unified.UNIFIED:
            train_data, union = data.union_split({name: splits[name][0] for name in names})
        else:
            train_data = splits[category][0]
        if variant.kind == "mean_feature":
            result = run.run_mean_feature(config, train_data, tests)
        else:
            result = run.run_one(config, train_data, tests, compiled, union=union)
        result["metrics"] = _mean_over_categories(result["category_metrics"])
        record = {"variant": variant.name, "setting": setting, "overrides": list(variant.overrides),
                  "category": category, "seed": seed, "settings": settings.record(),
                  "config_key": config_key(config), **result}
        with open(runs_path, "a") as f:  # one line per run: an interrupted benchmark resumes
            f.write(json.dumps(record) + "\n")
        log(f"[{number}/{len(jobs)}] " + _log_line(variant, setting, category, seed, result))
    return write_tables(output_dir, variants, categories, seeds, settings, config_dir=config_dir,
                        setting_names=setting_names)


def write_tables(output_dir: str, variants: Sequence[Variant], categories: Sequence[str], seeds: Sequence[int],
                 settings: Settings, *, config_dir: str, setting_names: Sequence[str] = SETTINGS) -> dict:
    """The tables of the recorded runs of these variants, settings, categories and seeds whose
    config is what the variant and the config files make now."""
    wanted = {(v.name, config_key(make_config(v, c, s, settings, config_dir=config_dir)))
              for v, _, c, s in _jobs(variants, categories, seeds, setting_names)}
    runs = [r for r in files.read_json_lines(os.path.join(output_dir, RUNS_FILE))
            if (r["variant"], r.get("config_key")) in wanted]
    return tables.write_tables(output_dir, runs, variants, setting_names, settings.record())
