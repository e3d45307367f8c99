"""The leaderboard's job list: what to run, where it writes, how it is split over hosts, skip and retry.

A job is one (method, variant, dataset, category, seed) training + evaluation, or one complexity
measurement of a model. In the unified setting a job trains one model on all the requested
categories of a dataset (category `all`, or `a+b`) and evaluates it on each category
(docs/unified.md); its per-category results lie in its workdir's `categories/<category>/`. Each has its own workdir under `<root>/jobs/<name>`:

- `job.json`: the job's spec (method, config argument, overrides); a rerun with a different spec
  in the same workdir is an error rather than silently mixing results;
- `eval_metrics.json` (written by the trainer) or `complexity.json` (by `benchmarks.speed.complexity`):
  the job is finished;
- `error.json`: the job failed (exception type, message, traceback); rerun with `--retry_failed`.

The list depends only on the flags, is sorted by name, and `split(jobs, i, n)` hands task `i` every
n-th job, so n hosts given the same flags run every job exactly once between them.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import traceback
from typing import Iterable, Sequence

from absl import logging

from benchmarks import ablations as ablations_lib
from benchmarks import common_flags
from benchmarks.speed import complexity
from rgpkd_jax import config_files, data, files
from rgpkd_jax.data import unified

TRAIN, COMPLEXITY = "train_eval", "complexity"
METRICS_FILE = "eval_metrics.json"   # written by rgpkd_jax.evaluate
ERROR_FILE = "error.json"
SPEC_FILE = "job.json"
TINY_DATASET = "synthetic"


@dataclasses.dataclass(frozen=True)
class Job:
    kind: str                   # TRAIN or COMPLEXITY
    method: str
    dataset: str
    category: str
    seed: int = 0
    variant: str = ""           # "" = the method's config as is; else an ablation's name
    overrides: tuple[str, ...] = ()   # the variant's, then the user's `key.sub=value`
    tiny: bool = False
    setting: str = unified.PER_CATEGORY  # or unified.UNIFIED: one model for `category`'s list

    @property
    def method_label(self) -> str:
        return f"{self.method}+{self.variant}" if self.variant else self.method

    @property
    def name(self) -> str:
        if self.kind == COMPLEXITY:
            return f"complexity/{self.method_label}/{self.dataset}/{self.category}"
        if self.setting == unified.UNIFIED:
            scope = "unified" if self.category == unified.ALL else f"unified-{self.category}"
            return f"{self.method_label}/{self.dataset}/{scope}/seed{self.seed}"
        return f"{self.method_label}/{self.dataset}/{self.category}/seed{self.seed}"

    @property
    def config_arg(self) -> str:
        return f"{self.dataset}/{self.category}" + (",tiny" if self.tiny else "")

    @property
    def result_file(self) -> str:
        return result_file(self.kind)

    def workdir(self, root: str) -> str:
        return os.path.join(root, "jobs", *self.name.split("/"))

    def spec(self) -> dict:
        return {**dataclasses.asdict(self), "overrides": list(self.overrides), "name": self.name,
                "config_arg": self.config_arg}


def result_file(kind: str) -> str:
    """The file whose presence marks a job of `kind` finished."""
    return complexity.OUTPUT_FILE if kind == COMPLEXITY else METRICS_FILE


def categories(dataset: str) -> tuple[str, ...]:
    """The dataset's fixed categories (`rgpkd_jax.data.categories`, the one list); a ValueError for
    an unknown dataset or one whose categories are whatever lies on disk (`folder`)."""
    try:
        if data.builder_class(dataset) is not data.folder.Folder:
            return tuple(data.categories(dataset))
        reason = "its categories are the folders under --manual_dir"
    except data.DatasetError as error:
        reason = str(error)
    raise ValueError(f"--categories=all: dataset {dataset!r} has no fixed category list ({reason}); "
                     "name the categories explicitly")


def expand_categories(dataset: str, requested: Sequence[str]) -> tuple[str, ...]:
    if list(requested) == ["all"]:
        return categories(dataset)
    if "all" in requested:
        raise ValueError(f"--categories={','.join(requested)}: 'all' cannot be mixed with names")
    try:
        known = categories(dataset)
    except ValueError:
        return tuple(requested)   # a dataset without a known list (e.g. `folder`): trust the user
    unknown = [c for c in requested if c not in known]
    if unknown:
        raise ValueError(f"--categories: {unknown} are not categories of {dataset!r}; known: {list(known)}")
    return tuple(requested)


def build_jobs(*, methods: Sequence[str], datasets: Sequence[str], category_names: Sequence[str],
               seeds: Sequence[int], overrides: Sequence[str] = (), tiny: bool = False,
               ablations: bool = False, ablation_bank_sizes: Sequence[int] = (),
               complexity: bool = False, settings: Sequence[str] = (unified.PER_CATEGORY,)) -> list[Job]:
    """Every job the flags ask for, sorted by name (the order `split` relies on): per category
    and/or (``settings``) one unified job per method, variant and seed."""
    common_flags.check_methods(methods)
    common_flags.check_settings(settings)
    if ablations and ablations_lib.METHOD not in methods:
        raise ValueError(f"--ablations varies {ablations_lib.METHOD}; add it to --methods")
    if not seeds:
        raise ValueError("--seeds is empty; give at least one seed, e.g. --seeds=0")
    variants = {m: [("", ())] for m in methods}
    if ablations:
        chosen = list(ablations_lib.SWITCHES) + [ablations_lib.bank_size(n) for n in ablation_bank_sizes]
        variants[ablations_lib.METHOD] += [(a.name, a.overrides) for a in chosen]
    jobs = []
    for dataset in datasets:
        cats = expand_categories(dataset, category_names)
        for method in methods:
            for variant, variant_overrides in variants[method]:
                common = dict(method=method, dataset=dataset, variant=variant, tiny=tiny,
                              overrides=tuple(variant_overrides) + tuple(overrides))
                if unified.PER_CATEGORY in settings:
                    jobs += [Job(TRAIN, category=c, seed=s, **common) for c in cats for s in seeds]
                if unified.UNIFIED in settings:
                    jobs += [Job(TRAIN, category=unified_category(dataset, category_names, cats), seed=s,
                                 setting=unified.UNIFIED, **common) for s in seeds]
                if complexity:  # complexity does not depend on the category: measure the first
                    jobs.append(Job(COMPLEXITY, category=cats[0], **common))
    duplicates = sorted(n for n, count in collections.Counter(j.name for j in jobs).items() if count > 1)
    if duplicates:
        raise ValueError(f"jobs listed twice (repeated flag values?): {duplicates}")
    return sorted(jobs, key=lambda j: j.name)


def unified_category(dataset: str, requested: Sequence[str], expanded: Sequence[str]) -> str:
    """The ``dataset.category`` of a unified job: ``all``, or the requested categories joined."""
    if len(expanded) < 2:
        raise ValueError(f"--settings=unified trains one model on several categories; --categories gives "
                         f"{dataset!r} only {list(expanded)}: add categories or pass --settings=per_category")
    return unified.ALL if list(requested) == [unified.ALL] else unified.SEPARATOR.join(expanded)


def split(jobs: Sequence[Job], task_index: int, num_tasks: int) -> list[Job]:
    """Task `task_index`'s share of `jobs` (round robin, so each task gets a mix of methods)."""
    if num_tasks < 1 or not 0 <= task_index < num_tasks:
        raise ValueError(f"--task_index={task_index} must be in [0, --num_tasks={num_tasks})")
    return list(jobs[task_index::num_tasks])


# --- state of a job on disk --------------------------------------------------------------------

def is_finished(job: Job, root: str) -> bool:
    return os.path.exists(os.path.join(job.workdir(root), job.result_file))


def read_json(path: str) -> dict | None:
    """The JSON file at `path`, or None where there is none."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def read_error(job: Job, root: str) -> dict | None:
    return read_json(os.path.join(job.workdir(root), ERROR_FILE))


def status(job: Job, root: str) -> str:
    if is_finished(job, root):
        return "finished"
    return "failed" if read_error(job, root) is not None else "pending"


def spec_conflict(job: Job, root: str) -> str | None:
    """Why the job's workdir belongs to a different spec (other overrides, tiny...), or None."""
    path = os.path.join(job.workdir(root), SPEC_FILE)
    recorded = read_json(path)
    if recorded is not None:  # specs written before the unified setting existed were per category
        recorded.setdefault("setting", unified.PER_CATEGORY)
    if recorded is None or recorded == json.loads(json.dumps(job.spec())):
        return None
    return (f"{path} records a different job (overrides {recorded.get('overrides')} vs now "
            f"{list(job.overrides)}, tiny {recorded.get('tiny')} vs {job.tiny})")


def check_specs(jobs: Iterable[Job], root: str) -> None:
    """Refuses to start when a job's workdir holds a run with other settings: a finished job would
    be skipped and its old numbers tabulated as if they came from the new settings."""
    conflicts = [c for c in (spec_conflict(job, root) for job in jobs) if c]
    if conflicts:
        more = f" (and {len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
        raise ValueError("; ".join(conflicts[:5]) + more + ". Use another --workdir, or delete those "
                         "job folders to rerun them with the new settings.")


def claim_workdir(job: Job, root: str) -> str:
    """Creates the job's workdir and records its spec; refuses a workdir holding another spec."""
    check_specs([job], root)
    os.makedirs(job.workdir(root), exist_ok=True)
    path = os.path.join(job.workdir(root), SPEC_FILE)
    if not os.path.exists(path):
        files.write_json(path, job.spec())
    return job.workdir(root)


def record_failure(job: Job, root: str, error: BaseException) -> dict:
    info = {"job": job.name, "type": type(error).__name__, "message": str(error),
            "traceback": "".join(traceback.format_exception(error))}
    os.makedirs(job.workdir(root), exist_ok=True)
    files.write_json(os.path.join(job.workdir(root), ERROR_FILE), info)
    return info


def clear_failure(job: Job, root: str) -> None:
    path = os.path.join(job.workdir(root), ERROR_FILE)
    if os.path.exists(path):
        os.remove(path)


def run_jobs(jobs: Iterable[Job], root: str, runner, *, retry_failed: bool = False) -> dict[str, list[str]]:
    """Runs `runner(job, workdir)` for each job that is neither finished nor (unless `retry_failed`)
    failed; refuses to start if a job's workdir holds a run with other settings. A failure is
    written to the job's `error.json` and the next job goes on. Progress is logged (absl logging).

    Returns the names of the jobs by outcome: finished (now), skipped_finished, skipped_failed,
    failed, unfinished (the runner returned without writing the job's result file).
    """
    jobs = list(jobs)
    check_specs(jobs, root)
    outcome = {k: [] for k in ("finished", "skipped_finished", "skipped_failed", "failed", "unfinished")}
    for number, job in enumerate(jobs, 1):
        state = status(job, root)
        if state == "finished":
            outcome["skipped_finished"].append(job.name)
            continue
        if state == "failed" and not retry_failed:
            logging.warning("[%d/%d] %s: failed before (%s); skipped, pass --retry_failed to rerun it",
                            number, len(jobs), job.name, read_error(job, root)["type"])
            outcome["skipped_failed"].append(job.name)
            continue
        logging.info("[%d/%d] %s: running", number, len(jobs), job.name)
        try:
            workdir = claim_workdir(job, root)
            clear_failure(job, root)
            runner(job, workdir)
        except Exception as error:  # a failed job must not stop the others; it is recorded
            info = record_failure(job, root, error)
            logging.error("[%d/%d] %s: FAILED with %s: %s", number, len(jobs), job.name, info["type"],
                          info["message"])
            outcome["failed"].append(job.name)
            continue
        if is_finished(job, root):
            outcome["finished"].append(job.name)
        else:
            logging.warning("[%d/%d] %s: stopped before writing %s; rerun to resume", number, len(jobs),
                            job.name, job.result_file)
            outcome["unfinished"].append(job.name)
    return outcome


# --- configs ------------------------------------------------------------------------------------

def config_spec(job: Job, config_dir: str) -> str:
    """`<config_dir>/<method>.py:<dataset>/<category>[,tiny]`, as `--config` takes it."""
    return f"{os.path.join(config_dir, job.method)}.py:{job.config_arg}"


def config_overrides(job: Job, *, data_dir: str = "", manual_dir: str = "") -> list[str]:
    """The `key=value` overrides that make the config file the job's config: its seed, the data
    paths, a random teacher for a tiny (smoke) run, then the job's own (variant's and user's)."""
    overrides = [f"seed={job.seed}"]
    if data_dir:
        overrides.append(f"dataset.data_dir={data_dir}")
    if manual_dir:
        overrides.append(f"dataset.manual_dir={manual_dir}")
    if job.tiny:  # a smoke run: a random teacher is allowed, and marked in every table
        overrides.append("teacher.weights=random")
    return overrides + list(job.overrides)


def load_config(job: Job, config_dir: str, *, data_dir: str = "", manual_dir: str = ""):
    """The job's config (`config_spec` + `config_overrides`); a random teacher only when tiny.
    `config_dir` is relative to the working directory."""
    config = config_files.load_config(config_spec(job, config_dir),
                                      config_overrides(job, data_dir=data_dir, manual_dir=manual_dir))
    if not job.tiny and (config.teacher.weights == "random" or config.teacher.fallback_to_random):
        raise ValueError(f"{job.name}: a random teacher is allowed only with --tiny (it scores at chance "
                         "and is never a result); drop the teacher.weights / fallback_to_random override")
    return config
