"""The leaderboard's job list: what to run, where it writes, how it is split over hosts, skip and retry.

A job is one (method, variant, dataset, category, seed) training + evaluation, or one complexity
measurement of a model. Each has its own workdir under `<root>/jobs/<name>`:

- `job.json`: the job's spec (method, config argument, overrides); a rerun with a different spec
  in the same workdir is an error rather than silently mixing results;
- `eval_metrics.json` (written by the trainer) or `complexity.json`: the job is finished;
- `error.json`: the job failed (exception type, message, traceback); rerun with `--retry_failed`.

The list depends only on the flags, is sorted by name, and `split(jobs, i, n)` hands task `i` every
n-th job, so n hosts given the same flags run every job exactly once between them.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import importlib
import importlib.util
import json
import os
import traceback
from typing import Iterable, Sequence

METHODS = ("rd4ad", "sk_rd4ad", "rgpkd")
TRAIN, COMPLEXITY = "train_eval", "complexity"
METRICS_FILE = "eval_metrics.json"   # written by rgpkd_jax.evaluate
COMPLEXITY_FILE = "complexity.json"
ERROR_FILE = "error.json"
SPEC_FILE = "job.json"
TINY_DATASET = "synthetic"

# RGPKD's switches (DESIGN.md "RGPKD as we implement it"), one job variant each.
ABLATIONS = {
    "no_prompts": ("model.prompts=False",),
    "no_reconstruction": ("model.reconstruction=False",),
    "no_skips": ("model.skips=False",),
    "top_k3": ("model.top_k=3",),
}


def bank_size_ablation(size: int) -> tuple[str, tuple[str, ...]]:
    return f"bank{size}", (f"model.bank_size={size}",)


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

    @property
    def method_label(self) -> str:
        return f"{self.method}+{self.variant}" if self.variant else self.method

    @property
    def name(self) -> str:
        if self.kind == COMPLEXITY:
            return f"complexity/{self.method_label}/{self.dataset}/{self.category}"
        return f"{self.method_label}/{self.dataset}/{self.category}/seed{self.seed}"

    @property
    def config_arg(self) -> str:
        return f"{self.dataset}/{self.category}" + (",tiny" if self.tiny else "")

    @property
    def result_file(self) -> str:
        return COMPLEXITY_FILE if self.kind == COMPLEXITY else METRICS_FILE

    def workdir(self, root: str) -> str:
        return os.path.join(root, "jobs", *self.name.split("/"))

    def spec(self) -> dict:
        return {**dataclasses.asdict(self), "overrides": list(self.overrides), "name": self.name,
                "config_arg": self.config_arg}


def categories(dataset: str) -> tuple[str, ...]:
    """The dataset's categories, as its data-package module lists them (the one place they live)."""
    try:
        module = importlib.import_module(f"rgpkd_jax.data.{dataset}")
    except ModuleNotFoundError as error:
        if error.name != f"rgpkd_jax.data.{dataset}":
            raise
        module = None
    found = getattr(module, "CATEGORIES", None)
    if not found:
        raise ValueError(f"--categories=all: the category list of dataset {dataset!r} is unknown (no "
                         f"rgpkd_jax.data.{dataset}.CATEGORIES); name the categories explicitly")
    return tuple(found)


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
               complexity: bool = False) -> list[Job]:
    """Every job the flags ask for, sorted by name (the order `split` relies on)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    if ablations and "rgpkd" not in methods:
        raise ValueError("--ablations varies RGPKD; add rgpkd to --methods")
    if not seeds:
        raise ValueError("--seeds is empty; give at least one seed, e.g. --seeds=0")
    variants = {m: [("", ())] for m in methods}
    if ablations:
        variants["rgpkd"] += list(ABLATIONS.items()) + [bank_size_ablation(n) for n in ablation_bank_sizes]
    jobs = []
    for dataset in datasets:
        cats = expand_categories(dataset, category_names)
        for method in methods:
            for variant, variant_overrides in variants[method]:
                common = dict(method=method, dataset=dataset, variant=variant, tiny=tiny,
                              overrides=tuple(variant_overrides) + tuple(overrides))
                jobs += [Job(TRAIN, category=c, seed=s, **common) for c in cats for s in seeds]
                if complexity:  # complexity does not depend on the category: measure the first
                    jobs.append(Job(COMPLEXITY, category=cats[0], **common))
    duplicates = sorted(n for n, count in collections.Counter(j.name for j in jobs).items() if count > 1)
    if duplicates:
        raise ValueError(f"jobs listed twice (repeated flag values?): {duplicates}")
    return sorted(jobs, key=lambda j: j.name)


def split(jobs: Sequence[Job], task_index: int, num_tasks: int) -> list[Job]:
    """Task `task_index`'s share of `jobs` (round robin, so each task gets a mix of methods)."""
    if num_tasks < 1 or not 0 <= task_index < num_tasks:
        raise ValueError(f"--task_index={task_index} must be in [0, --num_tasks={num_tasks})")
    return list(jobs[task_index::num_tasks])


# --- state of a job on disk --------------------------------------------------------------------

def is_finished(job: Job, root: str) -> bool:
    return os.path.exists(os.path.join(job.workdir(root), job.result_file))


def read_error(job: Job, root: str) -> dict | None:
    path = os.path.join(job.workdir(root), ERROR_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def status(job: Job, root: str) -> str:
    if is_finished(job, root):
        return "finished"
    return "failed" if read_error(job, root) is not None else "pending"


def write_json(path: str, obj) -> None:
    """Writes to a temporary name, then renames: a reader never sees half a file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)


def spec_conflict(job: Job, root: str) -> str | None:
    """Why the job's workdir belongs to a different spec (other overrides, tiny...), or None."""
    path = os.path.join(job.workdir(root), SPEC_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        recorded = json.load(f)
    if recorded == json.loads(json.dumps(job.spec())):
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
    path = os.path.join(job.workdir(root), SPEC_FILE)
    if not os.path.exists(path):
        write_json(path, job.spec())
    return job.workdir(root)


def record_failure(job: Job, root: str, error: BaseException) -> dict:
    info = {"job": job.name, "type": type(error).__name__, "message": str(error),
            "traceback": "".join(traceback.format_exception(error))}
    write_json(os.path.join(job.workdir(root), ERROR_FILE), info)
    return info


def clear_failure(job: Job, root: str) -> None:
    path = os.path.join(job.workdir(root), ERROR_FILE)
    if os.path.exists(path):
        os.remove(path)


def run_jobs(jobs: Iterable[Job], root: str, runner, *, retry_failed: bool = False,
             log=print) -> dict[str, list[str]]:
    """Runs `runner(job, workdir)` for each job that is neither finished nor (unless `retry_failed`)
    failed; refuses to start if a job's workdir holds a run with other settings. A failure is written to the job's `error.json` and the next job goes on.

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
            log(f"[{number}/{len(jobs)}] {job.name}: failed before ({read_error(job, root)['type']}); "
                "skipped, pass --retry_failed to rerun it")
            outcome["skipped_failed"].append(job.name)
            continue
        log(f"[{number}/{len(jobs)}] {job.name}: running")
        try:
            workdir = claim_workdir(job, root)
            clear_failure(job, root)
            runner(job, workdir)
        except Exception as error:  # a failed job must not stop the others; it is recorded
            info = record_failure(job, root, error)
            log(f"[{number}/{len(jobs)}] {job.name}: FAILED with {info['type']}: {info['message']}")
            outcome["failed"].append(job.name)
            continue
        if is_finished(job, root):
            outcome["finished"].append(job.name)
        else:
            log(f"[{number}/{len(jobs)}] {job.name}: stopped before writing {job.result_file}; rerun to resume")
            outcome["unfinished"].append(job.name)
    return outcome


# --- configs ------------------------------------------------------------------------------------

def _parse_value(text: str, current, key: str):
    """`text` as the type of the field's current value; a clear error otherwise."""
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(f"--overrides {key}={text}: {key} is a bool; use True or False")
    if isinstance(current, (int, float)):
        try:
            value = type(current)(text)
        except ValueError:
            raise ValueError(f"--overrides {key}={text}: {key} is {type(current).__name__}") from None
        return value
    if isinstance(current, (tuple, list)):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"--overrides {key}={text}: {key} is a {type(current).__name__}; "
                             f"write it as a python literal, e.g. {current!r}") from None
        return type(current)(value)
    return text


def apply_overrides(config, overrides: Sequence[str]):
    """Sets each `key.sub=value` on the (locked) config, parsed with the existing field's type."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--overrides {item!r}: write key.sub=value, e.g. train.epochs=10")
        key, text = item.split("=", 1)
        *parents, leaf = key.strip().split(".")
        node = config
        for depth, part in enumerate(parents):
            if part not in node:
                raise ValueError(f"--overrides {item!r}: the config has no key "
                                 f"{'.'.join(parents[:depth + 1])!r}; top-level keys: {sorted(node.keys())}")
            node = node[part]
        if not hasattr(node, "keys") or leaf not in node:
            where = ".".join(parents) or "the config"
            known = sorted(node.keys()) if hasattr(node, "keys") else []
            raise ValueError(f"--overrides {item!r}: {where} has no key {leaf!r}; known: {known}")
        node[leaf] = _parse_value(text, node[leaf], key)
    return config


def load_config(job: Job, config_dir: str, *, data_dir: str = "", manual_dir: str = ""):
    """`configs/<method>.py`'s config for the job: seed, data paths, tiny teacher, overrides."""
    path = os.path.join(config_dir, f"{job.method}.py")
    if not os.path.exists(path):
        raise FileNotFoundError(f"config file {path} not found; pass --config_dir pointing at the configs folder")
    spec = importlib.util.spec_from_file_location(f"leaderboard_config_{job.method}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(job.config_arg)
    config.seed = job.seed
    if data_dir:
        config.dataset.data_dir = data_dir
    if manual_dir:
        config.dataset.manual_dir = manual_dir
    if job.tiny:  # a smoke run: a random teacher is allowed, and marked in every table
        config.teacher.weights = "random"
    apply_overrides(config, job.overrides)
    if not job.tiny and (config.teacher.weights == "random" or config.teacher.fallback_to_random):
        raise ValueError(f"{job.name}: a random teacher is allowed only with --tiny (it scores at chance "
                         "and is never a result); drop the teacher.weights / fallback_to_random override")
    return config
