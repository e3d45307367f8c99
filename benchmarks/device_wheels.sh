#!/usr/bin/env bash
# Downloads the wheels benchmarks/device_check.sh carries to an accelerator machine that has no
# package registry (Python 3.12, x86-64): what our code and the anomalib peer need beyond that
# machine's image (whose jax, flax, optax and orbax are used as they are). Run here, in the repository;
# .whl/ is git-ignored (add `/.whl/` to .git/info/exclude) and travels with the device call.
#
#   bash benchmarks/device_wheels.sh && du -sh .whl     # ~40 MiB (the device tool carries 64 MiB at most)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$@"
}
for missing in ml-collections==1.1.0 grain==0.2.18 tensorflow-datasets==4.9.10 array-record dm-tree immutabledict \
    simple-parsing tensorflow-metadata termcolor toml docstring-parser googleapis-common-protos importlib_resources portpicker \
    anomalib==2.7.0 jsonargparse kornia kornia_rs omegaconf typeshed_client platformdirs \
    matplotlib contourpy cycler fonttools kiwisolver pyparsing; do  # matplotlib: the job's and leaderboard's figures
  download .whl "$missing"
done
# Published as source only (pure python): built into wheels here.
python3 -m pip wheel -q --no-deps promise FrEIA==0.2 -w .whl
