"""How many training images per second the input pipeline delivers, decoding every batch and from
the decoded cache (`data.decoded_cache_mib`), against what a GPU's train step consumes.

    python -m benchmarks.speed.input_pipeline --output_dir=workdirs/pipeline

The data is an MVTec-sized category (`mvtec_like`: 240 training images, 1024-px PNGs) read through
the `folder` dataset at `--image_size` with RD4AD's config, batch 16, no augmentation, as training
reads it (`pipeline.train_iterator`, after the first batch). Writes `input_pipeline.json`.
"""

from __future__ import annotations

import os
import time

from absl import flags

from benchmarks import common_flags
from benchmarks.speed import mvtec_like
from rgpkd_jax import cli, files
from rgpkd_jax.data import pipeline

JSON_FILE = "input_pipeline.json"
# RD4AD-WRN50's train step on one H200, float32, 256 px (benchmarks/NOTES.md, 2026-11-29).
GPU_IMAGES_PER_SEC = 589.0


def images_per_second(config, batches: int) -> tuple[float, float]:
    """(seconds to the first batch, images/s over the next `batches`)."""
    start = time.perf_counter()
    iterator = pipeline.train_iterator(config, shard_index=0, shard_count=1)
    next(iterator)
    first = time.perf_counter() - start
    start = time.perf_counter()
    images = sum(len(next(iterator)["image"]) for _ in range(batches))
    return first, images / (time.perf_counter() - start)


def measure(data_root: str, *, image_size: int, source_size: int, batches: int) -> dict:
    start = time.perf_counter()
    mvtec_like.write_category(os.path.join(data_root, "source"), mvtec_like.CATEGORY, size=source_size)
    generate_s = time.perf_counter() - start
    result = {"image_size": image_size, "source_size": source_size, "batch_size": 16, "batches": batches,
              "cpu_count": os.cpu_count(), "generate_s": round(generate_s, 1),
              "gpu_consumes_images_per_sec": GPU_IMAGES_PER_SEC}
    for name, budget in (("decode_every_batch", 0.0), ("decoded_cache", 4096.0)):
        config = mvtec_like.load_config(data_root, [f"dataset.image_size={image_size}", "train.batch_size=16",
                                                    f"data.decoded_cache_mib={budget}"])
        if name == "decode_every_batch":
            start = time.perf_counter()
            pipeline.prepared_builder(config)
            result["prepare_s"] = round(time.perf_counter() - start, 1)
        first, rate = images_per_second(config, batches)
        result[name] = {"first_batch_s": round(first, 2), "images_per_sec": round(rate, 1),
                        "fraction_of_gpu": round(rate / GPU_IMAGES_PER_SEC, 3)}
    return result


def define_flags() -> None:
    common_flags.define_output_dir("workdirs/input_pipeline", "input_pipeline.json and the generated data")
    flags.DEFINE_integer("image_size", 256, "Training image side in pixels.")
    flags.DEFINE_integer("source_size", mvtec_like.SOURCE_SIZE, "Side of the generated PNGs in pixels.")
    flags.DEFINE_integer("batches", 30, "Batches timed after the first (15 make an epoch).")


def main(argv) -> None:
    common_flags.check_arguments(argv)
    f = flags.FLAGS
    os.makedirs(f.output_dir, exist_ok=True)
    result = measure(os.path.abspath(f.output_dir), image_size=f.image_size, source_size=f.source_size,
                     batches=f.batches)
    path = os.path.join(f.output_dir, JSON_FILE)
    files.write_json(path, result)
    for name in ("decode_every_batch", "decoded_cache"):
        row = result[name]
        print(f"{name:20s} {row['images_per_sec']:8.1f} images/s ({row['fraction_of_gpu']:.2f} of the "
              f"{GPU_IMAGES_PER_SEC:.0f} an H200 trains on), first batch after {row['first_batch_s']} s")
    print(f"wrote {path}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
