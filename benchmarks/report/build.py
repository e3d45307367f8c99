"""Writes the report folder (docs/report.md): ``index.html``, one page per (dataset, setting,
category), ``report.css``, ``report.js``, the gallery thumbnails (``img/``) and each job's config
(``configs/``). It is built in a temporary folder and renamed into place, so a reader never sees a
half-written report, and it holds everything its pages show: it opens from ``file://``, moved or
copied anywhere."""

from __future__ import annotations

import datetime
import os
import shutil
from typing import Sequence

from benchmarks.leaderboard import published
from benchmarks.report import content, pages
from rgpkd_jax import files

REPORT_DIR = "report"
HERE = os.path.dirname(os.path.abspath(__file__))


def _flat(relative_path: str) -> str:
    """A relative path as one file name (``a/b/c`` -> ``a--b--c``)."""
    return "--".join(part for part in relative_path.split(os.sep) if part)


def _index(data: dict, config_links: dict[str, str], generated: str) -> str:
    rows, summaries, jobs = data["rows"], data["summaries"], data["jobs"]
    groups = sorted({(r["dataset"], r["setting"]) for r in rows},
                    key=lambda g: (g[0], published.SETTINGS.index(g[1])))
    commits = sorted({j.environment.get("commit", "not recorded") for j in jobs if j.spec["kind"] == "train_eval"})
    toc = "".join(f'<li><a href="#{d}--{s}">{pages.esc(pages.setting_title(d, s))}</a></li>' for d, s in groups)
    parts = [
        "<h1>Benchmark report</h1>",
        f'<p class="meta">Generated {generated} from <code>{pages.esc(data["root"])}</code>: '
        f'{sum(j.state == "finished" for j in jobs)} finished, {len(data["failed"])} failed, '
        f'{len(data["pending"])} pending jobs; commit {pages.esc(", ".join(commits) or "not recorded")}. '
        'Numbers are percent: the mean over seeds ± their sample standard deviation; "pub" is '
        'the published number of the same setting and Δ ours minus it, in points; '
        '<span class="best-key">shaded</span>: the best of its column. Click a column heading to sort.</p>',
        f'<ul class="toc">{toc}<li><a href="#efficiency">Efficiency</a></li>'
        '<li><a href="#provenance">Provenance</a></li></ul>',
    ]
    for dataset, setting in groups:
        in_group = [r for r in rows if (r["dataset"], r["setting"]) == (dataset, setting)]
        means = pages.summary_records(summaries, dataset, setting)
        count = len({r["category"] for r in in_group})
        parts.append(f'<section id="{dataset}--{setting}"><h2>{pages.esc(pages.setting_title(dataset, setting))}</h2>')
        parts.append(pages.metric_table(means, caption=f"Mean over the {count} categories (a mean over fewer "
                                        "categories than the dataset has gets no Δ)", table_id=f"summary--{dataset}--{setting}"))
        scopes = sorted({s["scope"] for s in summaries if (s["dataset"], s["setting"]) == (dataset, setting)} - {pages.MEAN})
        for scope in scopes:
            parts.append(pages.metric_table(pages.summary_records(summaries, dataset, setting, scope),
                                            caption=f"Mean over the {scope.split('/', 1)[1]}",
                                            table_id=f"summary--{dataset}--{setting}--{scope.replace('/', '-')}"))
        parts.append(pages.categories_table(in_group, dataset, setting))
        parts.append(pages.protocols_note(in_group) + "</section>")
    parts.append('<section id="efficiency"><h2>Efficiency</h2>' + pages.complexity_table(data["complexity"])
                 + pages.runs_table(jobs, rows) + "</section>")
    failed = "".join(f"<li><b>{pages.esc(j.name)}</b>: {pages.esc(j.error)}</li>" for j in data["failed"])
    pending = ", ".join(pages.esc(name) for name in data["pending"])
    parts.append('<section id="provenance"><h2>Provenance</h2>'
                 + (f'<h3>Failed jobs</h3><ul class="failed">{failed}</ul>' if failed else "<p>No job failed.</p>")
                 + (f"<p>Pending: {pending}</p>" if pending else "")
                 + pages.jobs_table(jobs, config_links) + "<h3>Published numbers</h3>"
                 + pages.references_list(rows, summaries) + "</section>")
    return pages.page("Benchmark report", "".join(parts), random_teacher=any(r["random_teacher"] for r in rows))


def _category_page(rows: list[dict], image_path) -> str:
    first = rows[0]
    title = f'{first["dataset"]} / {first["category"]}'
    body = (f'<h1>{pages.esc(title)} <small>{pages.esc(pages.setting_title(first["dataset"], first["setting"]))}'
            f'</small></h1>'
            + pages.metric_table(rows, caption="Mean over seeds", table_id="category")
            + pages.protocols_note(rows)
            + "<h2>Curves</h2><p class=\"meta\">Each method's first seed; the legend gives its value.</p>"
            + pages.curves_section(rows)
            + "<h2>Heat maps</h2><p class=\"meta\">Where each method fails: the normal images it scored highest, "
              "the defects it scored lowest, and a typical one of each; red captions are wrong decisions at the "
              "run's threshold.</p>"
            + pages.gallery_section(rows, image_path))
    return pages.page(title, body, random_teacher=any(r["random_teacher"] for r in rows),
                      crumbs=[("Benchmark report", "index.html"),
                              (pages.setting_title(first["dataset"], first["setting"]),
                               f'index.html#{first["dataset"]}--{first["setting"]}')])


def write_report(root: str, output_dir: str | None = None, *, pending: Sequence[str] = ()) -> dict:
    """Builds the report of the leaderboard workdir ``root`` into ``output_dir`` (default
    ``<root>/report``, replaced whole); ``pending``: names of jobs not started yet (the leaderboard
    knows them; a job started and unfinished is found on disk). Returns its index path, page count
    and size in bytes."""
    output_dir = output_dir or os.path.join(root, REPORT_DIR)
    data = content.gather(root)
    data["pending"] = sorted({j.name for j in data["pending"]} | set(pending))
    generated = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    jobs_dir = os.path.join(data["root"], "jobs")
    with files.staged_dir(output_dir, replace=True) as staging:
        for name in (pages.CSS_FILE, pages.JS_FILE):
            shutil.copyfile(os.path.join(HERE, name), staging / name)
        config_links = {}
        os.makedirs(staging / "configs")
        for job in data["jobs"]:
            if job.run_info:
                config_links[job.name] = f"configs/{_flat(job.name)}.json"
                files.write_text(staging / config_links[job.name], pages.config_json(job))

        def image_path(assets: dict, file_name: str) -> str:
            path = f"img/{_flat(os.path.relpath(assets['folder'], jobs_dir))}/{file_name}"
            os.makedirs(os.path.dirname(staging / path), exist_ok=True)
            shutil.copyfile(os.path.join(assets["folder"], file_name), staging / path)
            return path

        by_category: dict[tuple[str, str, str], list[dict]] = {}
        for row in data["rows"]:
            by_category.setdefault((row["dataset"], row["setting"], row["category"]), []).append(row)
        for (dataset, setting, category), rows in by_category.items():
            files.write_text(staging / pages.category_page_name(dataset, setting, category),
                             _category_page(rows, image_path))
        files.write_text(staging / "index.html", _index(data, config_links, generated))
        size = sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(staging) for name in names)
    return {"index": os.path.join(output_dir, "index.html"), "pages": len(by_category) + 1, "bytes": size}


def summary_line(written: dict) -> str:
    """What the command lines print about a written report."""
    return f"wrote the report ({written['pages']} pages, {written['bytes'] / 2**20:.1f} MiB): {written['index']}"
