"""The benchmark report: one static page per dataset and setting, category, efficiency and provenance.

    python -m benchmarks.report --workdir workdirs/lb                  # writes workdirs/lb/report/index.html
    python -m benchmarks.report --workdir workdirs/tiny --output_dir /tmp/tiny_report

Reads a leaderboard workdir (`python -m benchmarks.leaderboard`, which also writes the report at
the end of every run) and opens from file:// with no server and no network. See docs/report.md.
"""

from __future__ import annotations

import os

from absl import flags

from benchmarks import common_flags
from benchmarks.report import build
from rgpkd_jax import cli


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "A leaderboard's --workdir (its jobs/ folder is read).")
    common_flags.define_output_dir(None, "the report (default: <workdir>/report; replaced whole)")


def main(argv):
    common_flags.check_arguments(argv)
    f = flags.FLAGS
    if not f.workdir:
        raise ValueError("--workdir is required: a leaderboard workdir (the folder holding jobs/)")
    if not os.path.isdir(os.path.join(f.workdir, "jobs")):
        raise ValueError(f"--workdir={f.workdir} holds no jobs/ folder: give the --workdir of a leaderboard run")
    written = build.write_report(f.workdir, f.output_dir)
    print(build.summary_line(written))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
