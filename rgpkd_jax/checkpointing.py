"""Checkpoints of a workdir: what they hold, how a run saves, resumes and loads them for evaluation.

A checkpoint (orbax) holds ``{'model', 'optimizer'}`` of :func:`split_train_state` and the
position of every process's data iterator, so a rerun resumes exactly (in another number of
processes too, with ``data.num_workers=0``). Building the
model to restore into (:func:`setup_model`) loads the teacher and, for RGPKD, fills the prompt bank.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import optax
import orbax.checkpoint as ocp
from flax import nnx

from rgpkd_jax import optim, sharding
from rgpkd_jax import teacher as teacher_lib
from rgpkd_jax.data import pipeline
from rgpkd_jax.models import TRAINABLE, build_model
from rgpkd_jax.models.official_checkpoint import load_official_rd4ad


DATA_ITEM = "data"


def checkpoint_manager(workdir: str, tc) -> ocp.CheckpointManager:
    """Saves are asynchronous (orbax writes in the background after copying the state to host
    memory); orbax writes each checkpoint to a temporary name and renames it when every process
    has finished, so a run killed during a save leaves no checkpoint that looks complete.
    `close()` waits for the last save."""
    options = ocp.CheckpointManagerOptions(max_to_keep=tc.max_to_keep, create=True,
                                           enable_async_checkpointing=True)
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"), options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       DATA_ITEM: ocp.JsonCheckpointHandler()})


def _data_layout(config) -> dict:
    return {"process_count": jax.process_count(), "num_workers": pipeline.num_workers(config)}


def save(manager, step: int, state, data_iterator, config) -> None:
    """Starts saving the state and every process's data-iterator position (a collective: all
    processes call it). Returns once the arrays are copied to host memory."""
    # orbax writes a JSON item from process 0 only: it holds the positions of all processes.
    data = {**_data_layout(config), "per_process": sharding.allgather_json(data_iterator.get_state())}
    manager.save(step, args=ocp.args.Composite(**{
        "state": ocp.args.StandardSave(nnx.to_pure_dict(state)), DATA_ITEM: ocp.args.JsonSave(data)}))


def restore(manager, step: int, state, data_iterator, config):
    """The state of checkpoint `step`, with the data iterator set to continue where it stopped.

    A checkpoint resumes in another number of processes when `data.num_workers` is 0 (each
    process's position is then the number of batches it consumed, the global step in every
    layout); with worker processes a position is per worker and resumes only in its own layout.
    """
    manager.wait_until_finished()
    restored = manager.restore(step, args=ocp.args.Composite(**{
        "state": ocp.args.StandardRestore(_restore_target(state)), DATA_ITEM: ocp.args.JsonRestore()}))
    nnx.replace_by_pure_dict(state, restored["state"])
    data_iterator.set_state(_position(restored[DATA_ITEM], _data_layout(config), step))
    return state


def _restore_target(state):
    """The state's shapes and dtypes, replicated over the mesh of all devices: restored onto one
    device per process, the arrays would need a cross-host copy to reach that mesh."""
    replicated = sharding.replicated(sharding.make_mesh())
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                        nnx.to_pure_dict(state))


def _position(saved: dict, layout: dict, step: int):
    positions = saved["per_process"]
    if all(saved[k] == v for k, v in layout.items()):
        return positions[jax.process_index()]
    if saved["num_workers"] == layout["num_workers"] == 0 and all(p == positions[0] for p in positions):
        return positions[0]
    raise ValueError(
        f"the checkpoint of step {step} was written by {saved['process_count']} process(es) with "
        f"data.num_workers={saved['num_workers']}, and this run has {layout['process_count']} with "
        f"data.num_workers={layout['num_workers']}: grain worker positions resume exactly only in "
        f"the layout that wrote them, so resume with {saved['process_count']} process(es) and "
        f"--config.data.num_workers={saved['num_workers']} (runs with data.num_workers=0 resume "
        f"in any number of processes)")


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


def split_train_state(model, tc, schedule):
    """(graphdef, state) of {'model', 'optimizer'}: what the train step updates and checkpoints hold."""
    optimizer = nnx.Optimizer(model, optim.make_optimizer(tc, schedule), wrt=TRAINABLE)
    return nnx.split({"model": model, "optimizer": optimizer})


def save_imported_model(model, config: ml_collections.ConfigDict, workdir: str) -> None:
    """Saves a model trained elsewhere (an official RD4AD checkpoint) as the workdir's checkpoint
    at step 0, so that --mode=eval and --mode=predict use it (the caller writes the threshold)."""
    graphdef, state = split_train_state(model, config.train, optax.constant_schedule(0.0))
    manager = checkpoint_manager(workdir, config.train)
    if manager.latest_step() is not None:
        manager.close()
        raise FileExistsError(f"{workdir} already holds checkpoints; import into an empty --workdir")
    manager.save(0, args=ocp.args.Composite(state=ocp.args.StandardSave(nnx.to_pure_dict(state))))
    manager.wait_until_finished()
    manager.close()


def import_official_rd4ad(config: ml_collections.ConfigDict, workdir: str, path: str):
    """An official RD4AD / SK-RD4AD checkpoint (``{'bn', 'decoder'}`` .pth) as the workdir's
    checkpoint for ``config``; returns the model (the caller writes its threshold)."""
    if config.method not in ("rd4ad", "sk_rd4ad"):
        raise ValueError(f"an official RD4AD checkpoint needs an RD4AD or SK-RD4AD config, not "
                         f"method={config.method!r} (use configs/rd4ad.py or configs/sk_rd4ad.py)")
    model, _ = setup_model(config)
    load_official_rd4ad(model, path)
    save_imported_model(model, config, workdir)
    return model


def load_trained_model(config: ml_collections.ConfigDict, workdir: str):
    """(model, teacher_info, step) of the workdir's last checkpoint, for evaluation and prediction."""
    manager = checkpoint_manager(workdir, config.train)
    step = manager.latest_step()
    if step is None:
        manager.close()
        raise FileNotFoundError(
            f"no checkpoint in {os.path.join(workdir, 'checkpoints')}; train first with "
            f"--mode=train (same --config and --workdir)")
    model, teacher_info = setup_model(config)
    # The optimiser state is restored too (the checkpoint holds both); its schedule is irrelevant.
    graphdef, state = split_train_state(model, config.train, optax.constant_schedule(0.0))
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_restore_target(state))))
    manager.close()
    nnx.replace_by_pure_dict(state, restored["state"])
    return nnx.merge(graphdef, state)["model"], teacher_info, step
