"""``run_info.json``: the config and teacher a workdir's model was made with, and the checks that
evaluation, prediction, export and a resumed training build that same model."""

from __future__ import annotations

import json
import os

from absl import logging

from rgpkd_jax import files, sharding
from rgpkd_jax.config_files import ConfigError

RUN_INFO = "run_info.json"
# How a model is computed, not what it is: free to differ between training and evaluation.
_COMPUTE_ONLY = ("model.conv_impl", "model.compute_dtype")
# What a resumed training must read as before: the same dataset, categories (a unified run's union,
# docs/unified.md) and their sampling. Evaluation may use other categories (a unified model on one).
_RESUMED_DATA = ("dataset.name", "dataset.category", "dataset.sampling")


def write(workdir: str, config, teacher_info: dict, **details) -> None:
    """Writes ``run_info.json`` (process 0): the config, the teacher's provenance, ``details``."""
    if sharding.is_primary():
        files.write_json(os.path.join(workdir, RUN_INFO),
                         {"config": config.to_dict(), "teacher": teacher_info, **details})


def training_config(config, workdir: str):
    """`config` for evaluating the workdir's model: its model-shaping keys (method, teacher.arch,
    model.*) and the image size must equal those in `run_info.json`, and the seed (which builds a
    random teacher) is the training one.

    The image size is refused rather than allowed: the threshold is a quantile of scores at the
    training size, scores shift with the size, and RGPKD would rebuild its bank at the new size."""
    path = os.path.join(workdir, RUN_INFO)
    if not os.path.exists(path):
        logging.warning("%s is missing: the model is built from the given config alone", path)
        return config
    trained = _recorded_config(path)
    if conflicts := _conflicts(config, trained):
        raise ConfigError(f"the config conflicts with the training config in {path}: "
                          f"{', '.join(conflicts)}; use the config and overrides the model was trained with")
    config = config.copy_and_resolve_references()
    config.seed = trained["seed"]
    return config


def check_resume(config, workdir: str) -> None:
    """A resumed training must build the model its checkpoint holds: the keys `training_config`
    checks must equal those of the run that started it (`run_info.json`). Another shape would
    fail to restore as a damaged checkpoint; another loss or option would silently train on."""
    path = os.path.join(workdir, RUN_INFO)
    if not os.path.exists(path):
        return
    trained = _recorded_config(path)
    # and the same training data: a resumed iterator's position means nothing in another split
    data_keys = [key for key in _RESUMED_DATA if _lookup(config.to_dict(), key) != _lookup(trained, key)
                 and _lookup(trained, key) is not None]
    conflicts = _conflicts(config, trained) + [
        f"{key}={_lookup(config.to_dict(), key)!r} (trained with {_lookup(trained, key)!r})" for key in data_keys]
    if conflicts:
        raise ConfigError(f"the config conflicts with the one this workdir's training started with "
                          f"({path}): {', '.join(conflicts)}; resume with the config and overrides it "
                          "started with, or train in a new --workdir")


def _recorded_config(path: str) -> dict:
    with open(path) as f:
        return json.load(f)["config"]


def _conflicts(config, trained: dict) -> list[str]:
    """``key=value (trained with value)`` for each model-shaping key that differs."""
    used = config.to_dict()
    keys = ["method", "teacher.arch", "dataset.image_size"] + [f"model.{k}" for k in sorted(
        set(trained.get("model", {})) | set(used.get("model", {})))]
    return [f"{key}={_lookup(used, key)!r} (trained with {_lookup(trained, key)!r})" for key in keys
            if key not in _COMPUTE_ONLY and _lookup(used, key) != _lookup(trained, key)]


def _lookup(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return list(tree) if isinstance(tree, tuple) else tree
