"""The leaderboard's tables: `leaderboard.csv` (tidy), `complexity.csv` and `leaderboard.md`."""

from __future__ import annotations

import csv
import io
from typing import Sequence

from benchmarks.leaderboard import plots as plots_lib
from benchmarks.leaderboard import published
from benchmarks.leaderboard.stats import MEAN, METRIC_NAMES, METRICS

RANDOM_TEACHER_MARK = "random teacher — not a result"


# --- CSV -----------------------------------------------------------------------------------------

CSV_COLUMNS = ("dataset", "setting", "scope", "method", "variant", "metric", "mean", "std", "n_seeds", "per_seed",
               "num_categories", "total_categories", "published_percent", "published_reference",
               "diff_points", "random_teacher", "protocol")


def leaderboard_csv(rows: list[dict], summaries: list[dict]) -> str:
    """Tidy: one line per (dataset, category or summary scope, method+variant, metric)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    records = [(r, r["category"]) for r in rows] + [(s, s["scope"]) for s in summaries]
    for record, scope in records:
        for metric, cell in record["metrics"].items():
            writer.writerow({
                "dataset": record["dataset"], "setting": record["setting"], "scope": scope, "method": record["method"],
                "variant": record["variant"], "metric": metric, "mean": repr(cell["mean"]),
                "std": "" if cell["std"] is None else repr(cell["std"]), "n_seeds": cell["n"],
                "per_seed": ";".join(f"{s}:{v!r}" for s, v in cell["per_seed"].items()),
                "num_categories": cell.get("num_categories", 1), "total_categories": cell.get("total_categories", 1),
                "published_percent": "" if cell["published_percent"] is None else cell["published_percent"],
                "published_reference": cell["published_reference"] or "",
                "diff_points": "" if cell["diff_points"] is None else repr(cell["diff_points"]),
                "random_teacher": record["random_teacher"],
                "protocol": " | ".join(record.get("protocols", ()))})
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


def published_metrics(records: list[dict]) -> list[str]:
    """The metrics of ``records`` that have a published number somewhere: only they get the pub. and
    Δ columns (no source publishes e.g. the official AU-PRO or AUPIMO for these methods)."""
    return [m for m in METRIC_NAMES
            if any((r["metrics"].get(m) or {}).get("published_percent") is not None for r in records)]


def _metric_cells(metrics: dict, with_published: Sequence[str]) -> list[str]:
    cells = []
    for metric in METRIC_NAMES:
        cell = metrics.get(metric)
        cells.append(fmt_ours(cell))
        if metric in with_published:
            cells += [fmt_published(cell), fmt_diff(cell)]
    return cells


def result_header(first: str, with_published: Sequence[str]) -> list[str]:
    header = [first, "Method", "Seeds"]
    for metric, title in METRICS:
        header.append(title)
        if metric in with_published:
            header += ["pub.", "Δ"]
    return header


def _protocol_markdown(rows: list[dict]) -> list[str]:
    """The evaluation protocol of a table's jobs; several protocols in one table are flagged, each
    with the rows that used it, since their numbers are not comparable."""
    users: dict[str, list[str]] = {}
    for row in rows:
        for protocol in row["protocols"]:
            users.setdefault(protocol, []).append(f"{row['category']}/{row['method_label']}")
    if len(users) == 1:
        return [f"Protocol (docs/protocol.md): {next(iter(users))}.", ""]
    lines = [f"> ⚠ The jobs of this table were evaluated under {len(users)} protocols (docs/protocol.md); "
             "numbers under different protocols are not comparable:"]
    for protocol, names in users.items():
        lines.append(f"> - {protocol}: {', '.join(names)}")
    return lines + [""]


def _method_cell(record: dict) -> str:
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
        "per-image variant, so it stands beside our *AUPRO (RD4AD per-image)*; a metric without a published "
        "number for the dataset (the official MVTec AU-PRO, AUPIMO; AP, F1-max and mAD unless a source gives "
        "them) has no pub. and Δ columns. Each table states the protocol its jobs recorded; – marks a metric "
        "a job could not compute (its `eval_metrics.json` says why under `metrics_unavailable`). Evaluation "
        "at the configs' image size (256 px as published); last epoch, no selection on test data.", ""]
    if any(r["random_teacher"] for r in rows):
        lines += [f"> ⚠ Rows marked **{RANDOM_TEACHER_MARK}** used a randomly initialised teacher (a smoke "
                  "run): such numbers are at chance level for real data and must never be reported.", ""]
    for dataset in sorted({r["dataset"] for r in rows}):
        lines += [f"## {dataset}", ""]
        settings = [s for s in published.SETTINGS if any((r["dataset"], r["setting"]) == (dataset, s) for r in rows)]
        for setting in settings:
            lines += _setting_markdown(board, dataset, setting, heading=len(settings) > 1)
        if len(settings) > 1:
            lines += _settings_side_by_side(summaries, dataset)
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


SETTING_TITLES = {"per_category": "per category (one model per category)",
                  "unified": "unified (one model for all categories, evaluated per category)"}


def _setting_markdown(board: dict, dataset: str, setting: str, *, heading: bool) -> list[str]:
    """The table of one dataset in one setting: its categories and means, protocol, published sources."""
    rows = [r for r in board["rows"] if (r["dataset"], r["setting"]) == (dataset, setting)]
    summaries = [s for s in board["summaries"] if (s["dataset"], s["setting"]) == (dataset, setting)]
    lines = [f"### {dataset}, {SETTING_TITLES[setting]}", ""] if heading else []
    with_published = published_metrics(rows + summaries)
    body = [[r["category"], _method_cell(r), ",".join(map(str, r["seeds"]))]
            + _metric_cells(r["metrics"], with_published) for r in rows]
    for s in summaries:
        some = next(iter(s["metrics"].values()))
        scope = f"**{s['scope']}**"
        if not some["complete"]:
            scope += f" ({some['num_categories']}/{some['total_categories']} categories)"
        body.append([scope, _method_cell(s), ",".join(map(str, some["per_seed"]))]
                    + _metric_cells(s["metrics"], with_published))
    lines += _table(result_header("Category", with_published), body) + [""]
    lines += _protocol_markdown(rows)
    for ref in published.references(dataset=dataset, primary=True, setting=setting):
        lines.append(f"- pub. for `{ref.method}`: {ref.title}. Source: {ref.source}. Caveat: {ref.caveat}.")
    plot = plots_lib.plot_name(dataset, setting)
    if plot in board.get("plots", []):
        lines += ["", f"![{dataset}{'' if setting == 'per_category' else ', ' + setting}]({plot})"]
    return lines + [""] + _secondary_markdown(board["secondary"], dataset, setting)


# The metrics the settings' side-by-side table compares (every metric is in the tables above).
SIDE_BY_SIDE = ("image_auroc", "pixel_auroc", "aupro", "mad")


def _settings_side_by_side(summaries: list[dict], dataset: str) -> list[str]:
    """Per method, the dataset mean of each setting and the unified published number, side by side."""
    means = {(s["setting"], s["method_label"]): s for s in summaries if s["dataset"] == dataset and s["scope"] == MEAN}
    labels = sorted({label for _, label in means})
    titles = dict(METRICS)
    header = ["Method"] + [f"{titles[m]} {part}" for m in SIDE_BY_SIDE
                           for part in ("per category", "unified", "unified pub.")]
    body = []
    for label in labels:
        line = [label]
        for metric in SIDE_BY_SIDE:
            per_category, unified_cell = ((means.get((setting, label)) or {}).get("metrics", {}).get(metric)
                                          for setting in published.SETTINGS)
            line += [fmt_ours(per_category), fmt_ours(unified_cell), fmt_published(unified_cell)]
        body.append(line)
    return [f"### {dataset}: the two settings side by side (dataset means)", ""] + _table(header, body) + [""]


def _secondary_markdown(comparisons: list[dict], dataset: str, setting: str) -> list[str]:
    """One table per non-primary reference: a line per scope, pub. / ours / Δ per metric."""
    lines, titles = [], dict(METRICS)
    for ref in published.references(dataset=dataset, primary=False, setting=setting):
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
             "Per model, measured on one device by `benchmarks/speed/complexity.py`. GFLOPs from XLA's cost "
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
