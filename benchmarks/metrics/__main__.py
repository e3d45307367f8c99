"""`python -m benchmarks.metrics --output_dir DIR`: the metric benchmark (`measure` says what it
measures). Writes `metrics_benchmark.json` and `metrics_benchmark.md` into `--output_dir`."""

from __future__ import annotations

import shlex
import sys

from absl import flags

from benchmarks import common_flags
from benchmarks.metrics import measure
from rgpkd_jax import cli, files


def define_flags() -> None:
    flags.DEFINE_list("num_images", ["460"], "Test-set sizes in images (a third good), one table each; 460 at "
                      "256 px is ~30 M pixels, a large VisA category.")
    flags.DEFINE_integer("image_size", 256, "Image side in pixels (a multiple of 16).")
    flags.DEFINE_integer("repeats", 3, "Timed calls per case; the best is reported.")
    flags.DEFINE_integer("maps_seed", 0, "Seed of the random test set's maps (one number; --seeds elsewhere lists runs).")
    common_flags.define_output_dir(None, f"{measure.JSON_FILE} and {measure.MARKDOWN_FILE}")


def main(argv) -> None:
    common_flags.check_arguments(argv)
    f = flags.FLAGS
    if not f.output_dir:
        raise ValueError("--output_dir is required: where the JSON and Markdown files go")
    sizes = common_flags.whole_numbers(f.num_images, "num_images")
    if min(sizes, default=0) < 3:
        raise ValueError(f"--num_images={','.join(f.num_images)}: give sizes of at least 3 (a third of a test "
                         "set is good)")
    if f.image_size < 16 or f.image_size % 16:
        raise ValueError(f"--image_size={f.image_size}: give a multiple of 16 (the maps' noise is drawn on a "
                         "16x coarser grid)")
    if f.repeats < 1:
        raise ValueError(f"--repeats={f.repeats}: give at least 1")
    files.ensure_writable_dir(f.output_dir, what="--output_dir")
    command = "python -m benchmarks.metrics " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    reports = [measure.run(n, f.image_size, f.repeats, f.maps_seed) for n in sizes]
    paths = measure.write(reports, f.output_dir, command)
    print(measure.markdown(reports, command))
    print("wrote " + " and ".join(paths), flush=True)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
