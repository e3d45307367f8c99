"""A method's model made ready to train, to resume or to evaluate.

`setup_model` builds ``config.method``'s model (`models.build_model`), loads its teacher (as a
checkpoint records it, when resuming or evaluating) and lets the method prepare itself from the
training split (`models.Method.prepare`: RGPKD's prompt bank). `load_trained_model` does so for a
workdir's last checkpoint and restores the trained state into it.
"""

from __future__ import annotations

import os

import optax
from flax import nnx

from rgpkd_jax import checkpointing, run_info, train_state
from rgpkd_jax import teacher as teacher_lib
from rgpkd_jax.data import pipeline
from rgpkd_jax.models import build_model, model_class
from rgpkd_jax.models.rd4ad import RD4AD
from rgpkd_jax.models.official_checkpoint import load_official_rd4ad


class TeacherMismatchError(ValueError):
    """The teacher built now is not the one a checkpoint was trained with."""


def setup_model(config, *, restoring: tuple | None = None):
    """(model, teacher provenance): the model built, its teacher loaded, the method prepared.

    `restoring`: (manager, step) of the checkpoint the model is for: the teacher is rebuilt as that
    checkpoint records it and must have the recorded values. Preparation runs before a checkpoint
    is restored: what it makes (``models.Frozen`` state) is a function of teacher and data.
    """
    model = build_model(config, nnx.Rngs(config.seed))
    recorded = checkpointing.recorded_teacher(*restoring) if restoring else None
    teacher_info = teacher_lib.load_into(model, config, recorded=recorded)
    if recorded is not None and recorded.get("digest") != teacher_info["digest"]:
        raise TeacherMismatchError(
            f"{checkpointing.step_dir(*restoring)} was trained with the teacher "
            f"{teacher_lib.describe(recorded)}, but this run's teacher is {teacher_lib.describe(teacher_info)}: "
            f"set --config.teacher.* (and seed, for a random teacher) as in training, or use another --workdir")
    model.prepare(lambda: pipeline.test_batches(config, batch_size=config.train.batch_size, split="train"))
    return model, teacher_info


def load_trained_model(config, workdir: str):
    """(model, teacher_info, step) of the workdir's last checkpoint, for evaluation and prediction:
    the model as `run_info.json` and the checkpoint's teacher record describe it."""
    config = run_info.training_config(config, workdir)
    manager = checkpointing.checkpoint_manager(workdir, config.train)
    step = manager.latest_step()
    try:
        if step is None:
            raise FileNotFoundError(
                f"no checkpoint in {os.path.join(workdir, 'checkpoints')}; train first with "
                f"--mode=train (same --config and --workdir)")
        model, teacher_info = setup_model(config, restoring=(manager, step))
        # The optimiser state is restored too (the checkpoint holds both); its schedule is irrelevant.
        graphdef, state, frozen = train_state.split(model, config.train, optax.constant_schedule(0.0))
        state = checkpointing.restore_trained_state(manager, step, state)
    finally:
        manager.close()
    return train_state.merge(graphdef, state, frozen)["model"], teacher_info, step


def save_imported_model(model, config, workdir: str, *, teacher_info: dict) -> None:
    """Saves a model trained elsewhere as the workdir's checkpoint at step 0, with its
    ``run_info.json``, so that --mode=eval and --mode=predict use it (the caller writes the threshold)."""
    _, state, _ = train_state.split(model, config.train, optax.constant_schedule(0.0))
    checkpointing.save_trained_state(workdir, config.train, state, teacher_info)
    run_info.write(workdir, config, teacher_info, imported=True)


def import_official_rd4ad(config, workdir: str, path: str):
    """An official RD4AD / SK-RD4AD checkpoint (``{'bn', 'decoder'}`` .pth) as the workdir's
    checkpoint for ``config``; returns the model (the caller writes its threshold)."""
    if model_class(config.method) is not RD4AD:
        raise ValueError(f"an official RD4AD checkpoint needs an RD4AD or SK-RD4AD config, not "
                         f"method={config.method!r} (use configs/rd4ad.py or configs/sk_rd4ad.py)")
    model, teacher_info = setup_model(config)
    load_official_rd4ad(model, path)
    save_imported_model(model, config, workdir, teacher_info=teacher_info)
    return model
