"""The speed benchmark's two sizes, and our configs at that size."""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from rgpkd_jax import config_files

# The method the peers implement (anomalib's ReverseDistillation, the official RD4AD code): every
# section but the other methods' train steps measures it.
PEER_METHOD = "rd4ad"


@dataclasses.dataclass(frozen=True)
class Setup:
    name: str                  # full | tiny
    arch: str                  # the peers' teacher: RD4AD's config's at this size
    image_size: int
    train_batch: int
    infer_batches: tuple[int, ...]
    eval_batch: int
    eval_images: int
    aupro_images: int
    bank_entries: int          # RGPKD prompt bank size
    memory_subprocess: bool    # a fresh process per memory probe (tiny: in this process, structure only)
    warmup: int
    repeats: int


FULL = Setup("full", "wide_resnet50_2", 256, 16, (1, 16), 16, 32, 32, 64, True, warmup=1, repeats=3)
TINY = Setup("tiny", "resnet18", 64, 2, (1, 2), 2, 4, 4, 4, False, warmup=0, repeats=1)


def setup_for(tiny: bool, **replacements: int | None) -> Setup:
    """FULL or TINY, with the fields given (not None) replaced, e.g. `repeats=5`."""
    return dataclasses.replace(TINY if tiny else FULL, **{k: v for k, v in replacements.items() if v is not None})


def load_config(method: str, setup: Setup, config_dir: str, overrides: Sequence[str] = ()):
    """`<config_dir>/<method>.py` at the benchmark's size (its `,tiny` form for TINY) with a random
    teacher (timing only), then `overrides` (`key=value`). Each config keeps its own teacher: at
    both sizes RD4AD's is the peers' (`Setup.arch`)."""
    sizes = ["teacher.weights=random", f"dataset.image_size={setup.image_size}",
             f"train.batch_size={setup.train_batch}", f"eval.batch_size={setup.eval_batch}"]
    spec = f"{os.path.join(config_dir, method)}.py:synthetic/speed{',tiny' if setup.name == 'tiny' else ''}"
    config = config_files.load_config(spec, [*sizes, *overrides])
    if method == PEER_METHOD and config.teacher.arch != setup.arch:
        raise ValueError(f"{spec}: teacher.arch is {config.teacher.arch}, the peers run {setup.arch}; "
                         "the rows would compare different models")
    return config
