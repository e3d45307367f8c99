"""Training of every registered method: the jitted step and the run around it.

`train_and_evaluate(config, workdir)` sets the model up (`model_setup`: built, teacher loaded,
method prepared) and runs the one training loop (`train_loop.run`) of a `jax.jit` train step over
a ('data',) mesh of all devices (batch sharded; the trained state replicated and donated, the
frozen teacher replicated and only read), with hooks that prefetch the next batch while a step
runs, profile, stop at a non-finite loss, log metrics and save checkpoints.
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

import jax
import ml_collections
from absl import logging
from flax import nnx

from rgpkd_jax import (checkpointing, evaluate, metric_writer, model_setup, optim, provenance, run_info, sharding,
                       teacher_cache, train_loop, train_state, workdir_lock)
from rgpkd_jax.data import pipeline
from rgpkd_jax.models import TRAINABLE


def make_train_step(graphdef, *, seed: int):
    """The jitted step: (state, frozen, batch, device_cache) -> (state, metrics), on the parts of
    `train_state.split`. `state` (what training changes) is donated and returned; `frozen`
    (teacher, the method's Frozen state) is only read. `device_cache` is `teacher_cache.to_device`'s
    levels, or () (then the batch may carry the host cache's features, or the teacher runs). The
    method's `training_loss` gets a key of ``seed`` and the optimiser's step count, so a resumed
    run draws what an uninterrupted one would."""
    base_key = jax.random.key(seed)

    @functools.partial(jax.jit, donate_argnums=(0,))
    def train_step(state, frozen, batch, device_cache=()):
        nodes = train_state.merge(graphdef, state, frozen)
        model, optimizer = nodes["model"], nodes["optimizer"]
        cached = teacher_cache.batch_features(batch, device_cache)
        rng = jax.random.fold_in(base_key, optimizer.step[...])

        def loss_fn(model):
            return model.training_loss(batch, rng=rng, teacher_features=cached)

        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, TRAINABLE), has_aux=True)
        (loss, terms), grads = grad_fn(model)
        optimizer.update(model, grads)
        return train_state.trained(nodes), {"loss": loss, **terms}

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
        if step:
            run_info.check_resume(config, workdir)
        model, teacher_info = model_setup.setup_model(config, restoring=(manager, step) if step else None)
        schedule = optim.make_schedule(tc, total_steps, steps_per_epoch)
        graphdef, state, frozen = train_state.split(model, tc, schedule)
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
    run_info.write(
        workdir, config, teacher_info, num_train=num_train, steps_per_epoch=steps_per_epoch,
        total_steps=total_steps, devices=[str(d) for d in jax.devices()], teacher_cache=cache_mode,
        conv_impl=model.conv_impl, environment=provenance.environment())

    writer = metric_writer.MetricWriter(workdir, total_steps, step, enabled=sharding.is_primary())
    stop_at = min(total_steps, step + tc.max_steps_this_run) if tc.max_steps_this_run else total_steps
    batches = sharding.DevicePrefetcher(data_iterator, mesh)
    lost: list[int] = []
    try:
        with train_loop.stop_signal() as received:  # SIGTERM: save and stop (docs/multihost.md)
            state = train_loop.run(make_train_step(graphdef, seed=config.seed), state, frozen, batches,
                                   start=step, stop=stop_at, device_cache=device_cache,
                                   hooks=_hooks(config, step, stop_at, steps_per_epoch, schedule, batches,
                                                writer, manager, teacher_info, received))
        step = stop_at
    except train_loop.Preempted as stop:
        return {"step": stop.step, "total_steps": total_steps, "finished": False, "preempted": stop.signal_name}
    except Exception as error:
        if lost := sharding.processes_lost_after_error():
            raise sharding.ProcessLostError(lost) from error
        raise
    finally:
        writer.close()
        if not lost:  # a save in flight would wait for the lost process forever
            manager.close()  # waits for the last save

    model = train_state.merge(graphdef, state, frozen)["model"]
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


def _hooks(config, start: int, stop: int, steps_per_epoch: int, schedule, batches, writer, manager,
           teacher_info: dict, stop_signal_received) -> list[train_loop.Hook]:
    """What `rgpkd_jax.train` does around each step, in this order: prefetch the next batch,
    profile steps 3-5 (``profile_dir``), check the losses, log, save a checkpoint, and at logging
    steps stop after a save if ``stop_signal_received()`` on any process."""
    tc = config.train
    at_checkpoint = lambda s: train_loop.due(s, tc.checkpoint_every_steps, stop)  # noqa: E731
    at_log = lambda s: s % tc.log_every_steps == 0 or at_checkpoint(s)  # noqa: E731
    checkpoint = train_loop.Checkpoint(
        lambda s, state: checkpointing.save(manager, s, state, batches, config, teacher_info),  # asynchronous
        at_checkpoint, start)

    def window_fields() -> dict:
        fields = {"data_wait_s": batches.wait_s, "checkpoint_save_s": checkpoint.save_s}
        batches.wait_s, checkpoint.save_s = 0.0, 0.0
        return fields

    hooks = [train_loop.Prefetch(batches, stop)]
    if config.profile_dir:  # after the compile
        hooks.append(train_loop.Profile(config.profile_dir, start + 2, start + 5))
    return hooks + [
        train_loop.NonFiniteStop(at_log, lambda: checkpoint.last_saved),
        train_loop.LogMetrics(writer, at_log, tc.batch_size, window_fields=window_fields,
                              step_fields=lambda s: {"epoch": s / steps_per_epoch,
                                                     "learning_rate": float(schedule(s - 1))}),
        checkpoint,
        train_loop.PreemptionStop(stop_signal_received, sharding.any_process, at_log, checkpoint),
    ]


def format_progress(result: dict, command: str) -> str:
    """The line the command line prints when training ends (finished or stopped to resume);
    ``command`` is the one that resumes it."""
    if result["finished"]:
        return f"training finished: step {result['step']} of {result['total_steps']}"
    if "preempted" in result:
        return (f"preempted ({result['preempted']}) at step {result['step']} of {result['total_steps']}: "
                f"checkpoint saved; resume with: {command}")
    return (f"training stopped at step {result['step']} of {result['total_steps']} "
            "(train.max_steps_this_run); rerun the same command to resume")
