"""What the report shows, gathered from a leaderboard workdir (docs/report.md).

The numbers are the leaderboard's own (`aggregate.collect`, `stats`: the same rows and summaries as
``leaderboard.md``); beside them each row's recorded curves and gallery (`rgpkd_jax.report_assets`,
from the row's first seed), each model's efficiency (its complexity job, and what its training and
evaluation measured), and each job's provenance (commit, devices, versions, teacher, config).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from benchmarks.leaderboard import aggregate, stats
from benchmarks.leaderboard import jobs as jobs_lib
from rgpkd_jax import metric_writer, report_assets, run_info


@dataclasses.dataclass
class JobRecord:
    """One job workdir: its spec, state and what it recorded (None where it did not)."""
    name: str
    directory: str
    spec: dict
    state: str                      # finished, failed or pending
    run_info: dict | None
    metrics: dict | None            # its eval_metrics.json (a unified job's: the means)
    complexity: dict | None         # a complexity job's complexity.json
    error: str | None               # a failed job's one-line error
    training: dict | None           # time and images/s from its metrics.jsonl

    @property
    def environment(self) -> dict:
        return (self.run_info or self.complexity or {}).get("environment") or {}


def job_directory(path: str) -> str:
    """The job workdir holding ``path`` (a unified job's category files lie two levels deeper)."""
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(os.path.join(folder, jobs_lib.SPEC_FILE)):
        parent = os.path.dirname(folder)
        if parent == folder:
            raise ValueError(f"{path} lies in no job workdir (no {jobs_lib.SPEC_FILE} above it)")
        folder = parent
    return folder


def training_summary(records: list[dict], batch_size: int | None) -> dict | None:
    """Training wall time (the logged windows' sum: steps, data waits, saves and the compile) and
    images/s over the windows after the first (which holds the compile); None without records."""
    if not records:
        return None
    steps = np.diff([0] + [r["step"] for r in records])
    seconds = np.asarray([r.get("step_time_s", 0.0) for r in records]) * steps
    steady = {"images_per_s": None}
    if len(records) > 1 and batch_size:
        steady["images_per_s"] = float(steps[1:].sum() * batch_size / seconds[1:].sum())
    return {"seconds": float(seconds.sum()), "steps": int(records[-1]["step"]), **steady}


def one_line(message: str | None) -> str:
    lines = [line for line in (message or "").splitlines() if line.strip()]
    return lines[0] if lines else ""


def read_jobs(root: str) -> list[JobRecord]:
    """Every job workdir under ``<root>/jobs``, by name."""
    records = []
    for directory, _, names in os.walk(os.path.join(root, "jobs")):
        if jobs_lib.SPEC_FILE not in names:
            continue
        spec = jobs_lib.read_json(os.path.join(directory, jobs_lib.SPEC_FILE))
        result = jobs_lib.read_json(os.path.join(directory, jobs_lib.result_file(spec["kind"])))
        error = jobs_lib.read_json(os.path.join(directory, jobs_lib.ERROR_FILE))
        info = jobs_lib.read_json(os.path.join(directory, run_info.RUN_INFO))
        batch_size = ((info or {}).get("config") or {}).get("train", {}).get("batch_size")
        records.append(JobRecord(
            name=spec["name"], directory=directory, spec=spec,
            state="finished" if result is not None else ("failed" if error is not None else "pending"),
            run_info=info, metrics=result if spec["kind"] == jobs_lib.TRAIN else None,
            complexity=result if spec["kind"] == jobs_lib.COMPLEXITY else None,
            error=f"{error.get('type')}: {one_line(error.get('message'))}" if error else None,
            training=training_summary(metric_writer.read_metrics(directory), batch_size)
            if spec["kind"] == jobs_lib.TRAIN else None))
    return sorted(records, key=lambda r: r.name)


def read_assets(metrics_file: str) -> dict | None:
    """The report assets recorded beside an evaluation's metrics file, with their folder, or None."""
    folder = os.path.join(os.path.dirname(metrics_file), report_assets.ASSETS_DIR)
    assets = jobs_lib.read_json(os.path.join(folder, report_assets.ASSETS_FILE))
    return None if assets is None else {**assets, "folder": folder}


def gather(root: str) -> dict:
    """Everything the pages show: rows, summaries, complexity, jobs, failed and pending jobs."""
    found = aggregate.collect(root)
    rows = aggregate.sorted_rows(stats.build_rows(found["results"]))
    for row in rows:  # the row's first seed's evaluation: its curves and gallery
        row["assets"] = read_assets(row["files"][0])
        row["job"] = os.path.relpath(job_directory(row["files"][0]), os.path.join(root, "jobs"))
    jobs = read_jobs(root)
    return {
        "root": os.path.abspath(root), "rows": rows, "summaries": stats.build_summaries(rows),
        "complexity": aggregate.build_complexity(found["complexity"]), "jobs": jobs,
        "failed": [j for j in jobs if j.state == "failed"], "pending": [j for j in jobs if j.state == "pending"],
    }
