"""The accelerator check's steps and report (`bash benchmarks/device_check.sh` runs this).

    python -m benchmarks.speed.device_check --output_dir=DIR [--dry_run]

Each step is a subprocess with its own time limit, so one that hangs or fails is recorded and the
next one still runs; the report gathers the environment, every step's outcome and the speed rows
into `device_check.json` and `device_check.md`. With --dry_run every step runs at the benchmark's
tiny size (tests only collected): a structure check that CI runs on the CPU.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import subprocess
import sys
import time

import jax
from absl import flags

from benchmarks import REPO, common_flags
from benchmarks.speed import report
from rgpkd_jax import cli, files

JSON_FILE, MARKDOWN_FILE = "device_check.json", "device_check.md"
# Tests whose outcome depends on the backend: conv implementations, bfloat16 numerics, models.
GPU_TESTS = ("tests/models/conv_ops_test.py", "tests/models/compute_dtype_test.py", "tests/models/rd4ad_test.py")
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "torch", "torchvision", "anomalib")


@dataclasses.dataclass
class Step:
    name: str
    command: list[str]
    timeout_s: int
    speed_dir: str = ""   # where a speed step writes its JSON (read into the report)


def plan(output_dir: str, dry_run: bool) -> list[Step]:
    """The steps, most important first (a GPU lease may end before the last one). Time limits
    from the H200 run of 2026-11-29 (benchmarks/NOTES.md): speed_xla took 135 s, mostly compiling;
    the tests had run 14 of their cases in 80 s and 19 in 165 s."""
    python = sys.executable
    size = ["--tiny"] if dry_run else []

    def speed(name: str, sections: str, extra: list[str], timeout_s: int) -> Step:
        folder = os.path.join(output_dir, name)
        return Step(name, [python, "-m", "benchmarks.speed", *size, "--methods=rd4ad", f"--sections={sections}",
                           f"--output_dir={folder}", "--budget_s=1e9", *extra], timeout_s, folder)

    tests = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *GPU_TESTS,
             f"--junitxml={os.path.join(output_dir, 'tests.xml')}"]
    return [
        speed("speed_xla", "variants", ["--variants=xla:float32,xla:bfloat16"], 150),
        Step("tests", tests + (["--collect-only"] if dry_run else []), 150),
        speed("speed_memory", "memory", [], 110),
        speed("speed_cpu_rewrites", "variants", ["--variants=cpu:float32,cpu:bfloat16"], 70),
    ]


def run_step(step: Step, log_dir: str) -> dict:
    start = time.perf_counter()
    log_path = os.path.join(log_dir, f"{step.name}.log")
    with open(log_path, "w") as log:
        try:
            rc = subprocess.run(step.command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                timeout=step.timeout_s).returncode
            timed_out = False
        except subprocess.TimeoutExpired:
            rc, timed_out = None, True
    return {"name": step.name, "command": " ".join(step.command), "rc": rc, "timed_out": timed_out,
            "seconds": round(time.perf_counter() - start, 1), "log": os.path.basename(log_path)}


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        gpu = ""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "backend": jax.default_backend(), "devices": [d.device_kind for d in jax.devices()],
            "nvidia_smi": gpu, "python": sys.version.split()[0], "versions": versions}


def _speed_rows(step: Step) -> list[dict]:
    path = os.path.join(step.speed_dir, report.JSON_FILE)
    if not step.speed_dir or not os.path.exists(path):
        return []
    with open(path) as f:
        result = json.load(f)
    return [{**row, "step": step.name, "peer_device": result["versions"].get("torch_device")}
            for row in result["rows"]]


def to_markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"# Accelerator check ({'dry run, ' if result['dry_run'] else ''}{env['date']})", "",
             f"Backend `{env['backend']}`, devices {env['devices']}, {env['nvidia_smi'] or 'no nvidia-smi'}; "
             f"python {env['python']}; " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v), "",
             "| step | exit | seconds |", "|---|---|---|"]
    lines += [f"| {s['name']} | {'timed out' if s['timed_out'] else s['rc']} | {s['seconds']} |"
              for s in result["steps"]]
    lines += ["", "| row | ours | peer | ours / peer | unit | note |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {report.format_number(r['ours'])} | {report.format_number(r['peer'])} | "
              f"{report.format_number(r['ratio'])} | {r['unit']} | {r['note']} |" for r in result["rows"]]
    return "\n".join(lines) + "\n"


def check(output_dir: str, *, dry_run: bool) -> dict:
    os.makedirs(output_dir, exist_ok=True)
    steps = plan(output_dir, dry_run)
    outcomes = [run_step(step, output_dir) for step in steps]
    result = {"dry_run": dry_run, "environment": environment(), "steps": outcomes,
              "rows": [row for step in steps for row in _speed_rows(step)]}
    files.write_json(os.path.join(output_dir, JSON_FILE), result)
    files.write_text(os.path.join(output_dir, MARKDOWN_FILE), to_markdown(result))
    return result


def define_flags() -> None:
    common_flags.define_output_dir("benchmarks/results/device_check", "the report and each step's log")
    flags.DEFINE_bool("dry_run", False, "every step at the tiny size, tests only collected (structure check)")


def main(argv) -> None:
    common_flags.check_arguments(argv)
    outcome = check(os.path.abspath(flags.FLAGS.output_dir), dry_run=flags.FLAGS.dry_run)
    print(to_markdown(outcome), flush=True)
    failed = [s["name"] for s in outcome["steps"] if s["rc"] != 0]
    if failed:
        sys.exit(f"error: device check: step(s) failed or timed out: {', '.join(failed)} "
                 f"(logs in {flags.FLAGS.output_dir})")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
