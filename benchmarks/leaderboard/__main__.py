"""The leaderboard: train and evaluate every (method, dataset, category, seed), then tabulate.

    python -m benchmarks.leaderboard --workdir workdirs/leaderboard             # MVTec AD, every method
    python -m benchmarks.leaderboard --workdir workdirs/lb --datasets=mvtec_ad,visa --seeds=0,1,2
    python -m benchmarks.leaderboard --workdir workdirs/lb --ablations --methods=rgpkd  # RGPKD ablations
    python -m benchmarks.leaderboard --workdir workdirs/lb --settings=unified           # one model per dataset
    python -m benchmarks.leaderboard --workdir workdirs/tiny --tiny                    # CPU smoke run
    python -m benchmarks.leaderboard --workdir workdirs/lb --task_index=$I --num_tasks=$N  # one of N hosts
    python -m benchmarks.leaderboard --workdir workdirs/lb --mode=aggregate             # tables and report only

Each job writes into its own `<workdir>/jobs/...`; finished jobs are skipped on a rerun, failed ones
are recorded (`error.json`) and rerun with `--retry_failed`. Paths are relative to the working
directory. See docs/leaderboard.md and benchmarks/README.md.
"""

from __future__ import annotations

import os
import subprocess
import sys

from absl import flags

from benchmarks import REPO, common_flags
from benchmarks.leaderboard import aggregate, jobs as jobs_lib
from benchmarks.report import build as report
from rgpkd_jax import cli, train

MODES = ("run", "aggregate", "list")


def make_runner(*, config_dir: str, data_dir: str, manual_dir: str):
    """`runner(job, workdir)`: trains and evaluates in this process, or measures complexity in a
    fresh one (so its peak memory is that model's alone)."""

    def run(job: jobs_lib.Job, workdir: str) -> None:
        if job.kind == jobs_lib.COMPLEXITY:
            jobs_lib.load_config(job, config_dir)  # checks the overrides (and the teacher) here
            command = [sys.executable, "-m", "benchmarks.speed.complexity",
                       f"--config={jobs_lib.config_spec(job, os.path.abspath(config_dir))}",
                       *(f"--config.{o}" for o in jobs_lib.config_overrides(job)),
                       f"--output_dir={os.path.abspath(workdir)}"]
            if job.tiny:  # a smoke run: fewer timed calls
                command += ["--warmup=1", "--repeats=3", "--train_steps=3"]
            env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"benchmarks.speed.complexity exited with {done.returncode}:\n"
                                   f"{done.stderr[-4000:]}")
            return
        config = jobs_lib.load_config(job, config_dir, data_dir=data_dir, manual_dir=manual_dir)
        train.train_and_evaluate(config, workdir)

    return run


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "Root folder: jobs/ (one workdir per job) and the tables.")
    common_flags.define_output_dir(None, "the tables and plots (default: --workdir)")
    flags.DEFINE_enum("mode", "run", MODES, "run: this task's jobs, then the tables (when --num_tasks=1); "
                      "aggregate: the tables from what is finished; list: print the jobs and their state.")
    common_flags.define_methods("to train and evaluate")
    flags.DEFINE_list("datasets", ["mvtec_ad"], "Datasets (TFDS builders of rgpkd_jax.data).")
    flags.DEFINE_list("categories", ["all"], "Categories of every dataset, or 'all'.")
    common_flags.define_settings("one model per dataset trained on all --categories at once, evaluated per "
                                 "category (needs two or more)")
    common_flags.define_seeds([0], "one job each")
    common_flags.define_overrides()
    flags.DEFINE_string("data_dir", "", "TFDS data dir (default: the config's; --tiny: <workdir>/tfds_data).")
    flags.DEFINE_string("manual_dir", "", "Where downloaded archives lie, for datasets that need them.")
    common_flags.define_config_dir()
    flags.DEFINE_bool("tiny", False, "Smoke run of the whole pipeline on the embedded synthetic dataset "
                      "(tiny configs, random teacher, complexity on): minutes on a CPU, never a result.")
    flags.DEFINE_bool("ablations", False, "Add RGPKD's ablations (benchmarks/ablations.py): prompts, "
                      "reconstruction, skips off, top_k=3, and each --ablation_bank_sizes.")
    flags.DEFINE_list("ablation_bank_sizes", ["64"], "Prompt-bank sizes of the ablations.")
    flags.DEFINE_bool("complexity", False, "Also measure each model's complexity (one job per model).")
    flags.DEFINE_integer("task_index", 0, "This task's index in [0, --num_tasks).")
    flags.DEFINE_integer("num_tasks", 1, "Tasks sharing the job list (e.g. a SLURM array's size).")
    flags.DEFINE_bool("retry_failed", False, "Rerun jobs that failed before.")
    flags.DEFINE_bool("plots", True, "Write one PNG per dataset beside the tables.")
    flags.DEFINE_bool("report", True, "Write the HTML report (report/index.html) beside the tables "
                      "(docs/report.md).")


def main(argv):
    common_flags.check_arguments(argv)
    f = flags.FLAGS
    root = f.workdir
    if not root:
        raise ValueError("--workdir is required: the root folder of the job workdirs and tables")
    all_jobs = jobs_lib.build_jobs(
        methods=f.methods, datasets=[jobs_lib.TINY_DATASET] if f.tiny else f.datasets,
        category_names=f.categories, seeds=common_flags.whole_numbers(f.seeds, "seeds"), overrides=f.overrides,
        tiny=f.tiny, ablations=f.ablations, settings=f.settings,
        ablation_bank_sizes=common_flags.whole_numbers(f.ablation_bank_sizes, "ablation_bank_sizes"),
        complexity=f.complexity or f.tiny)
    mine = jobs_lib.split(all_jobs, f.task_index, f.num_tasks)

    if f.mode == "list":
        for job in mine:
            print(f"{jobs_lib.status(job, root):9s} {job.name}")
        return
    if f.mode == "run":
        data_dir = f.data_dir or (os.path.join(root, "tfds_data") if f.tiny else "")
        runner = make_runner(config_dir=f.config_dir, data_dir=data_dir, manual_dir=f.manual_dir)
        print(f"task {f.task_index} of {f.num_tasks}: {len(mine)} of {len(all_jobs)} jobs", flush=True)
        jobs_lib.check_specs(mine, root)
        outcome = jobs_lib.run_jobs(mine, root, runner, retry_failed=f.retry_failed)
        print("done: " + ", ".join(f"{len(v)} {k}" for k, v in outcome.items()), flush=True)
        if f.num_tasks > 1:
            print(f"task {f.task_index} of {f.num_tasks} finished; when every task has, write the tables "
                  "with the same flags and --mode=aggregate", flush=True)
            return
    pending = [j.name for j in all_jobs if jobs_lib.status(j, root) == "pending"]
    board = aggregate.aggregate(root, f.output_dir, pending=pending, plots=f.plots)
    print(f"wrote leaderboard.md, leaderboard.csv, leaderboard.json, complexity.csv and {len(board['plots'])} "
          f"plot(s) to {f.output_dir or root} ({len(board['failed'])} failed, {len(pending)} pending jobs)", flush=True)
    if f.report:
        written = report.write_report(root, os.path.join(f.output_dir or root, report.REPORT_DIR), pending=pending)
        print(report.summary_line(written), flush=True)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
