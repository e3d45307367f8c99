"""`python -m benchmarks.metrics --output_dir DIR`: the metric benchmark (see the package docstring)."""

from __future__ import annotations

import shlex
import sys

from absl import app, flags

from benchmarks import metrics
from rgpkd_jax import cli, files

flags.DEFINE_string("output_dir", None, "Where metrics_benchmark.json and metrics_benchmark.md go.",
                    required=True)
flags.DEFINE_integer("num_images", 460, "Test images (a third good); 460 at 256 px is ~30 M pixels, "
                     "a large VisA category.", lower_bound=3)
flags.DEFINE_integer("image_size", 256, "Image side in pixels (a multiple of 16).", lower_bound=16)
flags.DEFINE_integer("repeats", 3, "Timed calls per case; the best is reported.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the random test set.")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    if f.image_size % 16:
        raise app.UsageError(f"--image_size={f.image_size}: give a multiple of 16 (the maps' noise is "
                             "drawn on a 16x coarser grid)")
    files.ensure_writable_dir(f.output_dir, what="--output_dir")
    command = "python -m benchmarks.metrics " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = metrics.run(f.num_images, f.image_size, f.repeats, f.seed)
    paths = metrics.write(report, f.output_dir, command)
    print(metrics.markdown(report, command))
    print("written: " + ", ".join(paths), flush=True)


if __name__ == "__main__":
    cli.run(main, compilation_cache=False)
