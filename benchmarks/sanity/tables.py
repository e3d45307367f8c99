"""The sanity check's tables: per variant the mean and sample std over every (category, seed) run,
and per category; written as `sanity.json` and `sanity.md`."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from benchmarks.sanity.run import SCORES
from benchmarks.sanity.variants import Variant
from rgpkd_jax import files
from rgpkd_jax.data import synthetic

TABLE_STEM = "sanity"
TABLE_METRICS = (*SCORES, "pixel_auroc_level1", "pixel_auroc_level2", "pixel_auroc_level3",
                 "distance_defect_level3", "distance_normal_level3", "pixel_auroc_reconstruction_only",
                 "pixel_auroc_with_reconstruction", "aupro_with_reconstruction")


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
        values["final_distillation"] = [d for d in (distillation(r["final_terms"]) for r in mine) if d is not None]
        for metric, v in values.items():
            if v:
                row["metrics"][metric] = {"mean": float(np.mean(v)),
                                          "std": float(np.std(v, ddof=1)) if len(v) > 1 else None, "n": len(v)}
        for category in row["categories"]:
            per = [r["metrics"] for r in mine if r["category"] == category]
            row["per_category"][category] = {m: float(np.mean([p[m] for p in per])) for m in SCORES}
        rows.append(row)
    return rows


def distillation(terms: dict) -> float | None:
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
    categories = synthetic.CATEGORIES
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
              "| variant | " + " | ".join(categories) + " |", "|---|" + "---|" * len(categories)]
    for row in rows:
        cells = []
        for category in categories:
            per = row["per_category"].get(category)
            cells.append("–" if per is None else
                         f"{per['image_auroc']:.3f} / {per['pixel_auroc']:.3f} / {per['aupro']:.3f}")
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(output_dir: str, runs: Sequence[dict], variants: Sequence[Variant], settings: dict) -> dict:
    """`sanity.json` and `sanity.md` of `runs` in `output_dir`; returns what the JSON holds."""
    rows = summarise(runs, variants)
    board = {"settings": settings, "warning": "random teacher: a sanity check between methods, never a result",
             "rows": rows}
    files.write_json(os.path.join(output_dir, f"{TABLE_STEM}.json"), board)
    files.write_text(os.path.join(output_dir, f"{TABLE_STEM}.md"), markdown(rows, settings))
    return board
