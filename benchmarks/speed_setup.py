"""What the speed benchmark runs: its two sizes, our configs at that size, and the peers to compare with."""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

from absl import logging

from rgpkd_jax import config_files

PEERS = ("anomalib", "official", "none")
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


@dataclasses.dataclass(frozen=True)
class Peer:
    """A PyTorch implementation timed against ours in the train, inference and memory rows."""
    name: str                                 # anomalib | official
    label: str                                # the rows' "peer is" column
    versions: dict[str, str]
    build: Callable[[str, int], Any]          # (arch, image_size) -> prepare, train_step, maps_and_scores, train_flops
    peak_memory_mib: Callable[[], tuple[float, str] | None]
    import_all: Callable[[], None]
    probe_flags: tuple[str, ...] = ()         # what a memory probe subprocess needs to load it again
    module: Any = None                        # anomalib: `benchmarks.peers` (its metrics are timed too)

    @property
    def row_suffix(self) -> str:
        """anomalib's rows keep their names (train/rd4ad); the others get `_vs_<name>`."""
        return "" if self.name == "anomalib" else f"_vs_{self.name}"


def check_peers(names: list[str] | tuple[str, ...], official_dir: str | None) -> None:
    """ValueError (one line, naming the flag) for unknown or contradictory peer flags."""
    unknown = sorted(set(names) - set(PEERS))
    if unknown or not names:
        raise ValueError(f"--peers: unknown {unknown}; give a comma list of {PEERS}")
    if "none" in names and len(names) > 1:
        raise ValueError(f"--peers={','.join(names)}: 'none' runs ours alone; give it alone")
    if official_dir and "official" not in names:
        raise ValueError("--official_dir is only used with --peers=official (add 'official' to --peers)")


def load_peers(names, official_dir: str | None = None) -> tuple[dict[str, Peer], dict[str, str]]:
    """({name: Peer} of the asked peers that can run here, {name: why not} of the others).
    A missing anomalib falls back to ours alone with a warning; the official code was asked for
    with a path, so a problem with it raises `official_peer.OfficialCodeError` (one line)."""
    check_peers(names, official_dir)
    loaded, reasons = {}, {}
    if "none" in names:
        reasons["none"] = "not requested (--peers=none)"
    if "anomalib" in names:
        from benchmarks import peers
        missing = peers.missing_packages()
        if missing:
            reasons["anomalib"] = (f"anomalib peer not installed (missing: {', '.join(missing)}); ran without it. "
                                   f"Install: {peers.INSTALL_HINT}")
            logging.warning("%s", reasons["anomalib"])
        else:
            versions = peers.version_info()
            loaded["anomalib"] = Peer("anomalib", f"anomalib {versions['anomalib']}", versions,
                                      peers.ReverseDistillationPeer, peers.peak_memory_mib, peers.import_all,
                                      module=peers)
    if "official" in names:
        from benchmarks import official_peer
        code = official_peer.import_official(official_dir)
        loaded["official"] = Peer(
            "official", official_peer.label(code), official_peer.version_info(code),
            functools.partial(official_peer.OfficialReverseDistillation, code), official_peer.peak_memory_mib,
            official_peer.import_all, probe_flags=(f"--official_dir={code.path}",))
    return loaded, reasons
