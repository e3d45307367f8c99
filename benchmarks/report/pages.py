"""The report's pages as static HTML (docs/report.md): ``index.html`` (per dataset and setting a
summary table and the categories; efficiency; provenance) and one page per (dataset, setting,
category) (its table, curves and gallery). Every page is one file beside ``report.css`` and
``report.js``; it names no server and loads nothing from the network."""

from __future__ import annotations

import html
import json
import statistics
from typing import Iterable, Sequence

from benchmarks.leaderboard import published
from benchmarks.leaderboard.stats import MEAN, METRICS
from benchmarks.report import charts

CSS_FILE, JS_FILE = "report.css", "report.js"
RANDOM_TEACHER_BANNER = ("Random teacher: the numbers on this page come from a randomly initialised teacher "
                         "(a smoke run of the pipeline). They are at chance level on real defects and are not results.")
# The categories table's columns per method, with their short headings.
HEADLINE = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "aupro": "AU-PRO"}
esc = html.escape


def percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def page(title: str, body: str, *, random_teacher: bool, crumbs: Sequence[tuple[str, str]] = ()) -> str:
    """A whole page: head, the random-teacher banner where it applies, breadcrumbs, ``body``."""
    banner = f'<div class="banner" role="alert">{esc(RANDOM_TEACHER_BANNER)}</div>' if random_teacher else ""
    trail = " › ".join([f'<a href="{esc(href)}">{esc(text)}</a>' for text, href in crumbs] + [esc(title)])
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{esc(title)}</title><link rel="stylesheet" href="{CSS_FILE}"></head>'
            f'<body>{banner}<nav class="crumbs">{trail}</nav><main>{body}</main>'
            f'<script src="{JS_FILE}"></script></body></html>\n')


def category_page_name(dataset: str, setting: str, category: str) -> str:
    return f"{dataset}--{setting}--{category}.html"


def setting_title(dataset: str, setting: str) -> str:
    return f"{dataset}, {'one model per category' if setting == 'per_category' else 'unified (one model for all categories)'}"


# --- tables ------------------------------------------------------------------------------------

def sortable_head(*labels: str) -> str:
    """A header row whose headings sort their column on a click (report.js)."""
    cells = "".join(f'<th scope="col"><button type="button" data-sort-column="{i}">{esc(label)}</button></th>'
                    for i, label in enumerate(labels))
    return f"<thead><tr>{cells}</tr></thead>"


def table(caption: str, attributes: str, inner: str) -> str:
    """A table in its own horizontally scrolling box (wide tables never widen the page), its caption
    above the box so that it wraps at the page's width. ``caption`` and ``inner`` are HTML."""
    return f'<p class="caption">{caption}</p><div class="scroll"><table {attributes}>{inner}</table></div>'


def _cell(cell: dict | None, best: bool) -> str:
    """Ours (mean ± std over seeds, percent) and, where published, the published value and Δ."""
    if cell is None:
        return '<td data-sort="">–</td>'
    text = percent(cell["mean"]) + ("" if cell["std"] is None else f" ± {percent(cell['std'])}")
    extra = ""
    if cell.get("published_percent") is not None:
        delta = cell.get("diff_points")
        sign = "" if delta is None else ("pos" if delta >= 0 else "neg")
        delta_text = "" if delta is None else f' <span class="delta {sign}">Δ {delta:+.1f}</span>'
        extra = (f'<span class="pub" title="{esc(cell.get("published_reference") or "")}">'
                 f'pub {cell["published_percent"]:g}{delta_text}</span>')
    return (f'<td data-sort="{cell["mean"]!r}"{" class=best" if best else ""}>'
            f'<span class="ours">{text}</span>{extra}</td>')


def _best(records: Sequence[dict], metric: str) -> float | None:
    means = [r["metrics"][metric]["mean"] for r in records if metric in r["metrics"]]
    return max(means) if len(means) > 1 else None  # one method has no "best"


def metric_table(records: Sequence[dict], *, caption: str, table_id: str) -> str:
    """Methods x metrics (every metric some record has), sortable, the best of each column marked."""
    metrics = [(key, label) for key, label in METRICS if any(key in r["metrics"] for r in records)]
    best = {key: _best(records, key) for key, _ in metrics}
    body = []
    for record in records:
        seeds = max((cell["n"] for cell in record["metrics"].values()), default=0)
        cells = "".join(_cell(record["metrics"].get(key), record["metrics"].get(key, {}).get("mean") == best[key])
                        for key, _ in metrics)
        mark = ' <span class="rt" title="random teacher">RT</span>' if record["random_teacher"] else ""
        body.append(f'<tr><th scope="row" data-sort="{esc(record["method_label"])}">{esc(record["method_label"])}{mark}</th>'
                    f'<td data-sort="{seeds}">{seeds}</td>{cells}</tr>')
    return table(caption, f'class="metrics sortable" id="{esc(table_id)}"',
                 sortable_head("method", "seeds", *(label for _, label in metrics))
                 + f'<tbody>{"".join(body)}</tbody>')


def categories_table(rows: Sequence[dict], dataset: str, setting: str) -> str:
    """Categories (linked to their pages) x methods: the headline metrics, the best of each marked."""
    methods = sorted({r["method_label"] for r in rows})
    by_key = {(r["category"], r["method_label"]): r for r in rows}
    categories = list(dict.fromkeys(r["category"] for r in rows))
    head = "".join(f'<th scope="col" colspan="{len(HEADLINE)}">{esc(m)}</th>' for m in methods)
    sub = "".join(f'<th scope="col">{esc(HEADLINE[k])}</th>' for _ in methods for k in HEADLINE)
    body = []
    for category in categories:
        in_row = [by_key.get((category, m)) for m in methods]
        best = {k: _best([r for r in in_row if r], k) for k in HEADLINE}
        cells = "".join(
            '<td>–</td>' if r is None or k not in r["metrics"] else
            f'<td{" class=best" if r["metrics"][k]["mean"] == best[k] else ""}>{percent(r["metrics"][k]["mean"])}</td>'
            for r in in_row for k in HEADLINE)
        link = category_page_name(dataset, setting, category)
        body.append(f'<tr><th scope="row"><a href="{esc(link)}">{esc(category)}</a></th>{cells}</tr>')
    return table("Per category (mean over seeds, percent); a category opens its curves and heat maps",
                 'class="categories"', f'<thead><tr><th scope="col" rowspan="2">category</th>{head}</tr>'
                 f'<tr>{sub}</tr></thead><tbody>{"".join(body)}</tbody>')


def protocols_note(records: Iterable[dict]) -> str:
    found = list(dict.fromkeys(p for r in records for p in r.get("protocols", ())))
    mixed = ' <strong class="warn">(mixed: the rows were evaluated differently)</strong>' if len(found) > 1 else ""
    return (f'<details class="protocol"><summary>Evaluation protocol{mixed}</summary>'
            + "".join(f"<p><code>{esc(p)}</code></p>" for p in found) + "</details>")


# --- curves and gallery ------------------------------------------------------------------------

CURVES = (  # (title, x, y, curve key, metric key, x label, y label, steps, diagonal)
    ("image ROC", "image_roc/fpr", "image_roc/tpr", "image_auroc", "false positive rate", "true positive rate", False, True),
    ("pixel ROC", "pixel_roc/fpr", "pixel_roc/tpr", "pixel_auroc", "false positive rate (pixels)", "true positive rate", False, True),
    ("pixel precision-recall", "pixel_pr/recall", "pixel_pr/precision", "pixel_ap", "recall (pixels)", "precision", True, False),
    ("PRO", "pro/fpr", "pro/pro", "aupro", "false positive rate (pixels)", "per-region overlap", False, False),
)


def curves_section(rows: Sequence[dict]) -> str:
    charts_html = []
    for title, x_key, y_key, metric, x_label, y_label, steps, diagonal in CURVES:
        lines, x_max = [], 1.0
        for row in rows:
            assets = row.get("assets")
            if not assets or x_key not in assets["curves"]:
                continue
            seed = row["seeds"][0]
            value = row["metrics"].get(metric, {}).get("per_seed", {}).get(seed)
            label = row["method_label"] + ("" if value is None else f" {percent(value)}")
            lines.append(charts.Line(label, assets["curves"][x_key], assets["curves"][y_key], steps=steps))
            if x_key.startswith("pro/"):
                x_max = assets["fpr_limit"]
        if lines:
            charts_html.append(charts.line_chart(title + (f" (to FPR {x_max:g})" if x_max != 1.0 else ""),
                                                 x_label, y_label, lines, x_max=x_max, diagonal=diagonal))
    if not charts_html:
        return '<p class="missing">No curves recorded (the jobs drew no figures: eval.num_visualise = 0).</p>'
    return f'<div class="charts">{"".join(charts_html)}</div>'


def _figure(item: dict, src: str, threshold: float | None) -> str:
    wrong = item["decision"] is not None and (item["decision"] == "defective") != bool(item["label"])
    verdict = ""
    if item["decision"] is not None:
        verdict = f' &gt; thr: defective' if item["decision"] == "defective" else " ≤ thr: good"
        verdict = f'<span class="{"wrong" if wrong else "right"}">{verdict}</span>'
    thr = "no threshold" if threshold is None else f"thr {threshold:.4g}"
    return (f'<figure{" class=wrong" if wrong else ""}><img src="{esc(src)}" alt="{esc(item["file_name"])}: image and '
            f'heat map"><figcaption><b>{esc(item["kind"])}</b><br>{esc(item["file_name"])} '
            f'({esc(item["defect_type"])})<br>score {item["score"]:.4g}{verdict} · {thr}</figcaption></figure>')


def gallery_section(rows: Sequence[dict], image_path) -> str:
    """Per method its gallery; ``image_path(assets, file)``: a thumbnail's path relative to the page."""
    parts = []
    for row in rows:
        assets = row.get("assets")
        if not assets or not assets["gallery"]:
            parts.append(f'<h3>{esc(row["method_label"])}</h3><p class="missing">No gallery recorded.</p>')
            continue
        low, high = assets["heat_range"]
        figures = "".join(_figure(item, image_path(assets, item["file"]), assets["threshold"])
                          for item in assets["gallery"])
        parts.append(f'<h3>{esc(row["method_label"])} <small>seed {row["seeds"][0]}; heat-map colours from '
                     f'{low:.3g} (blue) to {high:.3g} (red); magenta: the ground-truth outline</small></h3>'
                     f'<div class="gallery">{figures}</div>')
    return "".join(parts)


# --- efficiency and provenance ------------------------------------------------------------------

def _number(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def software(environment: dict) -> str:
    versions = environment.get("versions") or {}
    return ", ".join(f"{name} {versions[name]}" for name in ("jax", "jaxlib", "flax") if versions.get(name)) or "–"


def device_text(environment: dict, fallback: str = "") -> str:
    """The devices a number was measured on: "NVIDIA H200 ×8", or on a CPU backend the CPU's model."""
    if not environment:
        return fallback or "not recorded"
    count = environment.get("device_count", 1)
    if environment.get("platform") == "cpu" and environment.get("cpu"):
        return f'CPU: {environment["cpu"]} ({environment.get("cpu_count")} cores)'
    return f'{environment["device"]}{f" ×{count}" if count > 1 else ""}'


def complexity_table(records: Sequence[dict]) -> str:
    if not records:
        return '<p class="missing">No complexity jobs (run the leaderboard with --complexity).</p>'
    body = "".join(
        f'<tr><th scope="row">{esc(r["model"])}</th><td>{r.get("image_size", "–")}</td>'
        f'<td>{_number(r.get("params_trainable", 0) / 1e6, 2)}</td><td>{_number(r.get("params_frozen", 0) / 1e6, 2)}</td>'
        f'<td>{_number(r.get("gflops_per_image_inference"), 2)}</td><td>{_number(r.get("latency_ms_batch1"), 2)}</td>'
        f'<td>{_number(r.get("images_per_s_batch16"))}</td><td>{_number(r.get("train_images_per_s"))} '
        f'(batch {r.get("train_batch_size", "–")})</td>'
        f'<td title="{esc(str(r.get("peak_memory_kind", "")))}">{_number((r.get("peak_memory_bytes") or 0) / 2**20, 0)}'
        f'<small class="pub">{esc(str(r.get("peak_memory_kind", "")))}</small></td>'
        f'<td class="wrap">{esc(device_text(r.get("environment") or {}, r.get("device", "")))}</td>'
        f'<td class="wrap">{esc(software(r.get("environment") or {"versions": {"jax": r.get("jax_version")}}))}</td></tr>'
        for r in records)
    return table('Each model measured alone by <code>benchmarks.speed.complexity</code> on random inputs: '
                 'parameters, GFLOPs per image (XLA cost analysis of forward + map + score), latency at batch 1 '
                 'and throughput at batch 16 (median after warm-up), one train step, peak memory (device bytes '
                 'on accelerators, the process RSS on CPU)', 'class="sortable"',
                 sortable_head("model", "px", "trainable (M)", "frozen (M)", "GFLOPs/img", "latency b1 (ms)",
                               "inference img/s (b16)", "train img/s", "peak MiB", "device", "software")
                 + f'<tbody>{body}</tbody>')


def _median(values: Iterable[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def runs_table(jobs: Sequence, rows: Sequence[dict]) -> str:
    """Per method and dataset, what its training jobs measured while they ran."""
    inference = {}
    for row in rows:
        speed = ((row.get("assets") or {}).get("inference") or {}).get("images_per_s")
        inference.setdefault((row["method_label"], row["dataset"]), []).append(speed)
    groups: dict[tuple[str, str], list] = {}
    for job in jobs:
        if job.spec["kind"] == "train_eval" and job.state == "finished":
            label = job.spec["method"] + (f'+{job.spec["variant"]}' if job.spec.get("variant") else "")
            groups.setdefault((label, job.spec["dataset"]), []).append(job)
    body = []
    for (label, dataset), members in sorted(groups.items()):
        seconds = [j.training["seconds"] for j in members if j.training]
        devices = sorted({device_text(j.environment) for j in members})
        versions = sorted({software(j.environment) for j in members})
        body.append(
            f'<tr><th scope="row">{esc(label)}</th><td>{esc(dataset)}</td><td>{len(members)}</td>'
            f'<td data-sort="{_median(seconds) or 0}">{_number(_median(seconds))}</td><td>{_number(sum(seconds) / 60)}</td>'
            f'<td>{_number(_median(j.training["images_per_s"] for j in members if j.training))}</td>'
            f'<td>{_number(_median(inference.get((label, dataset), [])))}</td>'
            f'<td class="wrap">{esc("; ".join(devices))}</td><td class="wrap">{esc("; ".join(versions))}</td></tr>')
    if not body:
        return '<p class="missing">No finished training jobs.</p>'
    return table("Measured while the jobs ran: training wall time per job (median; includes compiling, data "
                 "waits and checkpoints) and in total, training images/s after the first logged window, the test "
                 "pass's images/s after its first batch (maps and scores on every device)", 'class="sortable"',
                 sortable_head("method", "dataset", "jobs", "training s/job", "training min total", "train img/s",
                               "test img/s", "device", "software") + f'<tbody>{"".join(body)}</tbody>')


def teacher_text(teacher: dict) -> str:
    if not teacher:
        return "not recorded"
    if teacher.get("weights") == "random":
        return f'{teacher.get("arch", "")} random (seed {teacher.get("seed")})'
    digest = teacher.get("sha256")
    return f'{teacher.get("arch", "")} {teacher.get("weights", "")}' + (f" sha256 {digest}" if digest else "")


def jobs_table(jobs: Sequence, config_links: dict[str, str]) -> str:
    body = []
    for job in jobs:
        teacher = (job.run_info or {}).get("teacher") or (job.metrics or {}).get("teacher") or {}
        config = config_links.get(job.name)
        link = f'<a href="{esc(config)}">config</a>' if config else "–"
        state = job.state if not job.error else f'{job.state}: {job.error}'
        body.append(f'<tr><th scope="row">{esc(job.name)}</th><td class="{esc(job.state)}">{esc(state)}</td>'
                    f'<td>{esc(job.environment.get("commit", "not recorded"))}</td>'
                    f'<td class="wrap">{esc(device_text(job.environment))}</td><td class="wrap">{esc(teacher_text(teacher))}</td>'
                    f'<td>{link}</td></tr>')
    return table('Every job: its state, the commit and devices it ran on, its teacher (weights and their '
                 'sha256) and its whole config (run_info.json)', 'class="sortable jobs"',
                 sortable_head("job", "state", "commit", "device", "teacher", "config")
                 + f'<tbody>{"".join(body)}</tbody>')


def references_list(rows: Sequence[dict], summaries: Sequence[dict]) -> str:
    used = {cell.get("published_reference") for r in [*rows, *summaries] for cell in r["metrics"].values()}
    refs = [r for r in published.references() if r.key in used]
    if not refs:
        return '<p class="missing">No published number stands beside these rows.</p>'
    return "<dl class=\"refs\">" + "".join(
        f'<dt>{esc(r.key)}</dt><dd>{esc(r.title)} ({esc(r.source)}){f". {esc(r.caveat)}" if r.caveat else ""}</dd>'
        for r in refs) + "</dl>"


def config_json(job) -> str:
    return json.dumps((job.run_info or {}).get("config", {}), indent=1, sort_keys=True)


def summary_records(summaries: Sequence[dict], dataset: str, setting: str, scope: str = MEAN) -> list[dict]:
    return [s for s in summaries if (s["dataset"], s["setting"], s["scope"]) == (dataset, setting, scope)]
