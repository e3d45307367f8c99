"""Model complexity: parameters, GFLOPs, inference latency/throughput, training throughput, peak memory.

    python -m benchmarks.speed.complexity --config configs/rd4ad.py:mvtec_ad/bottle --output_dir workdirs/cx
    python -m benchmarks.speed.complexity --config configs/rgpkd.py:synthetic/grid,tiny --config.teacher.weights=random

Measured on one device (no mesh), on random inputs: timings do not depend on the weights or the
images. GFLOPs come from XLA's cost analysis of the compiled function (a multiply-add counts as 2
flops), per image of a batch of 16;
"inference" is what `evaluate` runs (forward + anomaly map + score), "forward" the model alone.
Latency is the median over `repeats` calls after `warmup` calls, each ended by `block_until_ready`.
Peak memory is the device's `peak_bytes_in_use` where the backend reports it (GPU/TPU), else the
process's peak resident set size (CPU; includes the Python and JAX runtime): `peak_memory_kind`
says which. Run each model in a fresh process (the leaderboard does) so the peak is that model's.
The device kind and jax version are recorded with every measurement. The result is printed, and
written as `complexity.json` into `--output_dir` when given (the leaderboard's complexity jobs).
"""

from __future__ import annotations

import json
import os

import jax
from absl import flags
from ml_collections import config_flags

from benchmarks import common_flags
from benchmarks.speed import harness, inputs, memory, timing
from rgpkd_jax import cli, files, provenance
from rgpkd_jax.models import count_params

OUTPUT_FILE = "complexity.json"
INFERENCE_BATCH_SIZES = (1, 16)
FLOPS_BATCH_SIZE = 16


def measure(config, *, warmup: int = 3, repeats: int = 20, train_steps: int = 10,
            bank_entries: int = 256) -> dict:
    """Complexity numbers of `config`'s model; `bank_entries` sizes RGPKD's prompt bank when
    `model.bank_size` is 0 (= every training image)."""
    size = config.dataset.image_size
    model = harness.build(config, bank_entries)
    params = count_params(model)
    device = jax.devices()[0]
    result = {"method": config.method, "image_size": size, "teacher_arch": config.teacher.arch,
              "params_trainable": params["trainable"], "params_frozen": params["frozen"],
              "device": device.device_kind, "platform": device.platform, "jax_version": jax.__version__,
              "environment": provenance.environment(), "warmup": warmup, "repeats": repeats}
    result.update(model.summary())  # e.g. RGPKD's prompt_bank_entries

    images = jax.device_put(inputs.random_images(FLOPS_BATCH_SIZE, size))
    result["gflops_per_image_forward"] = timing.gflops_per_image(
        harness.compiled_forward(model, images), FLOPS_BATCH_SIZE)
    inference = harness.Inference(model, config)
    for batch_size in INFERENCE_BATCH_SIZES:  # timed with the compiled object: one compile per size
        batch = jax.device_put(inputs.random_images(batch_size, size))
        compiled = inference.compiled(batch)
        if batch_size == FLOPS_BATCH_SIZE:
            result["gflops_per_image_inference"] = timing.gflops_per_image(compiled, batch_size)
        seconds = timing.median_seconds(lambda: compiled(inference.state, batch), warmup=warmup, repeats=repeats)
        result[f"latency_ms_batch{batch_size}"] = 1e3 * seconds
        result[f"latency_ms_per_image_batch{batch_size}"] = 1e3 * seconds / batch_size
        result[f"images_per_s_batch{batch_size}"] = batch_size / seconds

    train_batch = config.train.batch_size
    step = harness.TrainStep(model, config, inputs.random_images(train_batch, size, seed=1))
    seconds = timing.median_seconds(step, warmup=warmup, repeats=train_steps)
    result["train_batch_size"] = train_batch
    result["train_step_ms"] = 1e3 * seconds
    result["train_images_per_s"] = train_batch / seconds
    result["peak_memory_bytes"], result["peak_memory_kind"] = memory.peak_memory()
    return result


def define_flags() -> None:
    config_flags.DEFINE_config_file("config", None, "Config file and argument, e.g. "
                                    "configs/rd4ad.py:mvtec_ad/bottle; override keys with --config.key=value.",
                                    lock_config=True)
    common_flags.define_output_dir(None, f"{OUTPUT_FILE} (default: print the result only)")
    flags.DEFINE_integer("repeats", 20, "Timed calls per measurement.")
    flags.DEFINE_integer("warmup", 3, "Untimed calls before timing.")
    flags.DEFINE_integer("train_steps", 10, "Timed training steps.")
    flags.DEFINE_integer("bank_entries", 256, "RGPKD prompt-bank entries when model.bank_size=0.")


def main(argv):
    common_flags.check_arguments(argv)
    f = flags.FLAGS
    if f.config is None:
        raise ValueError("--config is required, e.g. --config configs/rd4ad.py:mvtec_ad/bottle")
    result = measure(f.config, warmup=f.warmup, repeats=f.repeats, train_steps=f.train_steps,
                     bank_entries=f.bank_entries)
    result["config_file"] = config_flags.get_config_filename(f["config"])
    result["overrides"] = [f"{k}={v}" for k, v in config_flags.get_override_values(f["config"]).items()]
    print(json.dumps(result, indent=2, default=files.json_default))
    if f.output_dir:
        os.makedirs(f.output_dir, exist_ok=True)
        files.write_json(os.path.join(f.output_dir, OUTPUT_FILE), result)
        print(f"wrote {os.path.join(f.output_dir, OUTPUT_FILE)}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
