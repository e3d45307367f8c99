"""``run_info.json``: the config and teacher a workdir's model was made with, and the check that
evaluation, prediction and export build that same model."""

from __future__ import annotations

import json
import os

from absl import logging

from rgpkd_jax import files, sharding
from rgpkd_jax.config_files import ConfigError

RUN_INFO = "run_info.json"
# How a model is computed, not what it is: free to differ between training and evaluation.
_COMPUTE_ONLY = ("model.conv_impl", "model.compute_dtype")


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
    with open(path) as f:
        trained = json.load(f)["config"]
    used = config.to_dict()
    keys = ["method", "teacher.arch", "dataset.image_size"] + [f"model.{k}" for k in sorted(
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
