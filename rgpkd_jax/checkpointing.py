"""Checkpoints of a workdir: what they hold, how a run saves, resumes and loads them for evaluation.

A checkpoint (orbax) holds what training changes: the trained state of ``{'model', 'optimizer'}``
(`train_state.split`: without the frozen teacher and the method's ``Frozen`` state such as RGPKD's
prompt bank), the position of every process's data iterator, so a rerun resumes exactly (in another
number of processes too, with ``data.num_workers=0``), and the teacher's provenance
(docs/checkpoints.md). Building the model to restore into is `model_setup`'s.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from flax import nnx

from rgpkd_jax import sharding
from rgpkd_jax.data import pipeline

DATA_ITEM = "data"
TEACHER_ITEM = "teacher"


class DamagedCheckpointError(OSError):
    """A checkpoint step that orbax cannot read (truncated or emptied files)."""


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
                       DATA_ITEM: ocp.JsonCheckpointHandler(), TEACHER_ITEM: ocp.JsonCheckpointHandler()})


def newest_step(workdir: str) -> int | None:
    """The workdir's newest complete checkpoint step (None if it has none); creates nothing."""
    return max(ocp.utils.checkpoint_steps(os.path.join(os.path.abspath(workdir), "checkpoints")), default=None)


def _saved_part(state) -> dict:
    """The pure dict of what a checkpoint holds: the trained state of `split_train_state` (the
    teacher is rebuilt from its recorded weights, the prompt bank from teacher and training split)."""
    return nnx.to_pure_dict(state)


def step_dir(manager, step: int) -> str:
    return os.path.join(os.fspath(manager.directory), str(step))


def _restore_items(manager, step: int, **items):
    """`manager.restore` of some items of step `step`; an unreadable step is one error naming its
    directory and the earlier step that moving it aside falls back to."""
    try:
        return manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # orbax and tensorstore raise many types for damaged files
        earlier = [s for s in manager.all_steps() if s < step]
        directory = step_dir(manager, step)
        fallback = (f"if it is damaged, move it aside to fall back to step {max(earlier)}" if earlier
                    else "if it is damaged, move it aside to start over")
        root = e  # orbax wraps tensorstore's error in one whose text is a repr of a bound method
        while root.__cause__ is not None:
            root = root.__cause__
        detail = " ".join(str(root).split())[:300]
        raise DamagedCheckpointError(
            f"cannot restore the checkpoint {directory} ({type(root).__name__}: {detail}); {fallback}: "
            f"mv {directory} {os.path.dirname(os.fspath(manager.directory))}/damaged_step_{step}") from e


def _data_layout(config) -> dict:
    return {"process_count": jax.process_count(), "num_workers": pipeline.num_workers(config)}


def save(manager, step: int, state, data_iterator, config, teacher_info: dict) -> None:
    """Starts saving what training changed, every process's data-iterator position and the
    teacher's provenance (a collective: all processes call it). Returns once the arrays are
    copied to host memory."""
    # orbax writes a JSON item from process 0 only: it holds the positions of all processes.
    data = {**_data_layout(config), "per_process": sharding.allgather_json(data_iterator.get_state())}
    manager.save(step, args=ocp.args.Composite(**{
        "state": ocp.args.StandardSave(_saved_part(state)), DATA_ITEM: ocp.args.JsonSave(data),
        TEACHER_ITEM: ocp.args.JsonSave(teacher_info)}))


def restore(manager, step: int, state, data_iterator, config):
    """The state of checkpoint `step`, with the data iterator set to continue where it stopped.

    A checkpoint resumes in another number of processes when `data.num_workers` is 0 (each
    process's position is then the number of batches it consumed, the global step in every
    layout); with worker processes a position is per worker and resumes only in its own layout.
    """
    manager.wait_until_finished()
    restored = _restore_items(manager, step, **{
        "state": ocp.args.StandardRestore(_restore_target(state)), DATA_ITEM: ocp.args.JsonRestore()})
    nnx.replace_by_pure_dict(state, restored["state"])
    data_iterator.set_state(_position(restored[DATA_ITEM], _data_layout(config), step))
    return state


def _restore_target(state):
    """The state's shapes and dtypes, replicated over the mesh of all devices: restored onto one
    device per process, the arrays would need a cross-host copy to reach that mesh."""
    replicated = sharding.replicated(sharding.make_mesh())
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                        _saved_part(state))


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


def recorded_teacher(manager, step: int) -> dict:
    """The provenance of the teacher checkpoint `step` was trained with."""
    if not os.path.isdir(os.path.join(step_dir(manager, step), TEACHER_ITEM)):
        raise DamagedCheckpointError(
            f"{step_dir(manager, step)} records no teacher: it was written before checkpoints left "
            f"the teacher out (docs/checkpoints.md) or is incomplete; train again in a new --workdir")
    return _restore_items(manager, step, **{TEACHER_ITEM: ocp.args.JsonRestore()})[TEACHER_ITEM]


def save_trained_state(workdir: str, tc, state, teacher_info: dict) -> None:
    """Saves a model trained elsewhere (an imported official checkpoint) as the workdir's
    checkpoint at step 0: its trained state and teacher record, no data position."""
    manager = checkpoint_manager(workdir, tc)
    try:
        if manager.latest_step() is not None:
            raise FileExistsError(f"{workdir} already holds checkpoints; import into an empty --workdir")
        manager.save(0, args=ocp.args.Composite(**{"state": ocp.args.StandardSave(_saved_part(state)),
                                                    TEACHER_ITEM: ocp.args.JsonSave(teacher_info)}))
        manager.wait_until_finished()
    finally:
        manager.close()


def restore_trained_state(manager, step: int, state):
    """``state`` (the trained part of `train_state.split`) filled from checkpoint ``step``, for
    evaluation: the optimiser state comes along (the checkpoint holds both), no data position."""
    restored = _restore_items(manager, step, state=ocp.args.StandardRestore(_restore_target(state)))
    nnx.replace_by_pure_dict(state, restored["state"])
    return state
