"""The benchmark harness: train and evaluate every (method, dataset, category, seed), then tabulate.

    python -m benchmarks.leaderboard --workdir workdirs/leaderboard                       # MVTec AD, 3 methods
    python -m benchmarks.leaderboard --workdir workdirs/lb --datasets=mvtec_ad,visa --seeds=0,1,2
    python -m benchmarks.leaderboard --workdir workdirs/lb --ablations --methods=rgpkd  # RGPKD ablations
    python -m benchmarks.leaderboard --workdir workdirs/tiny --tiny                     # CPU smoke run
    python -m benchmarks.leaderboard --workdir workdirs/lb --task_index=$I --num_tasks=$N  # one of N hosts
    python -m benchmarks.leaderboard --workdir workdirs/lb --mode=aggregate              # tables only

Each job writes into its own `<workdir>/jobs/...`; finished jobs are skipped on a rerun, failed ones
are recorded (`error.json`) and rerun with `--retry_failed`. See docs/leaderboard.md.
"""

from __future__ import annotations

import os
import subprocess
import sys

from absl import app, flags

from benchmarks import aggregate, jobs as jobs_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("run", "aggregate", "list")

_WORKDIR = flags.DEFINE_string("workdir", None, "Root folder: jobs/ (one workdir per job) and the tables.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the tables and plots go (default: --workdir).")
_MODE = flags.DEFINE_enum("mode", "run", MODES,
                          "run: this task's jobs, then the tables (when --num_tasks=1); aggregate: the "
                          "tables from what is finished; list: print the jobs and their state.")
_METHODS = flags.DEFINE_list("methods", list(jobs_lib.METHODS), "Methods (config files in --config_dir).")
_DATASETS = flags.DEFINE_list("datasets", ["mvtec_ad"], "Datasets (TFDS builders of rgpkd_jax.data).")
_CATEGORIES = flags.DEFINE_list("categories", ["all"], "Categories of every dataset, or 'all'.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds; one job each.")
_OVERRIDES = flags.DEFINE_multi_string(
    "overrides", [], "Config overrides for every job, key.sub=value (repeat the flag), e.g. train.epochs=10.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "TFDS data dir (default: the config's; --tiny: <workdir>/tfds_data).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", "", "Where downloaded archives lie, for datasets that need them.")
_CONFIG_DIR = flags.DEFINE_string("config_dir", os.path.join(REPO, "configs"), "Folder of <method>.py configs.")
_TINY = flags.DEFINE_bool("tiny", False, "Smoke run of the whole pipeline on the embedded synthetic dataset "
                          "(tiny configs, random teacher, complexity on): minutes on a CPU, never a result.")
_ABLATIONS = flags.DEFINE_bool("ablations", False, "Add RGPKD's ablations: prompts, reconstruction, skips off, "
                               "top_k=3, and each --ablation_bank_sizes.")
_ABLATION_BANK_SIZES = flags.DEFINE_list("ablation_bank_sizes", ["64"], "Prompt-bank sizes of the ablations.")
_COMPLEXITY = flags.DEFINE_bool("complexity", False, "Also measure each model's complexity (one job per model).")
_TASK_INDEX = flags.DEFINE_integer("task_index", 0, "This task's index in [0, --num_tasks).")
_NUM_TASKS = flags.DEFINE_integer("num_tasks", 1, "Tasks sharing the job list (e.g. a SLURM array's size).")
_RETRY_FAILED = flags.DEFINE_bool("retry_failed", False, "Rerun jobs that failed before.")
_PLOTS = flags.DEFINE_bool("plots", True, "Write one PNG per dataset beside the tables.")


def _ints(values: list[str], flag: str) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise app.UsageError(f"--{flag}={','.join(values)}: give whole numbers, e.g. --{flag}=0,1,2") from None


def job_list() -> list[jobs_lib.Job]:
    tiny = _TINY.value
    try:
        return jobs_lib.build_jobs(
            methods=_METHODS.value, datasets=[jobs_lib.TINY_DATASET] if tiny else _DATASETS.value,
            category_names=_CATEGORIES.value, seeds=_ints(_SEEDS.value, "seeds"), overrides=_OVERRIDES.value,
            tiny=tiny, ablations=_ABLATIONS.value,
            ablation_bank_sizes=_ints(_ABLATION_BANK_SIZES.value, "ablation_bank_sizes"),
            complexity=_COMPLEXITY.value or tiny)
    except ValueError as error:
        raise app.UsageError(str(error)) from None


def make_runner(*, config_dir: str, data_dir: str, manual_dir: str):
    """`runner(job, workdir)`: trains and evaluates in this process, or measures complexity in a
    fresh one (so its peak memory is that model's alone)."""

    def run(job: jobs_lib.Job, workdir: str) -> None:
        if job.kind == jobs_lib.COMPLEXITY:
            command = [sys.executable, "-m", "benchmarks.complexity", f"--method={job.method}",
                       f"--dataset={job.dataset}", f"--category={job.category}", f"--tiny={job.tiny}",
                       f"--config_dir={config_dir}", f"--output={os.path.join(workdir, jobs_lib.COMPLEXITY_FILE)}"]
            command += [f"--overrides={o}" for o in job.overrides]
            if job.tiny:  # a smoke run: fewer timed calls
                command += ["--warmup=1", "--repeats=3", "--train_steps=3"]
            env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"benchmarks.complexity exited with {done.returncode}:\n{done.stderr[-4000:]}")
            return
        from rgpkd_jax import train  # late: --mode=list/aggregate and --help stay fast
        config = jobs_lib.load_config(job, config_dir, data_dir=data_dir, manual_dir=manual_dir)
        train.train_and_evaluate(config, workdir)

    return run


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    root = _WORKDIR.value
    if not root:
        raise app.UsageError("--workdir is required: the root folder of the job workdirs and tables")
    all_jobs = job_list()
    try:
        mine = jobs_lib.split(all_jobs, _TASK_INDEX.value, _NUM_TASKS.value)
    except ValueError as error:
        raise app.UsageError(str(error)) from None

    if _MODE.value == "list":
        for job in mine:
            print(f"{jobs_lib.status(job, root):9s} {job.name}")
        return
    if _MODE.value == "run":
        data_dir = _DATA_DIR.value or (os.path.join(root, "tfds_data") if _TINY.value else "")
        runner = make_runner(config_dir=_CONFIG_DIR.value, data_dir=data_dir, manual_dir=_MANUAL_DIR.value)
        _log(f"task {_TASK_INDEX.value} of {_NUM_TASKS.value}: {len(mine)} of {len(all_jobs)} jobs")
        try:
            jobs_lib.check_specs(mine, root)
        except ValueError as error:
            raise app.UsageError(str(error)) from None
        outcome = jobs_lib.run_jobs(mine, root, runner, retry_failed=_RETRY_FAILED.value, log=_log)
        _log("done: " + ", ".join(f"{len(v)} {k}" for k, v in outcome.items()))
        if _NUM_TASKS.value > 1:
            _log(f"task {_TASK_INDEX.value} of {_NUM_TASKS.value} finished; when every task has, write the "
                 "tables with the same flags and --mode=aggregate")
            return
    pending = [j.name for j in all_jobs if jobs_lib.status(j, root) == "pending"]
    board = aggregate.aggregate(root, _OUTPUT_DIR.value, pending=pending, plots=_PLOTS.value)
    output = _OUTPUT_DIR.value or root
    _log(f"wrote leaderboard.md, leaderboard.csv, leaderboard.json, complexity.csv and {len(board['plots'])} "
         f"plot(s) to {output} ({len(board['failed'])} failed, {len(pending)} pending jobs)")


def _log(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    app.run(main)
