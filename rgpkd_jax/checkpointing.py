"""Checkpoints of a workdir: what they hold, how a run saves, resumes and loads them for evaluation.

A checkpoint (orbax) holds what training changes: ``{'model', 'optimizer'}`` of
:func:`split_train_state` without the frozen teacher and RGPKD's prompt bank, the position of every
process's data iterator, so a rerun resumes exactly (in another number of processes too, with
``data.num_workers=0``), and the teacher's provenance (docs/checkpoints.md). Building the model to
restore into (:func:`setup_model`) loads the teacher as the checkpoint records it, checks its values
against the recorded digest and, for RGPKD, fills the prompt bank from the training split.
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from rgpkd_jax import files, optim, sharding
from rgpkd_jax import teacher as teacher_lib
from rgpkd_jax.config_files import ConfigError
from rgpkd_jax.data import pipeline
from rgpkd_jax.models import NOT_TRAINED, TRAINABLE, build_model
from rgpkd_jax.models.official_checkpoint import load_official_rd4ad


DATA_ITEM = "data"
TEACHER_ITEM = "teacher"
RUN_INFO = "run_info.json"


class TeacherMismatchError(ValueError):
    """The teacher built now is not the one a checkpoint was trained with."""


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


def _saved_part(state) -> dict:
    """The pure dict of what a checkpoint holds: the trained state of `split_train_state` (the
    teacher is rebuilt from its recorded weights, the prompt bank from teacher and training split)."""
    return nnx.to_pure_dict(state)


def _step_dir(manager, step: int) -> str:
    return os.path.join(os.fspath(manager.directory), str(step))


def _restore_items(manager, step: int, **items):
    """`manager.restore` of some items of step `step`; an unreadable step is one error naming its
    directory and the earlier step that moving it aside falls back to."""
    try:
        return manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # orbax and tensorstore raise many types for damaged files
        earlier = [s for s in manager.all_steps() if s < step]
        step_dir = _step_dir(manager, step)
        fallback = (f"if it is damaged, move it aside to fall back to step {max(earlier)}" if earlier
                    else "if it is damaged, move it aside to start over")
        detail = (str(e).strip().splitlines() or [""])[0][:200]
        raise DamagedCheckpointError(
            f"cannot restore the checkpoint {step_dir} ({type(e).__name__}: {detail}); {fallback}: "
            f"mv {step_dir} {os.path.dirname(os.fspath(manager.directory))}/damaged_step_{step}") from e


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


def setup_model(config, *, restoring: tuple | None = None):
    """Builds the model, loads the teacher, and (RGPKD) fills its prompt bank from the train split.

    `restoring`: (manager, step) of the checkpoint the model is for: the teacher is rebuilt as that
    checkpoint records it and must have the recorded values. The bank is built before a
    checkpoint is restored; its values are a function of teacher and data.
    """
    model = build_model(config, nnx.Rngs(config.seed))
    recorded = _recorded_teacher(*restoring) if restoring else None
    teacher_info = teacher_lib.load_into(model, config, recorded=recorded)
    if recorded is not None and recorded.get("digest") != teacher_info["digest"]:
        raise TeacherMismatchError(
            f"{_step_dir(*restoring)} was trained with the teacher {teacher_lib.describe(recorded)}, "
            f"but this run's teacher is {teacher_lib.describe(teacher_info)}: set --config.teacher.* "
            f"(and seed, for a random teacher) as in training, or use another --workdir")
    if hasattr(model, "build_bank"):
        model.build_bank(pipeline.test_batches(config, batch_size=config.train.batch_size, split="train"))
    return model, teacher_info


def _recorded_teacher(manager, step: int) -> dict:
    """The provenance of the teacher checkpoint `step` was trained with."""
    if not os.path.isdir(os.path.join(_step_dir(manager, step), TEACHER_ITEM)):
        raise DamagedCheckpointError(
            f"{_step_dir(manager, step)} records no teacher: it was written before checkpoints left "
            f"the teacher out (docs/checkpoints.md) or is incomplete; train again in a new --workdir")
    return _restore_items(manager, step, **{TEACHER_ITEM: ocp.args.JsonRestore()})[TEACHER_ITEM]


def write_run_info(workdir: str, config, teacher_info: dict, **details) -> None:
    """`run_info.json`: the config and teacher a workdir's model was made with (process 0)."""
    if sharding.is_primary():
        files.write_json(os.path.join(workdir, RUN_INFO),
                         {"config": config.to_dict(), "teacher": teacher_info, **details})


# How a model is computed, not what it is: free to differ between training and evaluation.
_COMPUTE_ONLY = ("model.conv_impl", "model.compute_dtype")


def training_config(config, workdir: str):
    """`config` for evaluating the workdir's model: its model-shaping keys (method, teacher.arch,
    model.*) must equal those in `run_info.json`, and the seed (which builds a random teacher) is
    the training one."""
    path = os.path.join(workdir, RUN_INFO)
    if not os.path.exists(path):
        logging.warning("%s is missing: the model is built from the given config alone", path)
        return config
    with open(path) as f:
        trained = json.load(f)["config"]
    used = config.to_dict()
    keys = ["method", "teacher.arch"] + [f"model.{k}" for k in sorted(
        set(trained.get("model", {})) | set(used.get("model", {})))]
    conflicts = [f"{key}={_lookup(used, key)!r} (trained with {_lookup(trained, key)!r})" for key in keys
                 if key not in _COMPUTE_ONLY and _lookup(used, key) != _lookup(trained, key)]
    if conflicts:
        raise ConfigError(f"the config conflicts with the training config in {path}: "
                          f"{', '.join(conflicts)}; use the config and overrides the model was trained with")
    config = config.copy_and_resolve_references()
    config.seed = trained["seed"]
    return config


def _lookup(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return list(tree) if isinstance(tree, tuple) else tree


def split_train_state(model, tc, schedule):
    """(graphdef, state, frozen) of {'model', 'optimizer'}: `state` is what training changes (the
    trained parameters, the student's BN statistics, the optimiser; what checkpoints hold),
    `frozen` what it never changes (`models.NOT_TRAINED`: teacher and prompt bank).
    `merge_train_state` puts them back together."""
    optimizer = nnx.Optimizer(model, optim.make_optimizer(tc, schedule), wrt=TRAINABLE)
    graphdef, frozen, state = nnx.split({"model": model, "optimizer": optimizer}, NOT_TRAINED, ...)
    return graphdef, state, frozen


def merge_train_state(graphdef, state, frozen) -> dict:
    """{'model', 'optimizer'} from `split_train_state`'s parts."""
    return nnx.merge(graphdef, frozen, state)


def trained_state(nodes: dict):
    """The `state` part of `split_train_state` of merged nodes (what a train step returns)."""
    return nnx.state(nodes, nnx.Not(NOT_TRAINED))


def save_imported_model(model, config: ml_collections.ConfigDict, workdir: str, *, teacher_info: dict) -> None:
    """Saves a model trained elsewhere (an official RD4AD checkpoint) as the workdir's checkpoint
    at step 0, so that --mode=eval and --mode=predict use it (the caller writes the threshold)."""
    _, state, _ = split_train_state(model, config.train, optax.constant_schedule(0.0))
    manager = checkpoint_manager(workdir, config.train)
    if manager.latest_step() is not None:
        manager.close()
        raise FileExistsError(f"{workdir} already holds checkpoints; import into an empty --workdir")
    manager.save(0, args=ocp.args.Composite(**{"state": ocp.args.StandardSave(_saved_part(state)),
                                                TEACHER_ITEM: ocp.args.JsonSave(teacher_info)}))
    manager.wait_until_finished()
    manager.close()
    write_run_info(workdir, config, teacher_info, imported=True)


def import_official_rd4ad(config: ml_collections.ConfigDict, workdir: str, path: str):
    """An official RD4AD / SK-RD4AD checkpoint (``{'bn', 'decoder'}`` .pth) as the workdir's
    checkpoint for ``config``; returns the model (the caller writes its threshold)."""
    if config.method not in ("rd4ad", "sk_rd4ad"):
        raise ValueError(f"an official RD4AD checkpoint needs an RD4AD or SK-RD4AD config, not "
                         f"method={config.method!r} (use configs/rd4ad.py or configs/sk_rd4ad.py)")
    model, teacher_info = setup_model(config)
    load_official_rd4ad(model, path)
    save_imported_model(model, config, workdir, teacher_info=teacher_info)
    return model


def load_trained_model(config: ml_collections.ConfigDict, workdir: str):
    """(model, teacher_info, step) of the workdir's last checkpoint, for evaluation and prediction:
    the model as `run_info.json` and the checkpoint's teacher record describe it."""
    config = training_config(config, workdir)
    manager = checkpoint_manager(workdir, config.train)
    step = manager.latest_step()
    try:
        if step is None:
            raise FileNotFoundError(
                f"no checkpoint in {os.path.join(workdir, 'checkpoints')}; train first with "
                f"--mode=train (same --config and --workdir)")
        model, teacher_info = setup_model(config, restoring=(manager, step))
        # The optimiser state is restored too (the checkpoint holds both); its schedule is irrelevant.
        graphdef, state, frozen = split_train_state(model, config.train, optax.constant_schedule(0.0))
        restored = _restore_items(manager, step, state=ocp.args.StandardRestore(_restore_target(state)))
    finally:
        manager.close()
    nnx.replace_by_pure_dict(state, restored["state"])
    return merge_train_state(graphdef, state, frozen)["model"], teacher_info, step
