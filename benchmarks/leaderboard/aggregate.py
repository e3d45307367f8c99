"""Turns finished job workdirs into `leaderboard.{md,csv,json}`, `complexity.csv` and one plot per dataset.

Every number of ours comes from a job's `eval_metrics.json` (or `complexity.json`), read here
(`collect`); per category, the mean and sample standard deviation (ddof=1) over seeds; per dataset
(and MVTec AD textures / objects), the mean of the category means, with the standard deviation over
seeds of the per-seed means of the seeds every category has (`stats`). Tables are written by
`tables`, plots by `plots`.
"""

from __future__ import annotations

import datetime
import os
from typing import Sequence

from benchmarks.leaderboard import jobs as jobs_lib
from benchmarks.leaderboard import plots as plots_lib
from benchmarks.leaderboard import published, stats, tables
from rgpkd_jax import files
from rgpkd_jax.data import unified


def collect(root: str) -> dict[str, list[dict]]:
    """Every job workdir under `<root>/jobs`: {'results', 'complexity', 'failed'}, each a list of
    {'spec', 'path', 'data'}, sorted by job name. A unified job's results are one entry per category
    (its `categories/<category>/eval_metrics.json`, the spec's category set to it), so both settings
    are read the same way from here on."""
    found = {"results": [], "complexity": [], "failed": []}
    for directory, _, names in os.walk(os.path.join(root, "jobs")):
        if jobs_lib.SPEC_FILE not in names:
            continue
        spec = jobs_lib.read_json(os.path.join(directory, jobs_lib.SPEC_FILE))
        result_file = jobs_lib.result_file(spec["kind"])
        if result_file in names:
            path = os.path.join(directory, result_file)
            entry = {"spec": spec, "path": path, "data": jobs_lib.read_json(path)}
            if spec["kind"] == jobs_lib.COMPLEXITY:
                found["complexity"].append(entry)
            else:
                found["results"] += per_category_entries(entry)
        elif jobs_lib.ERROR_FILE in names:
            path = os.path.join(directory, jobs_lib.ERROR_FILE)
            found["failed"].append({"spec": spec, "path": path, "data": jobs_lib.read_json(path)})
    for entries in found.values():
        entries.sort(key=lambda e: e["spec"]["name"])
    return found


def per_category_entries(entry: dict) -> list[dict]:
    """A result entry as one entry per category: itself for a per-category job; a unified job's
    categories, each from its own file."""
    spec = {"setting": unified.PER_CATEGORY, **entry["spec"]}
    if spec["setting"] != unified.UNIFIED:
        entry = dict(entry, spec=spec)
        _check_matches_spec(entry)
        return [entry]
    entries = []
    for category in entry["data"]["categories"]:
        path = os.path.join(os.path.dirname(entry["path"]), unified.CATEGORIES_DIR, category, jobs_lib.METRICS_FILE)
        data = jobs_lib.read_json(path)
        if data is None:
            raise ValueError(f"{path} is missing but {entry['path']} lists category {category!r}: the unified "
                             "job's evaluation was cut short; delete its eval_metrics.json and rerun the job")
        part = {"spec": dict(spec, category=category), "path": path, "data": data}
        _check_matches_spec(part)
        entries.append(part)
    return entries


def _check_matches_spec(entry: dict) -> None:
    spec, data = entry["spec"], entry["data"]
    for key in ("dataset", "category", "method", "setting"):
        if key in data and data[key] != spec[key]:
            raise ValueError(f"{entry['path']} says {key}={data[key]!r} but its job.json says {spec[key]!r}; "
                             "the workdir was reused for another run: delete it and rerun that job")


def build_complexity(entries: list[dict]) -> list[dict]:
    return [{"model": e["spec"]["name"].split("/", 1)[1], "file": e["path"], **e["data"]} for e in entries]


def build_failed(entries: list[dict]) -> list[dict]:
    return [{"job": e["spec"]["name"], "type": e["data"].get("type"), "message": e["data"].get("message"),
             "file": e["path"]} for e in entries]


def sorted_rows(rows: list[dict]) -> list[dict]:
    """Rows by dataset, setting (per category first), the dataset's category order, method."""
    order = {d: {c: i for i, c in enumerate(stats.dataset_categories(d, [r["category"] for r in rows if r["dataset"] == d]))}
             for d in {r["dataset"] for r in rows}}
    return sorted(rows, key=lambda r: (*stats.setting_order((r["dataset"], r["setting"])),
                                       order[r["dataset"]][r["category"]], r["method_label"]))


def aggregate(root: str, output_dir: str | None = None, *, pending: Sequence[str] = (),
              plots: bool = True) -> dict:
    """Reads `<root>/jobs` and writes the leaderboard files into `output_dir` (default `root`)."""
    output_dir = output_dir or root
    found = collect(root)
    rows = sorted_rows(stats.build_rows(found["results"]))
    summaries = stats.build_summaries(rows)
    board = {
        "generated_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workdir": os.path.abspath(root),
        "units": "mean/std/per_seed: fractions as in eval_metrics.json; published_percent: percent as "
                 "printed; diff_points: 100*mean - published_percent",
        "std": "sample standard deviation over seeds (ddof=1); null with one seed",
        "rows": rows, "summaries": summaries,
        "secondary": stats.build_secondary(rows, summaries),
        "complexity": build_complexity(found["complexity"]),
        "failed": build_failed(found["failed"]),
        "pending": list(pending),
        "references": [{"key": r.key, "title": r.title, "method": r.method, "dataset": r.dataset,
                        "primary": r.primary, "setting": r.setting, "source": r.source, "caveat": r.caveat}
                       for r in published.references()],
    }
    os.makedirs(output_dir, exist_ok=True)
    board["plots"] = plots_lib.write_plots(rows, summaries, output_dir) if plots else []
    files.write_json(os.path.join(output_dir, "leaderboard.json"), board)
    files.write_text(os.path.join(output_dir, "leaderboard.csv"), tables.leaderboard_csv(rows, summaries))
    files.write_text(os.path.join(output_dir, "complexity.csv"), tables.complexity_csv(board["complexity"]))
    files.write_text(os.path.join(output_dir, "leaderboard.md"), tables.markdown(board))
    return board
