"""Our ONNX export against anomalib's, both under onnxruntime (`onnx_bench` says what is measured).

    python -m benchmarks.export [--image_size=256] [--batch_sizes=1,16] [--repeats=5] [--output_dir=DIR]

Writes `onnx_export.json` and `onnx_export.md` into `--output_dir`. Needs the `peers` and `export`
extras and jax2onnx (README, "Deploy").
"""

from __future__ import annotations

import json
import os

from absl import flags

from benchmarks import common_flags, optional
from benchmarks.export import onnx_bench
from benchmarks.speed.sizes import FULL
from rgpkd_jax import cli, files

JSON_FILE, MARKDOWN_FILE = "onnx_export.json", "onnx_export.md"


def define_flags() -> None:
    flags.DEFINE_integer("image_size", FULL.image_size, "Image side of both exports.")
    flags.DEFINE_list("batch_sizes", [str(b) for b in FULL.infer_batches], "Batch sizes, one latency row each.")
    flags.DEFINE_integer("repeats", 5, "Timed runs per engine and batch size; rows report medians.")
    flags.DEFINE_string("arch", FULL.arch, "Teacher / backbone of both models.")
    flags.DEFINE_integer("threads", None, "onnxruntime intra-op threads (default: all cores).")
    common_flags.define_config_dir()
    common_flags.define_overrides()
    common_flags.define_output_dir("benchmarks/results", f"{JSON_FILE} and {MARKDOWN_FILE}")
    flags.DEFINE_string("memory_probe", None, "Used by the benchmark itself: '<engine>:<model.onnx>' measures "
                        "one session's memory in this process at the first --batch_sizes and prints it.")


def main(argv) -> None:
    common_flags.check_arguments(argv)
    f = flags.FLAGS
    batch_sizes = common_flags.whole_numbers(f.batch_sizes, "batch_sizes")
    threads = f.threads or os.cpu_count() or 1
    if f.memory_probe:
        engine, _, path = f.memory_probe.partition(":")
        common_flags.check_choices("memory_probe", [engine], onnx_bench.ENGINES)
        print(json.dumps(onnx_bench.memory_probe(path, engine, image_size=f.image_size,
                                                 batch_size=batch_sizes[0], threads=threads)))
        return
    optional.require(onnx_bench.REQUIRED, what="the ONNX export benchmark", install=optional.EXPORT_HINT)
    result = onnx_bench.measure(image_size=f.image_size, batch_sizes=batch_sizes, repeats=f.repeats, arch=f.arch,
                                threads=threads, config_dir=f.config_dir, overrides=f.overrides)
    os.makedirs(f.output_dir, exist_ok=True)
    files.write_json(os.path.join(f.output_dir, JSON_FILE), result)
    table = onnx_bench.markdown(result)
    files.write_text(os.path.join(f.output_dir, MARKDOWN_FILE), table + "\n")
    print(table)
    print(f"wrote {os.path.join(f.output_dir, JSON_FILE)} and {MARKDOWN_FILE}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
