"""Turns finished job workdirs into `leaderboard.{md,csv,json}`, `complexity.csv` and one plot per dataset.

Every number of ours comes from a job's `eval_metrics.json` (or `complexity.json`): per category,
the mean and sample standard deviation (ddof=1) over seeds; per dataset (and MVTec AD textures /
objects), the mean of the category means, with the standard deviation over seeds of the per-seed
means of the seeds every category has. Published numbers (`benchmarks.published`) stand beside the
metric they were computed with, and the difference is ours minus published, in points. A mean over
an incomplete set of categories gets no difference: it would compare different things.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
from typing import Sequence

import numpy as np

from benchmarks import jobs as jobs_lib
from benchmarks import published

METRICS = (
    ("image_auroc", "Image AUROC"),
    ("pixel_auroc", "Pixel AUROC"),
    ("aupro", "AU-PRO (official)"),
    ("aupro_rd4ad_per_image", "AUPRO (RD4AD per-image)"),
)
METRIC_NAMES = tuple(m for m, _ in METRICS)
RANDOM_TEACHER_MARK = "random teacher — not a result"
MEAN = "mean"


# --- reading job workdirs ----------------------------------------------------------------------

def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def collect(root: str) -> dict[str, list[dict]]:
    """Every job workdir under `<root>/jobs`: {'results', 'complexity', 'failed'}, each a list of
    {'spec', 'path', 'data'}, sorted by job name."""
    found = {"results": [], "complexity": [], "failed": []}
    for directory, _, files in os.walk(os.path.join(root, "jobs")):
        if jobs_lib.SPEC_FILE not in files:
            continue
        spec = _load(os.path.join(directory, jobs_lib.SPEC_FILE))
        result_file = jobs_lib.COMPLEXITY_FILE if spec["kind"] == jobs_lib.COMPLEXITY else jobs_lib.METRICS_FILE
        if result_file in files:
            path = os.path.join(directory, result_file)
            entry = {"spec": spec, "path": path, "data": _load(path)}
            if spec["kind"] == jobs_lib.COMPLEXITY:
                found["complexity"].append(entry)
            else:
                _check_matches_spec(entry)
                found["results"].append(entry)
        elif jobs_lib.ERROR_FILE in files:
            path = os.path.join(directory, jobs_lib.ERROR_FILE)
            found["failed"].append({"spec": spec, "path": path, "data": _load(path)})
    for entries in found.values():
        entries.sort(key=lambda e: e["spec"]["name"])
    return found


def _check_matches_spec(entry: dict) -> None:
    spec, data = entry["spec"], entry["data"]
    for key in ("dataset", "category", "method"):
        if key in data and data[key] != spec[key]:
            raise ValueError(f"{entry['path']} says {key}={data[key]!r} but its job.json says {spec[key]!r}; "
                             "the workdir was reused for another run: delete it and rerun that job")


def _is_random_teacher(data: dict) -> bool:
    return (data.get("teacher") or {}).get("weights") == "random" or bool(data.get("warning"))


# --- statistics --------------------------------------------------------------------------------

def _stats(values: Sequence[float]) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else None,
            "n": int(len(values))}


def _dataset_categories(dataset: str, seen: Sequence[str]) -> tuple[str, ...]:
    try:
        known = jobs_lib.categories(dataset)
    except ValueError:
        return tuple(sorted(set(seen)))
    return known + tuple(sorted(set(seen) - set(known)))


def _scopes(dataset: str, all_categories: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """The summary scopes of a dataset: `mean` over every category, then the published sub-groups."""
    groups = published.GROUPS.get(dataset, {})
    return [(MEAN, tuple(all_categories))] + [(f"{MEAN}/{g}", cats) for g, cats in groups.items()]


def _published_value(method: str, variant: str, dataset: str, scope: str, metric: str):
    """(percent, reference key) of the primary published number, or (None, None)."""
    if variant:  # ablations have no published counterpart
        return None, None
    for ref in published.references(method=method, dataset=dataset, primary=True):
        value = ref.values.get(metric, {}).get(scope)
        if value is not None:
            return value, ref.key
    return None, None


def _with_published(cell: dict, method, variant, dataset, scope, metric, comparable=True) -> dict:
    value, key = _published_value(method, variant, dataset, scope, metric)
    cell["published_percent"] = value
    cell["published_reference"] = key
    cell["diff_points"] = (100 * cell["mean"] - value) if value is not None and comparable else None
    return cell


def build_rows(results: list[dict]) -> list[dict]:
    """One row per (dataset, category, method+variant), metrics aggregated over seeds."""
    grouped: dict[tuple, list[dict]] = {}
    for entry in results:
        s = entry["spec"]
        grouped.setdefault((s["dataset"], s["category"], s["method"], s["variant"]), []).append(entry)
    rows = []
    for (dataset, category, method, variant), entries in grouped.items():
        entries.sort(key=lambda e: e["spec"]["seed"])
        metrics = {}
        for metric in METRIC_NAMES:
            per_seed = {e["spec"]["seed"]: e["data"]["metrics"][metric]
                        for e in entries if metric in e["data"].get("metrics", {})}
            if per_seed:
                cell = {"per_seed": per_seed, **_stats(list(per_seed.values()))}
                metrics[metric] = _with_published(cell, method, variant, dataset, category, metric)
        rows.append({
            "dataset": dataset, "category": category, "method": method, "variant": variant,
            "method_label": f"{method}+{variant}" if variant else method,
            "seeds": [e["spec"]["seed"] for e in entries],
            "random_teacher": any(_is_random_teacher(e["data"]) for e in entries),
            "warnings": sorted({e["data"]["warning"] for e in entries if e["data"].get("warning")}),
            "files": [e["path"] for e in entries],
            "metrics": metrics,
        })
    return rows


def build_summaries(rows: list[dict]) -> list[dict]:
    """Per dataset and method: the mean over categories (and sub-groups), with its std over seeds."""
    summaries = []
    for dataset in sorted({r["dataset"] for r in rows}):
        in_dataset = [r for r in rows if r["dataset"] == dataset]
        all_categories = _dataset_categories(dataset, [r["category"] for r in in_dataset])
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
                                                      scope, metric, comparable=complete)
                if metrics:
                    summaries.append({
                        "dataset": dataset, "scope": scope, "method": any_row["method"],
                        "variant": any_row["variant"], "method_label": label,
                        "random_teacher": any(r["random_teacher"] for r in by_category.values()),
                        "metrics": metrics})
    return summaries


def build_secondary(rows: list[dict], summaries: list[dict]) -> list[dict]:
    """Our default-variant numbers beside every non-primary published reference."""
    ours = {(r["dataset"], r["category"], r["method_label"]): r for r in rows}
    ours.update({(s["dataset"], s["scope"], s["method_label"]): s for s in summaries})
    comparisons = []
    for ref in published.references(primary=False):
        for metric, values in ref.values.items():
            for scope, value in values.items():
                mine = ours.get((ref.dataset, scope, ref.method), {}).get("metrics", {}).get(metric)
                if mine is None:
                    continue
                comparable = mine.get("complete", True)
                comparisons.append({
                    "reference": ref.key, "dataset": ref.dataset, "method": ref.method, "scope": scope,
                    "metric": metric, "published_percent": value, "mean": mine["mean"], "std": mine["std"],
                    "diff_points": 100 * mine["mean"] - value if comparable else None})
    return comparisons


def build_complexity(entries: list[dict]) -> list[dict]:
    return [{"model": e["spec"]["name"].split("/", 1)[1], "file": e["path"], **e["data"]} for e in entries]


def build_failed(entries: list[dict]) -> list[dict]:
    return [{"job": e["spec"]["name"], "type": e["data"].get("type"), "message": e["data"].get("message"),
             "file": e["path"]} for e in entries]


def aggregate(root: str, output_dir: str | None = None, *, pending: Sequence[str] = (),
              plots: bool = True) -> dict:
    """Reads `<root>/jobs` and writes the leaderboard files into `output_dir` (default `root`)."""
    output_dir = output_dir or root
    found = collect(root)
    rows = build_rows(found["results"])
    summaries = build_summaries(rows)
    order = {d: {c: i for i, c in enumerate(_dataset_categories(d, [r["category"] for r in rows if r["dataset"] == d]))}
             for d in {r["dataset"] for r in rows}}
    rows.sort(key=lambda r: (r["dataset"], order[r["dataset"]][r["category"]], r["method_label"]))
    board = {
        "generated_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workdir": os.path.abspath(root),
        "units": "mean/std/per_seed: fractions as in eval_metrics.json; published_percent: percent as "
                 "printed; diff_points: 100*mean - published_percent",
        "std": "sample standard deviation over seeds (ddof=1); null with one seed",
        "rows": rows, "summaries": summaries,
        "secondary": build_secondary(rows, summaries),
        "complexity": build_complexity(found["complexity"]),
        "failed": build_failed(found["failed"]),
        "pending": list(pending),
        "references": [{"key": r.key, "title": r.title, "method": r.method, "dataset": r.dataset,
                        "primary": r.primary, "source": r.source, "caveat": r.caveat} for r in published.REFERENCES],
    }
    os.makedirs(output_dir, exist_ok=True)
    board["plots"] = write_plots(rows, summaries, output_dir) if plots else []
    jobs_lib.write_json(os.path.join(output_dir, "leaderboard.json"), board)
    _write_text(os.path.join(output_dir, "leaderboard.csv"), leaderboard_csv(rows, summaries))
    _write_text(os.path.join(output_dir, "complexity.csv"), complexity_csv(board["complexity"]))
    _write_text(os.path.join(output_dir, "leaderboard.md"), markdown(board))
    return board


def _write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


# --- CSV -----------------------------------------------------------------------------------------

CSV_COLUMNS = ("dataset", "scope", "method", "variant", "metric", "mean", "std", "n_seeds", "per_seed",
               "num_categories", "total_categories", "published_percent", "published_reference",
               "diff_points", "random_teacher")


def leaderboard_csv(rows: list[dict], summaries: list[dict]) -> str:
    """Tidy: one line per (dataset, category or summary scope, method+variant, metric)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    records = [(r, r["category"]) for r in rows] + [(s, s["scope"]) for s in summaries]
    for record, scope in records:
        for metric, cell in record["metrics"].items():
            writer.writerow({
                "dataset": record["dataset"], "scope": scope, "method": record["method"],
                "variant": record["variant"], "metric": metric, "mean": repr(cell["mean"]),
                "std": "" if cell["std"] is None else repr(cell["std"]), "n_seeds": cell["n"],
                "per_seed": ";".join(f"{s}:{v!r}" for s, v in cell["per_seed"].items()),
                "num_categories": cell.get("num_categories", 1), "total_categories": cell.get("total_categories", 1),
                "published_percent": "" if cell["published_percent"] is None else cell["published_percent"],
                "published_reference": cell["published_reference"] or "",
                "diff_points": "" if cell["diff_points"] is None else repr(cell["diff_points"]),
                "random_teacher": record["random_teacher"]})
    return out.getvalue()


COMPLEXITY_COLUMNS = ("model", "image_size", "params_trainable", "params_frozen", "gflops_per_image_inference",
                      "gflops_per_image_forward", "latency_ms_batch1", "images_per_s_batch1",
                      "latency_ms_per_image_batch16", "images_per_s_batch16", "train_batch_size",
                      "train_images_per_s", "peak_memory_bytes", "peak_memory_kind", "device", "platform",
                      "jax_version", "file")


def complexity_csv(records: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COMPLEXITY_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow({k: record.get(k, "") for k in COMPLEXITY_COLUMNS})
    return out.getvalue()


# --- Markdown ------------------------------------------------------------------------------------

def fmt_ours(cell: dict | None) -> str:
    if cell is None:
        return "–"
    text = f"{100 * cell['mean']:.2f}"
    if cell["std"] is not None:
        text += f" ± {100 * cell['std']:.2f}"
    return text


def fmt_published(cell: dict | None) -> str:
    return "" if cell is None or cell["published_percent"] is None else str(cell["published_percent"])


def fmt_diff(cell: dict | None) -> str:
    return "" if cell is None or cell["diff_points"] is None else f"{cell['diff_points']:+.2f}"


def _table(header: Sequence[str], lines: list[Sequence[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(line) + " |" for line in lines])


def _metric_cells(metrics: dict) -> list[str]:
    cells = []
    for metric in METRIC_NAMES:
        cell = metrics.get(metric)
        cells.append(fmt_ours(cell))
        if metric != "aupro":  # nobody publishes the official AU-PRO for these methods
            cells += [fmt_published(cell), fmt_diff(cell)]
    return cells


def _result_header(first: str) -> list[str]:
    header = [first, "Method", "Seeds"]
    for metric, title in METRICS:
        header.append(title)
        if metric != "aupro":
            header += ["pub.", "Δ"]
    return header


def _label(record: dict) -> str:
    return record["method_label"] + (f" ⚠ **{RANDOM_TEACHER_MARK}**" if record["random_teacher"] else "")


def markdown(board: dict) -> str:
    rows, summaries = board["rows"], board["summaries"]
    n_jobs = sum(len(r["seeds"]) for r in rows)
    lines = [
        "# Leaderboard", "",
        f"Generated {board['generated_utc']} from {n_jobs} finished jobs in `{board['workdir']}`.",
        "Numbers in percent; ours are the mean ± sample std (ddof=1) over seeds of each job's "
        "`eval_metrics.json`; a dataset mean is the mean of the category means (its ± is over the per-seed "
        "means of the seeds every category has). **pub.** is the primary published number for the same "
        "method, dataset and metric, **Δ** = ours − published (points), given only for complete means.",
        "Protocols: published \"PRO\"/\"AUPRO\" of RD4AD, SK-RD4AD and the RGPKD repository is the RD4AD code's "
        "per-image variant, so it stands beside our *AUPRO (RD4AD per-image)*; nobody publishes the official "
        "MVTec AU-PRO for these methods. Evaluation at the configs' image size (256 px as published); "
        "last epoch, no selection on test data.", ""]
    if any(r["random_teacher"] for r in rows):
        lines += [f"> ⚠ Rows marked **{RANDOM_TEACHER_MARK}** used a randomly initialised teacher (a smoke "
                  "run): such numbers are at chance level for real data and must never be reported.", ""]
    for dataset in sorted({r["dataset"] for r in rows}):
        lines += [f"## {dataset}", ""]
        body = [[r["category"], _label(r), ",".join(map(str, r["seeds"]))] + _metric_cells(r["metrics"])
                for r in rows if r["dataset"] == dataset]
        for s in (s for s in summaries if s["dataset"] == dataset):
            some = next(iter(s["metrics"].values()))
            scope = f"**{s['scope']}**"
            if not some["complete"]:
                scope += f" ({some['num_categories']}/{some['total_categories']} categories)"
            body.append([scope, _label(s), ",".join(map(str, some["per_seed"]))] + _metric_cells(s["metrics"]))
        lines += _table(_result_header("Category"), body) + [""]
        for ref in published.REFERENCES:
            if ref.primary and ref.dataset == dataset:
                lines.append(f"- pub. for `{ref.method}`: {ref.title}. Source: {ref.source}. Caveat: {ref.caveat}.")
        plot = f"leaderboard_{dataset}.png"
        if plot in board.get("plots", []):
            lines += ["", f"![{dataset}]({plot})"]
        lines += [""] + _secondary_markdown(board["secondary"], dataset)
    lines += _complexity_markdown(board["complexity"])
    if board["failed"]:
        lines += ["## Failed jobs", "", "Rerun them with `--retry_failed`; the traceback is in each `error.json`.", ""]
        lines += _table(["Job", "Error", "Message"],
                        [[f["job"], f["type"] or "", (f["message"] or "").splitlines()[0][:200] if f["message"] else ""]
                         for f in board["failed"]]) + [""]
    if board["pending"]:
        lines += ["## Pending jobs", "", f"{len(board['pending'])} jobs have not run yet: "
                  + ", ".join(f"`{p}`" for p in board["pending"]), ""]
    return "\n".join(lines) + "\n"


def _secondary_markdown(comparisons: list[dict], dataset: str) -> list[str]:
    """One table per non-primary reference: a line per scope, pub. / ours / Δ per metric."""
    lines, titles = [], dict(METRICS)
    for ref in published.references(dataset=dataset, primary=False):
        mine = [c for c in comparisons if c["reference"] == ref.key]
        if not mine:
            continue
        metrics = [m for m in METRIC_NAMES if any(c["metric"] == m for c in mine)]
        cells = {(c["scope"], c["metric"]): c for c in mine}
        header = ["Scope"] + [f"{titles[m]} {part}" for m in metrics for part in ("pub.", "ours", "Δ")]
        body = []
        for scope in dict.fromkeys(c["scope"] for c in mine):
            line = [scope]
            for metric in metrics:
                cell = cells.get((scope, metric))
                line += [fmt_published(cell), fmt_ours(cell) if cell else "", fmt_diff(cell)]
            body.append(line)
        lines += [f"### {ref.title} (vs our `{ref.method}`)", "",
                  f"Source: {ref.source}. Caveat: {ref.caveat}.", ""] + _table(header, body) + [""]
    return lines


def _millions(n) -> str:
    return "" if n is None else f"{n / 1e6:.2f}"


def _number(x, digits=1) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _complexity_markdown(records: list[dict]) -> list[str]:
    if not records:
        return []
    lines = ["## Complexity", "",
             "Per model, measured on one device by `benchmarks/complexity.py`. GFLOPs from XLA's cost "
             "analysis of the compiled function (inference = forward + anomaly map + score). Latency: median "
             "over repeats after warm-up, `block_until_ready`. Peak memory: the device's `peak_bytes_in_use` "
             "on accelerators, the process's peak RSS on CPU (includes the Python and JAX runtime).", ""]
    body = [[r["model"], str(r.get("image_size", "")), _millions(r.get("params_trainable")),
             _millions(r.get("params_frozen")), _number(r.get("gflops_per_image_inference"), 2),
             _number(r.get("gflops_per_image_forward"), 2), _number(r.get("latency_ms_batch1"), 2),
             _number(r.get("images_per_s_batch1")), _number(r.get("latency_ms_per_image_batch16"), 2),
             _number(r.get("images_per_s_batch16")),
             f"{_number(r.get('train_images_per_s'))} (b{r.get('train_batch_size', '')})",
             f"{_number((r.get('peak_memory_bytes') or 0) / 2**20, 0)} ({r.get('peak_memory_kind', '')})",
             str(r.get("device", "")), str(r.get("jax_version", ""))] for r in records]
    lines += _table(["Model", "px", "Params trainable (M)", "frozen (M)", "GFLOPs/img inference",
                     "GFLOPs/img forward", "b1 latency (ms)", "b1 img/s", "b16 ms/img", "b16 img/s",
                     "train img/s", "peak MiB", "device", "jax"], body)
    return lines + [""]


# --- plots -----------------------------------------------------------------------------------------

def write_plots(rows: list[dict], summaries: list[dict], output_dir: str) -> list[str]:
    """One PNG per dataset: a panel per metric, methods side by side per category (error bar = std),
    primary published numbers as black ticks. Returns the file names written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for dataset in sorted({r["dataset"] for r in rows}):
        records = [r for r in rows if r["dataset"] == dataset]
        records += [dict(s, category=s["scope"]) for s in summaries
                    if s["dataset"] == dataset and s["scope"] == MEAN]
        groups = list(dict.fromkeys(r["category"] for r in records))
        labels = sorted({r["method_label"] for r in records})
        metrics = [(m, t) for m, t in METRICS if any(m in r["metrics"] for r in records)]
        figure, axes = plt.subplots(len(metrics), 1, figsize=(max(6.0, 0.9 * len(groups) * max(1, len(labels)) / 2 + 2),
                                                             2.6 * len(metrics)), squeeze=False)
        width = 0.8 / len(labels)
        for ax, (metric, title) in zip(axes[:, 0], metrics):
            for j, label in enumerate(labels):
                xs, ys, errs, pubs = [], [], [], []
                for i, group in enumerate(groups):
                    cell = next((r["metrics"].get(metric) for r in records
                                 if r["category"] == group and r["method_label"] == label), None)
                    if cell is None:
                        continue
                    x = i - 0.4 + width * (j + 0.5)
                    xs.append(x)
                    ys.append(100 * cell["mean"])
                    errs.append(100 * (cell["std"] or 0.0))
                    if cell["published_percent"] is not None:
                        pubs.append((x, cell["published_percent"]))
                ax.bar(xs, ys, width, yerr=errs, label=label, capsize=2)
                if pubs:
                    ax.scatter(*zip(*pubs), marker="_", s=120, color="black", zorder=3,
                               label="published" if j == 0 else None)
            ax.set_title(f"{dataset}: {title}", fontsize=9)
            ax.set_ylabel("%")
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels(groups, rotation=45, ha="right", fontsize=7)
            lows = [100 * r["metrics"][metric]["mean"] for r in records if metric in r["metrics"]]
            ax.set_ylim(max(0.0, min(lows) - 5), 100.5)
        handles, names = axes[0, 0].get_legend_handles_labels()
        figure.legend(handles, names, loc="upper right", fontsize=7)
        figure.tight_layout()
        name = f"leaderboard_{dataset}.png"
        tmp = os.path.join(output_dir, f".{name}.tmp{os.getpid()}")
        figure.savefig(tmp, dpi=100, format="png")
        plt.close(figure)
        os.replace(tmp, os.path.join(output_dir, name))
        written.append(name)
    return written
