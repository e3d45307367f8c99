"""The sanity check's tables: per variant and setting (per_category, unified) the mean and sample
std over every (category, seed) result, and per category; for a unified model with a prompt bank
its same-category retrieval fraction beside chance; written as `sanity.json` and `sanity.md`."""

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


def summarise(runs: Sequence[dict], variants: Sequence[Variant], setting_names: Sequence[str]) -> list[dict]:
    """Per variant and setting: mean and sample std (ddof 1) over every (category, seed) result (a
    unified run gives one per category), and per category; the retrieval fractions where recorded."""
    rows = []
    for variant in variants:
        for setting in setting_names:
            mine = [r for r in runs if r["variant"] == variant.name and r["setting"] == setting]
            if mine:
                rows.append(_row(variant, setting, mine))
    return rows


def _row(variant: Variant, setting: str, mine: Sequence[dict]) -> dict:
    results = [(category, metrics) for r in mine for category, metrics in r["category_metrics"].items()]
    row = {"variant": variant.name, "setting": setting, "description": variant.description,
           "overrides": list(variant.overrides), "runs": len(mine),
           "categories": sorted({c for c, _ in results}), "seeds": sorted({r["seed"] for r in mine}),
           "metrics": {}, "per_category": {}}
    values = {m: [metrics[m] for _, metrics in results if m in metrics] for m in TABLE_METRICS}
    # one final loss per trained model
    values["final_distillation"] = [d for d in (distillation(r["final_terms"]) for r in mine) if d is not None]
    for metric, v in values.items():
        if v:
            row["metrics"][metric] = _mean_std(v)
    for category in row["categories"]:
        per = [metrics for c, metrics in results if c == category]
        row["per_category"][category] = {m: float(np.mean([p[m] for p in per])) for m in SCORES}
    recorded = [r["retrieval"] for r in mine if "retrieval" in r]
    if recorded:
        groups = {c: [x["per_category"][c] for x in recorded] for c in recorded[0]["per_category"]}
        groups["overall"] = [x["overall"] for x in recorded]
        row["retrieval"] = {name: {"fraction": _mean_std([p["fraction"] for p in group]),
                                   "chance": float(np.mean([p["chance"] for p in group]))}
                            for name, group in groups.items()}
    return row


def _mean_std(values: Sequence[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "n": len(values)}


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
        + ". Settings: per_category (one model per category) and unified (one model on the union of the "
        "categories' training splits, scored on each category's test split alone). Mean ± sample std over "
        "categories x seeds (n results of m trained models). AU-PRO is the official one (FPR 0.3).", ""]
    lines += _side_by_side(rows)
    lines += ["", "| variant | setting | m | n | " + " | ".join(c for c, _ in columns) + " |",
              "|---|---|---|---|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(row["metrics"].get(key)) for _, key in columns]
        lines.append(f"| {row['variant']} | {row['setting']} | {row['runs']} | {row['metrics']['image_auroc']['n']} | "
                     + " | ".join(cells) + " |")
    lines += ["", "| variant | setting | what it is | overrides | categories | seeds |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['setting']} | {row['description']} | "
                     f"{' '.join(row['overrides']) or '–'} | {', '.join(row['categories'])} | "
                     f"{', '.join(map(str, row['seeds']))} |")
    lines += ["", "Per category (mean over seeds): image AUROC / pixel AUROC / AU-PRO", "",
              "| variant | setting | " + " | ".join(categories) + " |", "|---|---|" + "---|" * len(categories)]
    for row in rows:
        cells = []
        for category in categories:
            per = row["per_category"].get(category)
            cells.append("–" if per is None else
                         f"{per['image_auroc']:.3f} / {per['pixel_auroc']:.3f} / {per['aupro']:.3f}")
        lines.append(f"| {row['variant']} | {row['setting']} | " + " | ".join(cells) + " |")
    lines += _retrieval_table(rows, categories)
    return "\n".join(lines) + "\n"


def _side_by_side(rows: Sequence[dict]) -> list[str]:
    """One line per variant, a column group per setting: image AUROC, pixel AUROC, AU-PRO."""
    settings = list(dict.fromkeys(row["setting"] for row in rows))
    by_key = {(row["variant"], row["setting"]): row for row in rows}
    header = "| variant | " + " | ".join(f"{s}: {c}" for s in settings for c in ("image AUROC", "pixel AUROC", "AU-PRO"))
    lines = [header + " |", "|---|" + "---|" * (3 * len(settings))]
    for variant in dict.fromkeys(row["variant"] for row in rows):
        cells = [_cell(by_key[variant, s]["metrics"].get(m)) if (variant, s) in by_key else "–"
                 for s in settings for m in SCORES]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def _retrieval_table(rows: Sequence[dict], categories: Sequence[str]) -> list[str]:
    """Same-category top-1 retrieval of the models with a prompt bank in the unified setting."""
    with_retrieval = [row for row in rows if "retrieval" in row]
    if not with_retrieval:
        return []
    names = [*categories, "overall"]
    lines = ["", "Same-category retrieval (unified models with a prompt bank): fraction of top-1 prompts, on each "
             "category's test images, taken from that category's training images; mean ± std over seeds "
             "(chance: the category's share of the bank)", "",
             "| variant | setting | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for row in with_retrieval:
        cells = []
        for name in names:
            cell = row["retrieval"].get(name)
            cells.append("–" if cell is None else f"{_cell(cell['fraction'])} (chance {cell['chance']:.3f})")
        lines.append(f"| {row['variant']} | {row['setting']} | " + " | ".join(cells) + " |")
    return lines


def write_tables(output_dir: str, runs: Sequence[dict], variants: Sequence[Variant], setting_names: Sequence[str],
                 settings: dict) -> dict:
    """`sanity.json` and `sanity.md` of `runs` in `output_dir`; returns what the JSON holds."""
    rows = summarise(runs, variants, setting_names)
    board = {"settings": settings, "warning": "random teacher: a sanity check between methods, never a result",
             "rows": rows}
    files.write_json(os.path.join(output_dir, f"{TABLE_STEM}.json"), board)
    files.write_text(os.path.join(output_dir, f"{TABLE_STEM}.md"), markdown(rows, settings))
    return board
