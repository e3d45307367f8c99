"""One MVTec-sized training job end to end, in phases: what a leaderboard job costs besides its steps.

    python -m benchmarks.speed.job_timing --output_dir=DIR [--tiny]

RD4AD, WideResNet50-2 teacher (random weights: timing only), 256 px, batch 16, 200 epochs of the
`mvtec_like` category (240 training images, 115 test images, 1024-px PNGs; `--source_size`), as
`python -m rgpkd_jax.main --mode=train_eval` runs it (`train.train_and_evaluate`). The phases, in
seconds, from wall clocks around the run and its `metrics.jsonl` (one record per epoch):

- `generate_s`: writing the PNG folder (the benchmark's own data, not a job cost);
- `prepare_s`: the folder to array_record records (once per dataset, not per job);
- `setup_s`: from the call to the first training step: model, teacher, optimiser, devices, the
  data iterator (with the decoded cache: decoding the split);
- `compile_s`: the first epoch's wall time less its steps at the steady step time;
- `train_s`: the other steps' wall time (`data_wait_s`: the part spent waiting for batches);
- `evaluate_s`: from the last step to the end: the last checkpoint save, the threshold over the
  training images, the test split's maps, every metric and figure.

Then the trained job is exported as StableHLO for `cpu` and `cuda` (`rgpkd_jax.exporting`), and
the artefact for this backend (on a GPU: the CUDA lowering) runs on 4 test images beside the JAX
model: `stablehlo` records the export and first-call seconds and the largest map and score
differences as fractions of the maps' range.

`--tiny`: ResNet18, 64 px, 16 training images of 64 px, 2 epochs (a structure check). Writes
`job_timing.json` (with the run's workdir under `--output_dir`).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time

import jax
import numpy as np
from absl import flags

from benchmarks import common_flags
from benchmarks.speed import mvtec_like
from rgpkd_jax import cli, evaluate, exporting, files, metric_writer, model_setup, train
from rgpkd_jax.data import pipeline

JSON_FILE = "job_timing.json"
FULL = {"epochs": 200, "image_size": 256, "batch_size": 16, "source_size": mvtec_like.SOURCE_SIZE,
        "counts": (mvtec_like.NUM_TRAIN, mvtec_like.NUM_TEST_GOOD, mvtec_like.NUM_TEST_DEFECTIVE)}
TINY = {"epochs": 2, "image_size": 64, "batch_size": 8, "source_size": 64, "counts": (16, 4, 6)}


def phases(records: list[dict], start: float, end: float, steps_per_epoch: int) -> dict:
    """The phases (module docstring) from `metrics.jsonl` records logged every epoch and the run's
    wall-clock start and end (unix seconds)."""
    first, last = records[0], records[-1]
    steady = statistics.median(r["step_time_s"] for r in records[1:]) if len(records) > 1 else first["step_time_s"]
    first_window_s = steps_per_epoch * first["step_time_s"]
    loop_start = first["time"] - first_window_s
    compile_s = max(first_window_s - steps_per_epoch * steady, 0.0)
    return {"setup_s": loop_start - start, "compile_s": compile_s,
            "train_s": last["time"] - loop_start - compile_s, "steady_step_s": steady,
            "data_wait_s": sum(r["data_wait_s"] for r in records),
            "checkpoint_save_s": sum(r["checkpoint_save_s"] for r in records),
            "evaluate_s": end - last["time"]}


def check_stablehlo(config, workdir: str, output_dir: str) -> dict:
    """Exports the job as StableHLO and runs the artefact for this backend beside the JAX model."""
    start = time.perf_counter()
    paths = exporting.export_workdir(config, workdir, formats=("stablehlo",), output_dir=output_dir)
    export_s = time.perf_counter() - start
    exported, _ = exporting.load_stablehlo(paths["stablehlo"])
    images = next(iter(pipeline.test_batches(config, batch_size=4)))["image"]
    model, _, _ = model_setup.load_trained_model(config, workdir)
    maps, scores = evaluate.MapRunner(model, config)(images)
    start = time.perf_counter()
    artefact_maps, artefact_scores = jax.block_until_ready(exported.call(images))
    first_call_s = time.perf_counter() - start
    map_range = float(np.ptp(maps))
    return {"platforms": list(exported.platforms), "ran_on": jax.default_backend(), "export_s": round(export_s, 1),
            "first_call_s": round(first_call_s, 1), "map_range": map_range,
            "max_map_diff_of_range": float(np.abs(np.asarray(artefact_maps) - maps).max()) / map_range,
            "max_score_diff_of_range": float(np.abs(np.asarray(artefact_scores) - scores).max()) / map_range}


def run(output_dir: str, *, tiny: bool, source_size: int | None = None, config_dir: str = "configs") -> dict:
    size = {**(TINY if tiny else FULL), **({"source_size": source_size} if source_size else {})}
    data_root = os.path.join(output_dir, "data")
    start = time.perf_counter()
    num_train, num_good, num_defective = size["counts"]
    mvtec_like.write_category(os.path.join(data_root, "source"), mvtec_like.CATEGORY, size=size["source_size"],
                              num_train=num_train, num_test_good=num_good, num_test_defective=num_defective)
    generate_s = time.perf_counter() - start
    steps_per_epoch = num_train // size["batch_size"]
    config = mvtec_like.load_config(data_root, [
        f"dataset.image_size={size['image_size']}", f"train.epochs={size['epochs']}",
        f"train.batch_size={size['batch_size']}", f"train.log_every_steps={steps_per_epoch}"],
        tiny=tiny, config_dir=config_dir)
    start = time.perf_counter()
    pipeline.prepared_builder(config)
    prepare_s = time.perf_counter() - start

    workdir = os.path.join(output_dir, "workdir")
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh job: a rerun would resume instead
    start = time.time()
    result = train.train_and_evaluate(config, workdir)
    end = time.time()
    records = metric_writer.read_metrics(workdir)
    timings = {"generate_s": generate_s, "prepare_s": prepare_s,
               **phases(records, start, end, steps_per_epoch), "job_s": end - start}
    return {"tiny": tiny, "backend": jax.default_backend(), "devices": [d.device_kind for d in jax.devices()],
            "teacher": config.teacher.arch, "image_size": size["image_size"], "source_size": size["source_size"],
            "epochs": size["epochs"],
            "num_train": num_train, "num_test": num_good + num_defective, "batch_size": config.train.batch_size,
            "steps": result["step"], "decoded_cache_mib": config.data.decoded_cache_mib,
            "seconds": {k: round(v, 1) for k, v in timings.items()},
            "images_per_sec": round(config.train.batch_size / timings["steady_step_s"], 1),
            "workdir": workdir,
            "stablehlo": check_stablehlo(config, workdir, os.path.join(output_dir, "export"))}


def define_flags() -> None:
    common_flags.define_output_dir("workdirs/job_timing", "job_timing.json, the generated data and the job's workdir")
    common_flags.define_config_dir()
    flags.DEFINE_bool("tiny", False, "ResNet18, 64 px, 16 images, 2 epochs: a structure check.")
    flags.DEFINE_integer("source_size", None, "Side of the generated PNGs in pixels (default: 1024, MVTec's; "
                         "--tiny: 64). 256 skips the resize and most of the generation time.")


def main(argv) -> None:
    common_flags.check_arguments(argv)
    f = flags.FLAGS
    result = run(os.path.abspath(f.output_dir), tiny=f.tiny, source_size=f.source_size, config_dir=f.config_dir)
    path = os.path.join(f.output_dir, JSON_FILE)
    files.write_json(path, result)
    print(json.dumps(result["seconds"]), f"steady {result['images_per_sec']} images/s", flush=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
