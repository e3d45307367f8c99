"""The accelerator check's steps and report (`bash benchmarks/device_check.sh` runs this).

    python -m benchmarks.speed.device_check --output_dir=DIR [--dry_run] [--steps=job,tests]

Each step is a subprocess with its own time limit, so one that hangs or fails is recorded and the
next one still runs; together they stay within `BUDGET_S` of device time (a step that would start
with less than `MIN_STEP_S` left is recorded as skipped). The report gathers the environment,
every step's outcome and the rows (speed, memory, the MVTec-sized job's phases, the StableHLO
artefact) into `device_check.json` and `device_check.md`. With --dry_run every step runs at its
tiny size (tests only collected) with no device budget: a structure check that CI runs on the CPU.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import subprocess
import sys
import time
from typing import Sequence

import jax
from absl import flags

from benchmarks import REPO, common_flags
from benchmarks.speed import job_timing, report
from rgpkd_jax import cli, files, provenance

JSON_FILE, MARKDOWN_FILE = "device_check.json", "device_check.md"
# Tests whose outcome depends on the backend: conv implementations, bfloat16 numerics, models.
GPU_TESTS = ("tests/models/conv_ops_test.py", "tests/models/compute_dtype_test.py", "tests/models/rd4ad_test.py")
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "torch", "torchvision", "anomalib")
# The device time the steps may take together (a lease is 15 minutes, machine start included),
# and the least worth starting a step with.
BUDGET_S, MIN_STEP_S = 480, 30
DRY_RUN_TIMEOUT_S = 300  # per tiny step on a loaded CPU


@dataclasses.dataclass
class Step:
    name: str
    command: list[str]
    timeout_s: int
    speed_dir: str = ""   # where a speed step writes its JSON (read into the report)
    job_dir: str = ""     # where the job step writes job_timing.json


def plan(output_dir: str, dry_run: bool) -> list[Step]:
    """The steps, most important first (a GPU lease may end before the last one). Time limits
    from the H200 run of 2026-11-29 (benchmarks/NOTES.md): speed_xla took 135 s, mostly compiling;
    the tests had run 14 of their cases in 80 s and 19 in 165 s; the memory section did not finish
    in 110 s. The job's 200 epochs of 15 steps take ~80 s at that run's 589 images/s, its
    compilations and evaluation about as long again (estimates, to be replaced by its first run)."""
    python = sys.executable
    size = ["--tiny"] if dry_run else []

    def speed(name: str, sections: str, extra: list[str], timeout_s: int) -> Step:
        folder = os.path.join(output_dir, name)
        return Step(name, [python, "-m", "benchmarks.speed", *size, "--methods=rd4ad", f"--sections={sections}",
                           f"--output_dir={folder}", "--budget_s=1e9", *extra], timeout_s, folder)

    tests = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *GPU_TESTS,
             f"--junitxml={os.path.join(output_dir, 'tests.xml')}"]
    job_dir = os.path.join(output_dir, "job")
    # Every registered method, one synthetic category (a GPU run of the whole --tiny list would
    # spend the budget on compilations); the dry run: one method.
    leaderboard = [python, "-m", "benchmarks.leaderboard", "--tiny", "--categories=grid", "--settings=per_category",
                   f"--workdir={os.path.join(output_dir, 'leaderboard')}", *(["--methods=rd4ad"] if dry_run else [])]
    return [
        Step("tests", tests + (["--collect-only"] if dry_run else []), 130),
        # 256-px sources, as the issue asks: generating 1024-px PNGs would take ~1 core-second
        # each of the lease (benchmarks.speed.input_pipeline measures their decoding on a CPU).
        Step("job", [python, "-m", "benchmarks.speed.job_timing", *size, f"--output_dir={job_dir}",
                     *([] if dry_run else ["--source_size=256"])], 200, job_dir=job_dir),
        Step("leaderboard_tiny", leaderboard, 70),
        speed("speed_memory", "memory", [], 110),
        speed("speed_xla", "variants", ["--variants=xla:float32,xla:bfloat16"], 150),
        speed("speed_cpu_rewrites", "variants", ["--variants=cpu:float32,cpu:bfloat16"], 70),
    ]


def run_step(step: Step, log_dir: str, timeout_s: float) -> dict:
    start = time.perf_counter()
    log_path = os.path.join(log_dir, f"{step.name}.log")
    with open(log_path, "w") as log:
        try:
            rc = subprocess.run(step.command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                timeout=timeout_s).returncode
            timed_out = False
        except subprocess.TimeoutExpired:
            rc, timed_out = None, True
    return {"name": step.name, "command": " ".join(step.command), "rc": rc, "timed_out": timed_out,
            "skipped": False, "seconds": round(time.perf_counter() - start, 1), "log": os.path.basename(log_path)}


def skipped(step: Step, left_s: float) -> dict:
    return {"name": step.name, "command": " ".join(step.command), "rc": None, "timed_out": False,
            "skipped": True, "seconds": 0.0, "log": f"not run: {left_s:.0f} s of the {BUDGET_S} s budget left"}


def run_steps(steps: list[Step], log_dir: str, *, dry_run: bool) -> list[dict]:
    """Each step in turn, its limit cut to what is left of BUDGET_S (none in a dry run)."""
    outcomes, used_s = [], 0.0
    for step in steps:
        left_s = BUDGET_S - used_s
        if not dry_run and left_s < MIN_STEP_S:
            outcomes.append(skipped(step, left_s))
            continue
        outcome = run_step(step, log_dir, max(step.timeout_s, DRY_RUN_TIMEOUT_S) if dry_run
                           else min(step.timeout_s, left_s))
        used_s += outcome["seconds"]
        outcomes.append(outcome)
    return outcomes


def environment() -> dict:
    versions = provenance.package_versions(*PACKAGES)
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        gpu = ""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "backend": jax.default_backend(), "devices": [d.device_kind for d in jax.devices()],
            "nvidia_smi": gpu, "python": sys.version.split()[0], "versions": versions}


def _written(folder: str, name: str) -> dict | None:
    """The JSON file a step wrote, or None (not its kind of step, or it failed before writing)."""
    path = os.path.join(folder, name)
    if not folder or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _speed_rows(step: Step) -> list[dict]:
    result = _written(step.speed_dir, report.JSON_FILE)
    return [{**row, "step": step.name, "peer_device": result["versions"].get("torch_device")}
            for row in result["rows"]] if result else []


def _job_rows(step: Step) -> list[dict]:
    """The MVTec-sized job's phases and its StableHLO artefact as report rows (ours only)."""
    job = _written(step.job_dir, job_timing.JSON_FILE)
    if not job:
        return []
    what = (f"RD4AD {job['teacher']}, {job['image_size']} px, {job['epochs']} epochs of {job['num_train']} "
            f"images, batch {job['batch_size']}")

    def row(name, value, unit, note):
        return {"name": name, "ours": value, "peer": None, "ratio": None, "unit": unit, "note": note,
                "step": step.name, "peer_device": None}

    rows = [row(f"job/{phase}", seconds, "s", what) for phase, seconds in job["seconds"].items()]
    rows.append(row("job/steady_images_per_sec", job["images_per_sec"], "images/s", what))
    artefact = job["stablehlo"]
    note = f"StableHLO for {','.join(artefact['platforms'])}, run on {artefact['ran_on']}"
    rows += [row("stablehlo/export_s", artefact["export_s"], "s", note),
             row("stablehlo/first_call_s", artefact["first_call_s"], "s", note),
             row("stablehlo/max_map_diff", artefact["max_map_diff_of_range"], "of map range", note),
             row("stablehlo/max_score_diff", artefact["max_score_diff_of_range"], "of map range", note)]
    return rows


def to_markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"# Accelerator check ({'dry run, ' if result['dry_run'] else ''}{env['date']})", "",
             f"Backend `{env['backend']}`, devices {env['devices']}, {env['nvidia_smi'] or 'no nvidia-smi'}; "
             f"python {env['python']}; " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v), "",
             "| step | exit | seconds |", "|---|---|---|"]
    lines += [f"| {s['name']} | {'skipped' if s['skipped'] else 'timed out' if s['timed_out'] else s['rc']} | "
              f"{s['seconds']} |" for s in result["steps"]]
    lines += ["", "| row | ours | peer | ours / peer | unit | note |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {report.format_number(r['ours'])} | {report.format_number(r['peer'])} | "
              f"{report.format_number(r['ratio'])} | {r['unit']} | {r['note']} |" for r in result["rows"]]
    return "\n".join(lines) + "\n"


def check(output_dir: str, *, dry_run: bool, names: Sequence[str] = ()) -> dict:
    """Runs the planned steps (those named in `names`, when given) and writes the report."""
    os.makedirs(output_dir, exist_ok=True)
    steps = [step for step in plan(output_dir, dry_run) if not names or step.name in names]
    outcomes = run_steps(steps, output_dir, dry_run=dry_run)
    result = {"dry_run": dry_run, "budget_s": None if dry_run else BUDGET_S, "environment": environment(),
              "steps": outcomes, "rows": [row for step in steps for row in _speed_rows(step) + _job_rows(step)]}
    files.write_json(os.path.join(output_dir, JSON_FILE), result)
    files.write_text(os.path.join(output_dir, MARKDOWN_FILE), to_markdown(result))
    return result


def define_flags() -> None:
    common_flags.define_output_dir("benchmarks/results/device_check", "the report and each step's log")
    flags.DEFINE_bool("dry_run", False, "every step at the tiny size, tests only collected (structure check)")
    flags.DEFINE_list("steps", [], "Run only these steps (default: all, in order, within the budget), e.g. "
                      "--steps=speed_xla,speed_cpu_rewrites for a second lease.")


def main(argv) -> None:
    common_flags.check_arguments(argv)
    f = flags.FLAGS
    if f.steps:
        common_flags.check_choices("steps", f.steps, [step.name for step in plan("", True)])
    outcome = check(os.path.abspath(f.output_dir), dry_run=f.dry_run, names=f.steps)
    print(to_markdown(outcome), flush=True)
    failed = [s["name"] for s in outcome["steps"] if s["rc"] != 0 and not s["skipped"]]
    if failed:
        sys.exit(f"error: device check: step(s) failed or timed out: {', '.join(failed)} "
                 f"(logs in {f.output_dir})")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
