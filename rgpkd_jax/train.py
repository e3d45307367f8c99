"""One data-parallel train loop for RD4AD, SK-RD4AD and RGPKD.

`train_and_evaluate(config, workdir)` builds the model through `models.build_model`, loads the
teacher, and runs a `jax.jit` train step over a ('data',) mesh of all devices (batch sharded, state
replicated and donated). Checkpoints (orbax) hold the model, the optimiser, the step and the data
iterator's position, so a rerun with the same workdir resumes exactly where the last one stopped.
Nothing here looks at test data: evaluation happens once, after the last step.
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from rgpkd_jax import metric_writer, sharding
from rgpkd_jax import teacher as teacher_lib
from rgpkd_jax.data import pipeline
from rgpkd_jax.models import TRAINABLE, build_model


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; training stopped and the last good checkpoint was kept."""


def make_schedule(tc: ml_collections.ConfigDict, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
    lr = tc.learning_rate
    warmup = int(round(tc.warmup_epochs * steps_per_epoch))
    if tc.schedule == "constant":
        return optax.constant_schedule(lr)
    if tc.schedule == "warmup_linear_decay":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, max(warmup, 1)),
             optax.linear_schedule(lr, 0.0, max(total_steps - warmup, 1))], [max(warmup, 1)])
    if tc.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(total_steps, warmup + 1))
    raise ValueError(f"unknown train.schedule {tc.schedule!r}; use constant, warmup_linear_decay or warmup_cosine")


def make_optimizer(tc: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    if tc.optimizer == "adam":
        # optax adds eps outside the square root, as PyTorch's Adam does.
        tx = optax.adam(schedule, b1=tc.b1, b2=tc.b2, eps=tc.eps)
        return optax.chain(optax.add_decayed_weights(tc.weight_decay), tx) if tc.weight_decay else tx
    if tc.optimizer == "adamw":
        return optax.adamw(schedule, b1=tc.b1, b2=tc.b2, eps=tc.eps, weight_decay=tc.weight_decay)
    if tc.optimizer == "sgd":
        tx = optax.sgd(schedule, momentum=tc.momentum)
        return optax.chain(optax.add_decayed_weights(tc.weight_decay), tx) if tc.weight_decay else tx
    raise ValueError(f"unknown train.optimizer {tc.optimizer!r}; use adam, adamw or sgd")


def make_train_step(graphdef):
    """The jitted step: (state, batch) -> (state, metrics). `state` is donated."""

    @functools.partial(jax.jit, donate_argnums=(0,))
    def train_step(state, batch):
        nodes = nnx.merge(graphdef, state)
        model, optimizer = nodes["model"], nodes["optimizer"]

        def loss_fn(model):
            features = model(batch["image"], train=True, indices=batch.get("index"))
            return model.loss(features, batch["image"])

        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, TRAINABLE), has_aux=True)
        (loss, terms), grads = grad_fn(model)
        optimizer.update(model, grads)
        return nnx.state(nodes), {"loss": loss, **terms}

    return train_step


def _data_item() -> str:
    """Each process checkpoints the position of its own data shard."""
    return f"data_process{jax.process_index()}"


def _checkpoint_manager(workdir: str, tc) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=tc.max_to_keep, create=True)
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"), options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       _data_item(): ocp.JsonCheckpointHandler()})


def _save(manager, step: int, state, data_iterator) -> None:
    manager.save(step, args=ocp.args.Composite(**{
        "state": ocp.args.StandardSave(nnx.to_pure_dict(state)),
        _data_item(): ocp.args.JsonSave(data_iterator.get_state())}))
    manager.wait_until_finished()


def _restore(manager, step: int, state, data_iterator):
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(state))
    restored = manager.restore(step, args=ocp.args.Composite(**{
        "state": ocp.args.StandardRestore(target), _data_item(): ocp.args.JsonRestore()}))
    nnx.replace_by_pure_dict(state, restored["state"])
    data_iterator.set_state(restored[_data_item()])
    return state


def setup_model(config):
    """Builds the model, loads the teacher, and (RGPKD) fills its prompt bank from the train split.

    The bank is built before a checkpoint is restored too, so that its shape (set by the size of
    the training split) matches the saved one; its values are a function of teacher and data.
    """
    model = build_model(config, nnx.Rngs(config.seed))
    teacher_info = teacher_lib.load_into(model, config)
    if hasattr(model, "build_bank"):
        model.build_bank(pipeline.test_batches(config, batch_size=config.train.batch_size, split="train"))
    return model, teacher_info


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       evaluate_after: bool = True, data_source=None) -> dict:
    """Trains (resuming from the workdir's last checkpoint) and, if asked, evaluates the result.

    `data_source` replaces the dataset's train iterator factory (tests inject faults with it).
    Returns the evaluation metrics, or a training summary when `evaluate_after` is False.
    """
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

    model, teacher_info = setup_model(config)
    _write_json(os.path.join(workdir, "run_info.json"), {
        "config": config.to_dict(), "teacher": teacher_info, "num_train": num_train,
        "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
        "devices": [str(d) for d in jax.devices()], "process_count": jax.process_count(),
        "jax_version": jax.__version__})

    schedule = make_schedule(tc, total_steps, steps_per_epoch)
    graphdef, state = split_train_state(model, tc, schedule)
    state = jax.device_put(state, sharding.replicated(mesh))

    make_iterator = data_source or (lambda: pipeline.train_iterator(
        config, seed=config.seed, shard_index=jax.process_index(), shard_count=jax.process_count()))
    data_iterator = make_iterator()
    manager = _checkpoint_manager(workdir, tc)
    step = manager.latest_step() or 0
    if step:
        state = _restore(manager, step, state, data_iterator)
        state = jax.device_put(state, sharding.replicated(mesh))
        logging.info("resumed from the checkpoint at step %d of %d", step, total_steps)

    train_step = make_train_step(graphdef)
    writer = metric_writer.MetricWriter(workdir, total_steps, step, enabled=jax.process_index() == 0)
    stop_at = min(total_steps, step + tc.max_steps_this_run) if tc.max_steps_this_run else total_steps
    window_start, window_steps, pending = time.perf_counter(), 0, []
    last_saved = step
    profile_steps = (step + 2, step + 5) if config.profile_dir else None  # after the compile
    try:
        while step < stop_at:
            if profile_steps and step == profile_steps[0]:
                jax.profiler.start_trace(config.profile_dir)
            batch = sharding.shard_batch(next(data_iterator), mesh)
            state, metrics = train_step(state, batch)
            step += 1
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
                    "images_per_sec": window_steps * tc.batch_size / elapsed,
                    "step_time_s": elapsed / window_steps,
                })
                writer.advance(window_steps)
                window_start, window_steps, pending = time.perf_counter(), 0, []
            if at_checkpoint:
                _save(manager, step, state, data_iterator)
                last_saved = step
    finally:
        writer.close()
        manager.close()

    model = nnx.merge(graphdef, state)["model"]
    if step < total_steps:
        logging.info("stopped at step %d of %d (train.max_steps_this_run); rerun to resume", step, total_steps)
        return {"step": step, "total_steps": total_steps, "finished": False}
    from rgpkd_jax import evaluate
    evaluate.compute_threshold(model, config, workdir)  # normal training images only
    if not evaluate_after:
        return {"step": step, "total_steps": total_steps, "finished": True}
    return evaluate.evaluate_model(model, config, workdir, teacher_info=teacher_info)


def _raise_if_nonfinite(pending: list, last_saved: int) -> None:
    for step, loss in pending:
        value = float(loss)
        if not np.isfinite(value):
            raise NonFiniteLossError(
                f"the loss became {value} at step {step}; training stopped. The last good checkpoint "
                f"(step {last_saved}) is kept. Lower --config.train.learning_rate or check the data.")


def split_train_state(model, tc, schedule):
    """(graphdef, state) of {'model', 'optimizer'}: what the train step updates and checkpoints hold."""
    optimizer = nnx.Optimizer(model, make_optimizer(tc, schedule), wrt=TRAINABLE)
    return nnx.split({"model": model, "optimizer": optimizer})


def save_imported_model(model, config: ml_collections.ConfigDict, workdir: str) -> None:
    """Saves a model trained elsewhere (an official RD4AD checkpoint) as the workdir's checkpoint
    at step 0, so that --mode=eval and --mode=predict use it; also writes the predict threshold."""
    graphdef, state = split_train_state(model, config.train, optax.constant_schedule(0.0))
    manager = _checkpoint_manager(workdir, config.train)
    if manager.latest_step() is not None:
        manager.close()
        raise FileExistsError(f"{workdir} already holds checkpoints; import into an empty --workdir")
    manager.save(0, args=ocp.args.Composite(state=ocp.args.StandardSave(nnx.to_pure_dict(state))))
    manager.wait_until_finished()
    manager.close()
    from rgpkd_jax import evaluate
    evaluate.compute_threshold(nnx.merge(graphdef, state)["model"], config, workdir)


def load_trained_model(config: ml_collections.ConfigDict, workdir: str):
    """(model, teacher_info, step) of the workdir's last checkpoint, for evaluation and prediction."""
    manager = _checkpoint_manager(workdir, config.train)
    step = manager.latest_step()
    if step is None:
        manager.close()
        raise FileNotFoundError(
            f"no checkpoint in {os.path.join(workdir, 'checkpoints')}; train first with "
            f"--mode=train (same --config and --workdir)")
    model, teacher_info = setup_model(config)
    # The optimiser state is restored too (the checkpoint holds both); its schedule is irrelevant.
    graphdef, state = split_train_state(model, config.train, optax.constant_schedule(0.0))
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(state))
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    manager.close()
    nnx.replace_by_pure_dict(state, restored["state"])
    return nnx.merge(graphdef, state)["model"], teacher_info, step


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)
