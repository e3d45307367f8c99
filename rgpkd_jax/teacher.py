"""Puts the configured teacher weights into a model's `teacher` and says which ones it used.

A random teacher makes every metric meaningless (measured: RD4AD with a random ResNet18 teacher
scores image AUROC 0.53-0.55 on two real defect sets), so it is only used when asked for, or by
the demo when ImageNet weights can't be had, and then it is announced loudly and recorded in the
run's files.
"""

from __future__ import annotations

from absl import logging
from flax import nnx

RANDOM_TEACHER_WARNING = (
    "RANDOM TEACHER: no ImageNet weights were loaded, so the anomaly scores below are at chance "
    "level and are NOT results (RD4AD with a random ResNet18 teacher scores image AUROC 0.53-0.55 on "
    "real defects). Get the weights with: python -m rgpkd_jax.convert --arch {arch} --download")


def load_into(model: nnx.Module, config) -> dict:
    """Loads `config.teacher.weights` into `model.teacher`; returns a description for the run files."""
    from rgpkd_jax import convert

    arch, weights = config.teacher.arch, config.teacher.weights
    if weights == "random":
        logging.warning(RANDOM_TEACHER_WARNING.format(arch=arch))
        return {"arch": arch, "weights": "random", "warning": RANDOM_TEACHER_WARNING.format(arch=arch)}
    try:
        pretrained = convert.load_teacher(arch, weights, num_layers=_num_layers(model))
    except Exception as e:  # noqa: BLE001 - any failure to get weights may fall back, loudly
        if not (config.teacher.fallback_to_random and weights == "imagenet"):
            raise
        pretrained = _download_or_none(convert, arch, model, reason=e)
        if pretrained is None:
            message = RANDOM_TEACHER_WARNING.format(arch=arch)
            logging.warning("%s\n(reason: %s)", message, e)
            print("\n" + "!" * 100 + "\n" + message + "\n" + "!" * 100 + "\n", flush=True)
            return {"arch": arch, "weights": "random", "warning": message, "reason": str(e)}
    nnx.update(model.teacher, nnx.state(pretrained))
    return {"arch": arch, "weights": weights}


def _num_layers(model) -> int:
    return len(model.teacher.tap_channels)


def _download_or_none(convert, arch: str, model, reason: Exception):
    """First use of the demo: try to download and convert the ImageNet weights once."""
    logging.info("ImageNet weights for %s are not cached (%s); trying to download them", arch, reason)
    try:
        convert.convert(arch, download=True)
        return convert.load_teacher(arch, "imagenet", num_layers=_num_layers(model))
    except Exception as e:  # noqa: BLE001 - no network here is the common case
        logging.warning("could not download the %s weights: %s", arch, e)
        return None
