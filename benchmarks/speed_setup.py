"""What the speed benchmark runs: its two sizes, our configs at that size, and the peer to compare with."""

from __future__ import annotations

import dataclasses
import os

from rgpkd_jax import config_files

PEERS = ("anomalib", "none")
METHODS = ("rd4ad", "sk_rd4ad", "rgpkd")


@dataclasses.dataclass(frozen=True)
class Setup:
    name: str                  # full | tiny
    arch: str                  # teacher of RD4AD / SK-RD4AD (RGPKD keeps its config's)
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


def load_config(method: str, setup: Setup, config_dir: str = "configs", extra_overrides: tuple[str, ...] = ()):
    """`<config_dir>/<method>.py` at the benchmark's size, with a random teacher (timing only),
    then `extra_overrides` (`key=value`)."""
    overrides = ["teacher.weights=random", f"dataset.image_size={setup.image_size}",
                 f"train.batch_size={setup.train_batch}", f"eval.batch_size={setup.eval_batch}"]
    if method != "rgpkd":
        overrides.append(f"teacher.arch={setup.arch}")
    spec = f"{os.path.join(config_dir, method)}.py:synthetic/speed{',tiny' if setup.name == 'tiny' else ''}"
    return config_files.load_config(spec, [*overrides, *extra_overrides])


def load_peer(name: str):
    """(the peer module, "") or (None, why not) when it was not asked for or cannot run here."""
    if name == "none":
        return None, "not requested (--peer=none)"
    from benchmarks import peers
    missing = peers.missing_packages()
    if missing:
        return None, (f"anomalib peer not installed (missing: {', '.join(missing)}); ran ours alone. "
                      f"Install: {peers.INSTALL_HINT}")
    return peers, ""
