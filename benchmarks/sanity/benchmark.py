"""The sanity benchmark: every (variant, category, seed) run not yet recorded, then the tables.

Every finished run is one line of `<output_dir>/sanity_runs.jsonl`, identified by its whole
resolved config: a rerun skips the runs already there (an interrupted benchmark resumes), and a
changed variant or config file makes its old runs stale, never reused.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Sequence

from benchmarks.sanity import data, run, tables
from benchmarks.sanity.variants import Variant
from rgpkd_jax import config_files, files

RUNS_FILE = "sanity_runs.jsonl"


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
    """`<config_dir>/<variant.config>.py` on synthetic/<category>, with the benchmark's shared settings."""
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


def run_benchmark(output_dir: str, variants: Sequence[Variant], categories: Sequence[str], seeds: Sequence[int],
                  settings: Settings, *, config_dir: str, data_dir: str = "", arrays_dir: str = "",
                  log: Callable[[str], None] = print) -> dict:
    """Runs every (variant, category, seed) not yet in ``sanity_runs.jsonl``, then writes the tables."""
    os.makedirs(output_dir, exist_ok=True)
    arrays_dir = arrays_dir or os.path.join(output_dir, "arrays")
    runs_path = os.path.join(output_dir, RUNS_FILE)
    done = {(r["variant"], r["config_key"]) for r in files.read_json_lines(runs_path)}
    splits: dict[str, tuple] = {}
    compiled: dict = {}
    jobs = [(v, c, s) for v in variants for c in categories for s in seeds]
    for number, (variant, category, seed) in enumerate(jobs, 1):
        config = make_config(variant, category, seed, settings, config_dir=config_dir, data_dir=data_dir)
        if (variant.name, config_key(config)) in done:
            continue
        if category not in splits:
            splits[category] = tuple(data.load_split(config, split, arrays_dir) for split in ("train", "test"))
        if variant.kind == "mean_feature":
            result = run.run_mean_feature(config, *splits[category])
        else:
            result = run.run_one(config, *splits[category], compiled)
        record = {"variant": variant.name, "overrides": list(variant.overrides), "category": category,
                  "seed": seed, "settings": settings.record(), "config_key": config_key(config), **result}
        with open(runs_path, "a") as f:  # one line per run: an interrupted benchmark resumes
            f.write(json.dumps(record) + "\n")
        m = result["metrics"]
        distill = tables.distillation(result["final_terms"])
        log(f"[{number}/{len(jobs)}] {variant.name}/{category}/seed{seed}: image {m['image_auroc']:.3f} "
            f"pixel {m['pixel_auroc']:.3f} AU-PRO {m['aupro']:.3f}"
            + ("" if distill is None else f" distill {distill:.3f}") + f" ({result['total_seconds']:.0f} s)")
    return write_tables(output_dir, variants, categories, seeds, settings, config_dir=config_dir)


def write_tables(output_dir: str, variants: Sequence[Variant], categories: Sequence[str], seeds: Sequence[int],
                 settings: Settings, *, config_dir: str) -> dict:
    """The tables of the recorded runs of these variants, categories and seeds whose config is what
    the variant and the config files make now."""
    wanted = {(v.name, config_key(make_config(v, c, s, settings, config_dir=config_dir)))
              for v in variants for c in categories for s in seeds}
    runs = [r for r in files.read_json_lines(os.path.join(output_dir, RUNS_FILE))
            if (r["variant"], r.get("config_key")) in wanted]
    return tables.write_tables(output_dir, runs, variants, settings.record())
