#!/usr/bin/env bash
# The accelerator check: one command, at most ~8 minutes on one GPU, that runs what only an
# accelerator can tell us and writes JSON + Markdown under a folder it prints.
#
#   bash benchmarks/device_check.sh [--dry-run] [OUTPUT_DIR [--steps=NAME,...]]
#
# Steps, most important first, each bounded in time and together within 8 minutes of device time
# (a step that would start with under 30 s left is recorded as skipped; a failed step is recorded
# and the next one still runs; benchmarks/speed/device_check.py has the limits):
#   1. packages: the machine's own Python, jax and flax are used (flax must match its jax: flax 0.12.8
#      fails to import under jax 0.11.2); wheels carried in .whl/ go into a fresh private folder first
#      on the path, only for distributions the machine lacks, never over its own;
#   2. tests: the GPU-relevant tests (conv_impl xla/cpu equality, bfloat16 numerics, model tests),
#      float32 at full precision (tests/conftest.py; docs/architecture.md, "Numerics");
#   3. job: one MVTec-sized job end to end (RD4AD-WRN50, 256 px, 200 epochs of 240 synthetic
#      256-px PNGs: prepare, setup, compile, train, data wait, evaluate in seconds), then its
#      StableHLO artefact (cpu + cuda) run on the GPU beside the JAX model;
#   4. leaderboard_tiny: the tiny leaderboard, every method on one synthetic category;
#   5. speed_memory: device peak allocations, ours and anomalib's;
#   6. speed_xla, speed_cpu_rewrites: the speed variants (conv_impl x float32/bfloat16) against
#      anomalib's ReverseDistillation on the same GPU (xla measured 2026-11-29: usually skipped by
#      the budget; `--steps=speed_xla,speed_cpu_rewrites` runs them in a later lease);
#   7. one report: device_check.json + device_check.md.
# --dry-run: the same steps at their tiny sizes on whatever backend is here, without the budget (CI
# runs it on the CPU to check the structure; tests/benchmarks/device_check_test.py), no wheels installed.
# Options after the output folder go to benchmarks.speed.device_check (e.g. --steps=job,tests).
# OUTPUT_DIR defaults to $OUT/device_check where $OUT is set, else benchmarks/results/device_check.
set -uo pipefail
cd "$(dirname "$0")/.."

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then dry_run=1; shift; fi
out_dir=${1:-${OUT:+$OUT/device_check}}
shift || true
out_dir=${out_dir:-benchmarks/results/device_check}
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
python=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if [ "$dry_run" = 0 ] && [ -d .whl ]; then
  # Wheels whose distribution the machine lacks (by name): installed into /tmp/site, first on the path.
  missing=$("$python" - .whl <<'EOF'
import importlib.metadata, pathlib, sys
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name = wheel.name.split("-")[0]
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        print(wheel)
EOF
)
  if [ -n "$missing" ]; then
    site=$(mktemp -d)
    echo "[device_check] installing carried wheels into $site: $(echo $missing | tr '\n' ' ')"
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" $missing \
      && export PYTHONPATH="$site:$PYTHONPATH"
  fi
fi

args=(--output_dir="$out_dir" "$@")
if [ "$dry_run" = 1 ]; then args+=(--dry_run); fi
"$python" -m benchmarks.speed.device_check "${args[@]}"
rc=$?
echo "[device_check] results in $out_dir"
exit $rc
