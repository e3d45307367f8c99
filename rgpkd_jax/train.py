"""One data-parallel train loop for RD4AD, SK-RD4AD and RGPKD.

`train_and_evaluate(config, workdir)` builds the model through `models.build_model`, loads the
teacher, and runs a `jax.jit` train step over a ('data',) mesh of all devices (batch sharded; the
trained state replicated and donated, the frozen teacher replicated and only read); the next batch
is read and copied to the devices while a step runs.
With `train.teacher_cache` on, the teacher's features of every training image are computed once
before the loop and the step reads them instead of running the teacher (`teacher_cache.py`).
Checkpoints (orbax, saved asynchronously) hold the trained model (the teacher is recorded, not
saved), the optimiser, the step and the data iterators' positions, so a rerun with the same
workdir resumes exactly where the last one stopped.
Nothing here looks at test data: evaluation happens once, after the last step. With many processes
each reads its shard of every global batch, and only process 0 writes files.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from rgpkd_jax import (checkpointing, evaluate, files, metric_writer, optim, sharding, teacher_cache,
                       workdir_lock)
from rgpkd_jax.data import pipeline
from rgpkd_jax.models import TRAINABLE


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; training stopped and the last good checkpoint was kept."""


def make_train_step(graphdef):
    """The jitted step: (state, frozen, batch, device_cache) -> (state, metrics), on the parts of
    `checkpointing.split_train_state`. `state` (what training changes) is donated and returned;
    `frozen` (teacher, prompt bank) is only read. `device_cache` is `teacher_cache.to_device`'s
    levels, or () (then the batch may carry the host cache's features, or the teacher runs)."""

    @functools.partial(jax.jit, donate_argnums=(0,))
    def train_step(state, frozen, batch, device_cache=()):
        nodes = checkpointing.merge_train_state(graphdef, state, frozen)
        model, optimizer = nodes["model"], nodes["optimizer"]
        cached = teacher_cache.batch_features(batch, device_cache)

        def loss_fn(model):
            features = model(batch["image"], train=True, indices=batch.get("index"),
                             teacher_features=cached)
            return model.loss(features, batch["image"])

        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, TRAINABLE), has_aux=True)
        (loss, terms), grads = grad_fn(model)
        optimizer.update(model, grads)
        return checkpointing.trained_state(nodes), {"loss": loss, **terms}

    return train_step


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       evaluate_after: bool = True, data_source=None) -> dict:
    """Trains (resuming from the workdir's last checkpoint) and, if asked, evaluates the result.

    `data_source` replaces the dataset's train iterator factory (tests inject faults with it).
    Returns the last step, whether training finished, and (when `evaluate_after`) the evaluation;
    files that could not be written at the end are listed under 'unwritten'.
    Process 0 holds the workdir's lock meanwhile (a second run into it is refused).
    """
    mode = "train_eval" if evaluate_after else "train"
    with workdir_lock.hold(workdir, mode, enabled=sharding.is_primary()):
        return _train_and_evaluate(config, workdir, evaluate_after=evaluate_after, data_source=data_source)


def _train_and_evaluate(config, workdir: str, *, evaluate_after: bool, data_source) -> dict:
    os.makedirs(workdir, exist_ok=True)
    tc = config.train
    mesh = sharding.make_mesh()
    sharding.check_global_batch(tc.batch_size, mesh)
    num_train = pipeline.num_examples(config, "train")
    steps_per_epoch = pipeline.steps_per_epoch(config, shard_count=jax.process_count())
    if steps_per_epoch == 0:
        raise ValueError(f"the training split has {num_train} images, fewer than train.batch_size="
                         f"{tc.batch_size}; lower --config.train.batch_size")
    total_steps = tc.epochs * steps_per_epoch

    manager = checkpointing.checkpoint_manager(workdir, tc)
    step = manager.latest_step() or 0
    make_iterator = data_source or (lambda: pipeline.train_iterator(
        config, seed=config.seed, shard_index=jax.process_index(), shard_count=jax.process_count()))
    try:  # a resumed run rebuilds the teacher its checkpoint records (docs/checkpoints.md)
        model, teacher_info = checkpointing.setup_model(config, restoring=(manager, step) if step else None)
        schedule = optim.make_schedule(tc, total_steps, steps_per_epoch)
        graphdef, state, frozen = checkpointing.split_train_state(model, tc, schedule)
        state, frozen = jax.device_put((state, frozen), sharding.replicated(mesh))
        data_iterator = make_iterator()
        if step:
            state = checkpointing.restore(manager, step, state, data_iterator, config)
            state = jax.device_put(state, sharding.replicated(mesh))
            logging.info("resumed from the checkpoint at step %d of %d", step, total_steps)
        # Rebuilt by every run, never checkpointed (docs/architecture.md "Teacher cache").
        cache_mode = teacher_cache.resolve_mode(config, model, num_train,
                                                data_source_overridden=data_source is not None)
        cache_levels = teacher_cache.compute(model, config, num_train) if cache_mode != "off" else []
        if cache_mode == "host":
            data_iterator = teacher_cache.HostGather(data_iterator, cache_levels)
        device_cache = teacher_cache.to_device(cache_levels, mesh) if cache_mode == "device" else ()
        del cache_levels  # host: the gatherer holds them; device: the devices do
    except BaseException:
        manager.close()
        raise
    checkpointing.write_run_info(
        workdir, config, teacher_info, num_train=num_train, steps_per_epoch=steps_per_epoch,
        total_steps=total_steps, devices=[str(d) for d in jax.devices()], teacher_cache=cache_mode,
        process_count=jax.process_count(), conv_impl=model.conv_impl, jax_version=jax.__version__)

    train_step = make_train_step(graphdef)
    writer = metric_writer.MetricWriter(workdir, total_steps, step, enabled=sharding.is_primary())
    stop_at = min(total_steps, step + tc.max_steps_this_run) if tc.max_steps_this_run else total_steps
    batches = sharding.DevicePrefetcher(data_iterator, mesh)
    window_start, window_steps, pending, save_s = time.perf_counter(), 0, [], 0.0
    last_saved = step
    profile_steps = (step + 2, step + 5) if config.profile_dir else None  # after the compile
    try:
        while step < stop_at:
            if profile_steps and step == profile_steps[0]:
                jax.profiler.start_trace(config.profile_dir)
            state, metrics = train_step(state, frozen, next(batches), device_cache)
            step += 1
            if step < stop_at:
                batches.prefetch()  # the next batch is read and copied while this step runs
            window_steps += 1
            pending.append((step, metrics["loss"]))
            if profile_steps and step == profile_steps[1]:
                jax.block_until_ready(state)
                jax.profiler.stop_trace()
                logging.info("wrote a profiler trace of steps %d-%d to %s", *profile_steps, config.profile_dir)
                profile_steps = None
            at_checkpoint = step % tc.checkpoint_every_steps == 0 or step == stop_at
            if step % tc.log_every_steps == 0 or at_checkpoint:
                _raise_if_nonfinite(pending, last_saved)  # blocks: also ends the timing window
                elapsed = time.perf_counter() - window_start
                writer.write(step, {
                    "epoch": step / steps_per_epoch,
                    "learning_rate": float(schedule(step - 1)),
                    **{k: float(v) for k, v in metrics.items()},
                    # Over the whole window since the previous record: steps, data, saves, compiles.
                    "images_per_sec": window_steps * tc.batch_size / elapsed,
                    "step_time_s": elapsed / window_steps,
                    "data_wait_s": batches.wait_s,
                    "checkpoint_save_s": save_s,
                })
                writer.advance(window_steps)
                window_start, window_steps, pending, save_s = time.perf_counter(), 0, [], 0.0
                batches.wait_s = 0.0
            if at_checkpoint:
                start = time.perf_counter()
                checkpointing.save(manager, step, state, batches, config, teacher_info)  # asynchronous
                save_s += time.perf_counter() - start
                last_saved = step
    finally:
        writer.close()
        manager.close()  # waits for the last save

    model = checkpointing.merge_train_state(graphdef, state, frozen)["model"]
    if step < total_steps:
        logging.info("stopped at step %d of %d (train.max_steps_this_run); rerun to resume", step, total_steps)
        return {"step": step, "total_steps": total_steps, "finished": False}
    runner = evaluate.MapRunner(model, config)  # compiled once for the threshold and the test split
    threshold = evaluate.compute_threshold(runner, config, workdir)  # normal training images only
    result = {"step": step, "total_steps": total_steps, "finished": True}
    if evaluate_after:
        result.update(evaluate.evaluate_model(runner, config, workdir, teacher_info=teacher_info))
    if "unwritten" in threshold:  # a full disk at the end: reported by the caller, results kept
        result.setdefault("unwritten", {}).update(threshold["unwritten"])
    return result


def format_progress(result: dict) -> str:
    """The line the command line prints when training ends (finished or stopped to resume)."""
    if result["finished"]:
        return f"training finished: step {result['step']} of {result['total_steps']}"
    return (f"training stopped at step {result['step']} of {result['total_steps']} "
            "(train.max_steps_this_run); rerun the same command to resume")


def _raise_if_nonfinite(pending: list, last_saved: int) -> None:
    for step, loss in pending:
        value = float(loss)
        if not np.isfinite(value):
            raise NonFiniteLossError(
                f"the loss became {value} at step {step}; training stopped. The last good checkpoint "
                f"(step {last_saved}) is kept. Lower --config.train.learning_rate or check the data.")
