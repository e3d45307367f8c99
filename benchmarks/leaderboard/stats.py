"""The leaderboard's numbers: per category the mean and sample std over seeds, per dataset the mean
of the category means (std over the per-seed means), each beside its published counterpart.

Published numbers (`published`) stand beside the metric they were computed with, and
the difference is ours minus published, in points. A mean over an incomplete set of categories
gets no difference: it would compare different things.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from benchmarks.leaderboard import jobs as jobs_lib
from benchmarks.leaderboard import published
from rgpkd_jax.metrics.summary import METRIC_LABELS

# Every metric the evaluator writes, in its report order: the field's seven, their mean mAD, AUPIMO,
# then the RD4AD code's per-image AUPRO (the one the method papers publish as "PRO").
METRICS = tuple(METRIC_LABELS.items())
METRIC_NAMES = tuple(METRIC_LABELS)
MEAN = "mean"
NO_PROTOCOL = "not recorded"  # results written before eval_metrics.json carried its protocol


def is_random_teacher(data: dict) -> bool:
    return (data.get("teacher") or {}).get("weights") == "random" or bool(data.get("warning"))


def protocol_text(protocol: dict | None) -> str:
    """One line for the evaluation protocol a job recorded (docs/protocol.md), every key shown."""
    if not protocol:
        return NO_PROTOCOL
    return ", ".join(f"{key} {json.dumps(value)}" for key, value in protocol.items())


def setting_order(dataset_and_setting: tuple[str, str]) -> tuple[str, int]:
    """Sorts (dataset, setting) pairs by dataset, per-category before unified."""
    dataset, setting = dataset_and_setting
    return dataset, published.SETTINGS.index(setting)


def _stats(values: Sequence[float]) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else None,
            "n": int(len(values))}


def dataset_categories(dataset: str, seen: Sequence[str]) -> tuple[str, ...]:
    try:
        known = jobs_lib.categories(dataset)
    except ValueError:
        return tuple(sorted(set(seen)))
    return known + tuple(sorted(set(seen) - set(known)))


def _scopes(dataset: str, all_categories: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """The summary scopes of a dataset: `mean` over every category, then the published sub-groups."""
    groups = published.GROUPS.get(dataset, {})
    return [(MEAN, tuple(all_categories))] + [(f"{MEAN}/{g}", cats) for g, cats in groups.items()]


def _published_value(method: str, variant: str, dataset: str, setting: str, scope: str, metric: str):
    """(percent, reference key) of the primary published number of the same setting (a unified
    number never stands beside a per-category run, nor the reverse), or (None, None)."""
    if variant:  # ablations have no published counterpart
        return None, None
    for ref in published.references(method=method, dataset=dataset, primary=True, setting=setting):
        value = ref.values.get(metric, {}).get(scope)
        if value is not None:
            return value, ref.key
    return None, None


def _with_published(cell: dict, method, variant, dataset, setting, scope, metric, comparable=True) -> dict:
    value, key = _published_value(method, variant, dataset, setting, scope, metric)
    cell["published_percent"] = value
    cell["published_reference"] = key
    cell["diff_points"] = (100 * cell["mean"] - value) if value is not None and comparable else None
    return cell


def build_rows(results: list[dict]) -> list[dict]:
    """One row per (dataset, setting, category, method+variant), metrics aggregated over seeds."""
    grouped: dict[tuple, list[dict]] = {}
    for entry in results:
        s = entry["spec"]
        grouped.setdefault((s["dataset"], s["setting"], s["category"], s["method"], s["variant"]), []).append(entry)
    rows = []
    for (dataset, setting, category, method, variant), entries in grouped.items():
        entries.sort(key=lambda e: e["spec"]["seed"])
        metrics = {}
        for metric in METRIC_NAMES:
            per_seed = {e["spec"]["seed"]: e["data"]["metrics"][metric]
                        for e in entries if metric in e["data"].get("metrics", {})}
            if per_seed:
                cell = {"per_seed": per_seed, **_stats(list(per_seed.values()))}
                metrics[metric] = _with_published(cell, method, variant, dataset, setting, category, metric)
        rows.append({
            "dataset": dataset, "setting": setting, "category": category, "method": method, "variant": variant,
            "method_label": f"{method}+{variant}" if variant else method,
            "seeds": [e["spec"]["seed"] for e in entries],
            "random_teacher": any(is_random_teacher(e["data"]) for e in entries),
            "warnings": sorted({e["data"]["warning"] for e in entries if e["data"].get("warning")}),
            "files": [e["path"] for e in entries],
            # distinct over seeds: a row whose seeds were evaluated differently shows each
            "protocols": list(dict.fromkeys(protocol_text(e["data"].get("protocol")) for e in entries)),
            "metrics": metrics,
        })
    return rows


def build_summaries(rows: list[dict]) -> list[dict]:
    """Per dataset, setting and method: the mean over categories (and sub-groups), with its std over seeds."""
    summaries = []
    for dataset, setting in sorted({(r["dataset"], r["setting"]) for r in rows}, key=setting_order):
        in_dataset = [r for r in rows if (r["dataset"], r["setting"]) == (dataset, setting)]
        all_categories = dataset_categories(dataset, [r["category"] for r in in_dataset])
        for label in sorted({r["method_label"] for r in in_dataset}):
            by_category = {r["category"]: r for r in in_dataset if r["method_label"] == label}
            any_row = next(iter(by_category.values()))
            for scope, scope_categories in _scopes(dataset, all_categories):
                metrics = {}
                for metric in METRIC_NAMES:
                    cells = {c: by_category[c]["metrics"][metric] for c in scope_categories
                             if c in by_category and metric in by_category[c]["metrics"]}
                    if not cells:
                        continue
                    common = set.intersection(*(set(cell["per_seed"]) for cell in cells.values()))
                    per_seed = {s: float(np.mean([cell["per_seed"][s] for cell in cells.values()]))
                                for s in sorted(common)}
                    complete = len(cells) == len(scope_categories)
                    cell = {
                        "mean": float(np.mean([cell["mean"] for cell in cells.values()])),
                        "std": _stats(list(per_seed.values()))["std"] if per_seed else None,
                        "per_seed": per_seed, "n": len(per_seed),
                        "categories": sorted(cells), "num_categories": len(cells),
                        "total_categories": len(scope_categories), "complete": complete,
                    }
                    metrics[metric] = _with_published(cell, any_row["method"], any_row["variant"], dataset,
                                                      setting, scope, metric, comparable=complete)
                if metrics:
                    summaries.append({
                        "dataset": dataset, "setting": setting, "scope": scope, "method": any_row["method"],
                        "variant": any_row["variant"], "method_label": label,
                        "random_teacher": any(r["random_teacher"] for r in by_category.values()),
                        "protocols": list(dict.fromkeys(p for c in scope_categories if c in by_category
                                                        for p in by_category[c]["protocols"])),
                        "metrics": metrics})
    return summaries


def build_secondary(rows: list[dict], summaries: list[dict]) -> list[dict]:
    """Our default-variant numbers beside every non-primary published reference of their setting."""
    ours = {(r["dataset"], r["setting"], r["category"], r["method_label"]): r for r in rows}
    ours.update({(s["dataset"], s["setting"], s["scope"], s["method_label"]): s for s in summaries})
    comparisons = []
    for ref in published.references(primary=False):
        for metric, values in ref.values.items():
            for scope, value in values.items():
                mine = ours.get((ref.dataset, ref.setting, scope, ref.method), {}).get("metrics", {}).get(metric)
                if mine is None:
                    continue
                comparable = mine.get("complete", True)
                comparisons.append({
                    "reference": ref.key, "dataset": ref.dataset, "setting": ref.setting, "method": ref.method, "scope": scope,
                    "metric": metric, "published_percent": value, "mean": mine["mean"], "std": mine["std"],
                    "diff_points": 100 * mine["mean"] - value if comparable else None})
    return comparisons
