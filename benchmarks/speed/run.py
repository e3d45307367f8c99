"""One speed benchmark run: what it collects (rows, raw timings, load, skipped and failed sections)
and the rows of ours against each peer."""

from __future__ import annotations

import time
from typing import Callable, Sequence

from absl import logging

from benchmarks.speed import sizes, timing
from benchmarks.speed.peers import Peer
from benchmarks.speed.report import Row

# (model.conv_impl, model.compute_dtype) pairs of the variants section.
VARIANTS = (("xla", "float32"), ("cpu", "float32"), ("xla", "bfloat16"), ("cpu", "bfloat16"))


class Run:
    """Collects rows, raw timings, load averages, skipped and failed sections of one benchmark run."""

    def __init__(self, setup: sizes.Setup, peers: dict[str, Peer], *, budget_s: float, config_dir: str,
                 variants: tuple[tuple[str, str], ...] = VARIANTS, overrides: Sequence[str] = ()):
        self.setup, self.peers, self.config_dir, self.variants = setup, peers, config_dir, variants
        self.overrides = tuple(overrides)  # the user's, on every config of ours
        anomalib = peers.get("anomalib")
        # anomalib's module: its peer is also timed in the evaluation, AU-PRO and variants sections.
        self.peer = anomalib.module if anomalib else None
        self.peer_label = anomalib.label if anomalib else "(no peer)"
        self.rows: list[Row] = []
        self.raw: dict[str, dict] = {}
        self.load: dict[str, dict] = {}
        self.skipped: list[str] = []
        self.failed: list[str] = []  # a section's error does not take the other sections' rows with it
        self.extra: dict[str, object] = {}
        self.start, self.budget_s = time.perf_counter(), budget_s

    def config(self, method: str, overrides: tuple[str, ...] = ()):
        """`method`'s config at the run's size: the user's overrides, then the row's own."""
        return sizes.load_config(method, self.setup, self.config_dir, (*self.overrides, *overrides))

    def section(self, name: str, fn: Callable[[], None]) -> None:
        elapsed = time.perf_counter() - self.start
        if elapsed > self.budget_s:
            logging.warning("skipping %s: %.0f s elapsed, budget %.0f s", name, elapsed, self.budget_s)
            self.skipped.append(f"{name} (budget: {elapsed:.0f} s of {self.budget_s:.0f} s used)")
            return
        logging.info("section %s (load %s)", name, timing.load_average())
        before, t0 = timing.load_average(), time.perf_counter()
        try:
            fn()
        except Exception as error:  # noqa: BLE001 - listed in the report; main() exits non-zero
            logging.exception("section %s failed", name)
            message = str(error).strip().splitlines()
            self.failed.append(f"{name}: {type(error).__name__}: {message[-1] if message else ''}")
        self.load[name] = {"before": before, "after": timing.load_average(),
                           "seconds": round(time.perf_counter() - t0, 1)}

    def timed(self, key: str, cases: dict, warmup: int | None = None) -> dict[str, list[float]]:
        times = timing.interleaved(cases, warmup=self.setup.warmup if warmup is None else warmup,
                                   repeats=self.setup.repeats)
        self.raw[key] = {name: [round(t, 4) for t in ts] for name, ts in times.items()}
        logging.info("%s: %s", key, {n: f"{timing.median(t):.3f}s" for n, t in times.items()})
        return times


def ceiling(flops: float | None, peak_gflops: float, peer_seconds: list[float] | None) -> float | None:
    """ours / peer if our `flops` ran at `peak_gflops`: the peer's time over that ideal time."""
    if not flops or not peer_seconds:
        return None
    return timing.median(peer_seconds) / (flops / 1e9 / peak_gflops)


def peer_rows(run: Run, name: str, images: int, times: dict[str, list[float]], peers: list[str], *,
              no_peer_label: str, **row_fields) -> dict[str, Row]:
    """Rows of ours against each peer in `peers` that ran (images/s): anomalib's is `name`, the others'
    `name_vs_<peer>`; without anomalib, `name` comes with no peer (labelled `no_peer_label`)."""
    ours = timing.rate(images, times["ours"])
    rows = {peer: Row(f"{name}{run.peers[peer].row_suffix}", "images/s", ours, timing.rate(images, times[peer]),
                      run.peers[peer].label, **row_fields) for peer in peers}
    if "anomalib" not in rows:
        rows["anomalib"] = Row(name, "images/s", ours, None, no_peer_label, **row_fields)
    return rows
