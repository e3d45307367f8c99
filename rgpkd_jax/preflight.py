"""Checks that a run can start, made before it prepares data, loads weights or writes anything into
the workdir: a wrong value or absent teacher weights then cost a second and leave nothing behind,
instead of surfacing after a dataset preparation, inside grain or jax, with a half-made workdir.

Only what can be checked cheaply and for certain is checked here; everything else still fails where
it is used, with its own message.
"""

from __future__ import annotations

import ml_collections

import rgpkd_jax.data as data_lib
from rgpkd_jax import teacher, teacher_cache
from rgpkd_jax.config_files import ConfigError
from rgpkd_jax.data import unified
from rgpkd_jax.models import list_methods
from rgpkd_jax.models.remat import REMAT_MODES

TRAINING_MODES = ("train", "train_eval")
# Every method halves the teacher's stride-16 features once more (RD4AD's bottleneck, the U-Net's
# deepest stage) and doubles them back, so image sides must be multiples of 32.
IMAGE_SIDE_MULTIPLE = 32
_POSITIVE_INTEGERS = ("dataset.image_size", "train.batch_size", "train.epochs", "eval.batch_size")


def check_run(config: ml_collections.ConfigDict, mode: str) -> None:
    """Raises one error naming every bad config value, then one for absent teacher weights (training
    only: evaluation and prediction rebuild the teacher their checkpoint records)."""
    check_config_values(config)
    data_lib.builder_class(config.dataset.name)
    weights = config.teacher.weights
    may_fall_back = weights == "imagenet" and config.teacher.fallback_to_random
    if mode in TRAINING_MODES and not may_fall_back:
        teacher.check_weights_available(config.teacher.arch, weights)


def check_config_values(config: ml_collections.ConfigDict) -> None:
    problems = []
    if config.method not in list_methods():
        problems.append(f"method={config.method!r} is not one of {list(list_methods())}")
    for key in _POSITIVE_INTEGERS:
        value = _get(config, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{key}={value!r} must be a positive integer")
    size = config.dataset.image_size
    if isinstance(size, int) and size > 0 and size % IMAGE_SIDE_MULTIPLE:
        problems.append(f"dataset.image_size={size} must be a multiple of {IMAGE_SIDE_MULTIPLE} "
                        f"(e.g. {max(IMAGE_SIDE_MULTIPLE, round(size / IMAGE_SIDE_MULTIPLE) * IMAGE_SIDE_MULTIPLE)})")
    for key, low, high in (("eval.fpr_limit", 0.0, 1.0), ("eval.threshold_quantile", 0.0, 1.0)):
        value = _get(config, key)
        if not low < value <= high:
            problems.append(f"{key}={value!r} must lie in ({low:g}, {high:g}]")
    if not config.train.learning_rate > 0:
        problems.append(f"train.learning_rate={config.train.learning_rate!r} must be positive")
    if config.train.teacher_cache not in teacher_cache.MODES:
        problems.append(f"train.teacher_cache={config.train.teacher_cache!r} is not one of {teacher_cache.MODES}")
    for key in ("train.teacher_cache_budget_mib", "train.teacher_cache_host_budget_mib"):
        if not _get(config, key) >= 0:
            problems.append(f"{key}={_get(config, key)!r} must be >= 0")
    if config.model.remat not in REMAT_MODES:
        problems.append(f"model.remat={config.model.remat!r} is not one of {REMAT_MODES}")
    if config.dataset.sampling not in unified.SAMPLINGS:
        problems.append(f"dataset.sampling={config.dataset.sampling!r} is not one of {list(unified.SAMPLINGS)}")
    if not config.eval.sigma >= 0:
        problems.append(f"eval.sigma={config.eval.sigma!r} must be >= 0 (0: no smoothing)")
    if problems:
        raise ConfigError("bad config value" + ("s" if len(problems) > 1 else "") + ": "
                          + "; ".join(problems) + " (set them with --config.<key>=<value>)")


def _get(config: ml_collections.ConfigDict, dotted: str):
    section, key = dotted.split(".")
    return config[section][key]
