"""The PyTorch peers our RD4AD is timed against: which exist, how to load them, and why one did not run."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

from absl import logging

from benchmarks import optional
from benchmarks.speed import anomalib_peer, official_peer

PEERS = ("anomalib", "official", "none")


@dataclasses.dataclass(frozen=True)
class Peer:
    """A PyTorch implementation timed against ours in the train, inference and memory rows."""
    name: str                                 # anomalib | official
    label: str                                # the rows' "peer is" column
    versions: dict[str, str]
    build: Callable[[str, int], Any]          # (arch, image_size) -> prepare, train_step, maps_and_scores, train_flops
    import_all: Callable[[], None]
    probe_flags: tuple[str, ...] = ()         # what a memory probe subprocess needs to load it again
    module: Any = None                        # anomalib: `anomalib_peer` (its metrics are timed too)

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
        missing = optional.missing(anomalib_peer.REQUIRED)
        if missing:
            reasons["anomalib"] = (f"anomalib peer not installed (missing: {', '.join(missing)}); ran without it. "
                                   f"Install: {optional.PEERS_HINT}")
            logging.warning("%s", reasons["anomalib"])
        else:
            versions = anomalib_peer.version_info()
            loaded["anomalib"] = Peer("anomalib", f"anomalib {versions['anomalib']}", versions,
                                      anomalib_peer.ReverseDistillationPeer, anomalib_peer.import_all,
                                      module=anomalib_peer)
    if "official" in names:
        code = official_peer.import_official(official_dir)
        loaded["official"] = Peer(
            "official", official_peer.label(code), official_peer.version_info(code),
            functools.partial(official_peer.OfficialReverseDistillation, code), official_peer.import_all,
            probe_flags=(f"--official_dir={code.path}",))
    return loaded, reasons
