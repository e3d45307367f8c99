"""Model complexity: parameters, GFLOPs, inference latency/throughput, training throughput, peak memory.

    python -m benchmarks.complexity --method rd4ad --dataset mvtec_ad --category bottle --output rd4ad.json
    python -m benchmarks.complexity --method rgpkd --dataset synthetic --category grid --tiny

Measured on one device (no mesh), on random inputs: timings do not depend on the weights or the
images. GFLOPs come from XLA's cost analysis of the compiled function (a multiply-add counts as 2
flops), per image of a batch of 16;
"inference" is what `evaluate` runs (forward + anomaly map + score), "forward" the model alone.
Latency is the median over `repeats` calls after `warmup` calls, each ended by `block_until_ready`.
Peak memory is the device's `peak_bytes_in_use` where the backend reports it (GPU/TPU), else the
process's peak resident set size (CPU; includes the Python and JAX runtime): `peak_memory_kind`
says which. Run each model in a fresh process (the leaderboard does) so the peak is that model's.
The device kind and jax version are recorded with every measurement.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from flax import nnx

from benchmarks import jobs as jobs_lib

INFERENCE_BATCH_SIZES = (1, 16)
FLOPS_BATCH_SIZE = 16


def _gflops_per_image(compiled, batch_size: int) -> float | None:
    """XLA's flop count of the compiled program, per image, in GFLOPs (None if not reported)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returns one dict per device program
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"]) / batch_size / 1e9


def _median_seconds(fn, *, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory() -> tuple[int, str]:
    """(bytes, kind): the device's peak where reported, else the process's peak RSS."""
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device peak_bytes_in_use"
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux (bytes on macOS)
    return int(rss_kib * (1 if sys.platform == "darwin" else 1024)), "process peak RSS (CPU)"


def _random_images(batch_size: int, size: int, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (batch_size, size, size, 3), jnp.float32)


def _build(config, bank_entries: int):
    from rgpkd_jax.models import build_model, count_params
    model = build_model(config, nnx.Rngs(config.seed))
    if hasattr(model, "build_bank"):  # RGPKD: a prompt bank of the configured size
        entries = config.model.get("bank_size") or bank_entries
        size = config.dataset.image_size
        model.build_bank({"image": np.asarray(_random_images(min(16, entries - i), size, seed=i)),
                          "index": np.arange(i, min(i + 16, entries), dtype=np.int32)}
                         for i in range(0, entries, 16))
    return model, count_params(model)


def measure(config, *, warmup: int = 3, repeats: int = 20, train_steps: int = 10,
            bank_entries: int = 256) -> dict:
    """Complexity numbers of `config`'s model; `bank_entries` sizes RGPKD's prompt bank when
    `model.bank_size` is 0 (= every training image)."""
    from rgpkd_jax import evaluate, train

    size = config.dataset.image_size
    model, params = _build(config, bank_entries)
    device = jax.devices()[0]
    result = {"method": config.method, "image_size": size, "teacher_arch": config.teacher.arch,
              "params_trainable": params["trainable"], "params_frozen": params["frozen"],
              "device": device.device_kind, "platform": device.platform, "jax_version": jax.__version__,
              "warmup": warmup, "repeats": repeats}
    if hasattr(model, "build_bank") and getattr(model, "prompts", None) is not None:
        result["prompt_bank_entries"] = int(model.prompts.size)

    map_fn, state = evaluate.make_map_fn(model, config)
    graphdef, _ = nnx.split(model)
    forward = jax.jit(lambda state, images: nnx.merge(graphdef, state)(images, train=False))
    images = _random_images(FLOPS_BATCH_SIZE, size)
    result["gflops_per_image_forward"] = _gflops_per_image(forward.lower(state, images).compile(), FLOPS_BATCH_SIZE)
    for batch_size in INFERENCE_BATCH_SIZES:  # timed with the compiled object: one compile per size
        batch = _random_images(batch_size, size)
        compiled = map_fn.lower(state, batch).compile()
        if batch_size == FLOPS_BATCH_SIZE:
            result["gflops_per_image_inference"] = _gflops_per_image(compiled, batch_size)
        seconds = _median_seconds(lambda: compiled(state, batch), warmup=warmup, repeats=repeats)
        result[f"latency_ms_batch{batch_size}"] = 1e3 * seconds
        result[f"latency_ms_per_image_batch{batch_size}"] = 1e3 * seconds / batch_size
        result[f"images_per_s_batch{batch_size}"] = batch_size / seconds

    train_batch = config.train.batch_size
    graphdef, train_state = train.split_train_state(model, config.train, optax.constant_schedule(1e-4))
    step = train.make_train_step(graphdef)
    batch = {"image": _random_images(train_batch, size, seed=1), "index": jnp.arange(train_batch, dtype=jnp.int32)}
    holder = {"state": train_state}

    def one_step():
        holder["state"], metrics = step(holder["state"], batch)  # the state is donated: keep the new one
        return metrics["loss"]

    seconds = _median_seconds(one_step, warmup=warmup, repeats=train_steps)
    result["train_batch_size"] = train_batch
    result["train_step_ms"] = 1e3 * seconds
    result["train_images_per_s"] = train_batch / seconds
    result["peak_memory_bytes"], result["peak_memory_kind"] = peak_memory()
    return result


# --- command line ------------------------------------------------------------------------------

def _define_flags() -> None:
    """Only when run as a program: importing this module (the leaderboard, tests) defines no flags,
    so it cannot collide with another benchmark's flags of the same name."""
    flags.DEFINE_enum("method", None, jobs_lib.METHODS, "Which model.")
    flags.DEFINE_string("dataset", "mvtec_ad", "Dataset of the config (sets image size only).")
    flags.DEFINE_string("category", "bottle", "Category of the config.")
    flags.DEFINE_bool("tiny", False, "Use the config's tiny (CPU) form.")
    flags.DEFINE_multi_string("overrides", [], "Config overrides key.sub=value.")
    flags.DEFINE_string("config_dir", "configs", "Folder holding <method>.py configs.")
    flags.DEFINE_string("output", None, "Write the JSON result here (default: print it).")
    flags.DEFINE_integer("repeats", 20, "Timed calls per measurement.")
    flags.DEFINE_integer("warmup", 3, "Untimed calls before timing.")
    flags.DEFINE_integer("train_steps", 10, "Timed training steps.")
    flags.DEFINE_integer("bank_entries", 256, "RGPKD prompt-bank entries when model.bank_size=0.")


def main(argv):
    f = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if f.method is None:
        raise app.UsageError(f"--method is required: one of {jobs_lib.METHODS}")
    job = jobs_lib.Job(jobs_lib.COMPLEXITY, f.method, f.dataset, f.category,
                       overrides=tuple(f.overrides), tiny=f.tiny)
    config = jobs_lib.load_config(job, f.config_dir)
    result = measure(config, warmup=f.warmup, repeats=f.repeats, train_steps=f.train_steps,
                     bank_entries=f.bank_entries)
    result["overrides"] = list(job.overrides)
    if f.output:
        jobs_lib.write_json(f.output, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
