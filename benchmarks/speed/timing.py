"""Timing and flop counting shared by the measuring tools (speed, complexity, aupro_timing, export).

Every timed call is blocked on (`jax.block_until_ready`) before the clock stops, so asynchronous
dispatch is counted. Flops are XLA's cost analysis of a compiled program: a multiply-add counts
as 2 flops, and every op is counted (not only matmuls and convolutions).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp


def block(out) -> None:
    jax.block_until_ready(out)  # leaves that are not jax arrays pass through


def interleaved(cases: dict[str, Callable[[], object]], *, warmup: int, repeats: int,
                alternate: bool = False) -> dict[str, list[float]]:
    """Seconds per call of each case, measured in rounds A B A B ... after `warmup` untimed rounds;
    `alternate`: every other round in the reverse order (A B, B A, ...), so neither case always
    runs right after the other."""
    for _ in range(warmup):
        for fn in cases.values():
            block(fn())
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(repeats):
        order = list(cases.items())
        for name, fn in reversed(order) if alternate and round_ % 2 else order:
            start = time.perf_counter()
            block(fn())
            times[name].append(time.perf_counter() - start)
    return times


def seconds_per_call(fn: Callable[[], object], *, warmup: int, repeats: int) -> list[float]:
    """`interleaved` of one case: the seconds of each of `repeats` calls after `warmup` calls."""
    return interleaved({"fn": fn}, warmup=warmup, repeats=repeats)["fn"]


def median(seconds: list[float]) -> float:
    return statistics.median(seconds)


def median_seconds(fn: Callable[[], object], *, warmup: int, repeats: int) -> float:
    return median(seconds_per_call(fn, warmup=warmup, repeats=repeats))


def rate(items: int, seconds: list[float]) -> float:
    """Items per second at the median time."""
    return items / median(seconds)


def flops(compiled) -> float | None:
    """XLA's flop count of a compiled program (`jit(f).lower(...).compile()`), None if not reported."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returns one dict per device program
        analysis = analysis[0] if analysis else None
    return float(analysis["flops"]) if analysis and "flops" in analysis else None


def gflops_per_image(compiled, batch_size: int) -> float | None:
    """XLA's flop count of a compiled program over a batch, per image, in GFLOPs."""
    count = flops(compiled)
    return None if count is None else count / batch_size / 1e9


class MatmulPeak:
    """The machine's attainable fp32 matmul rate for XLA (GFLOP/s), sampled once per call.

    Each call is one sample: the median of 3 back-to-back 2048^2 matmuls after an untimed one.
    The first matmul after a large train step runs at a fifth of the rate (measured: 42 against
    190-200 GFLOP/s; the step's memory is being released), which is not the machine's rate.
    """

    def __init__(self, size: int = 2048, calls: int = 3):
        self.a = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
        self.b = jax.random.normal(jax.random.key(2), (size, size), jnp.float32)
        self.f = jax.jit(lambda x, y: jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST))
        self.flops, self.calls = 2 * size ** 3, calls
        self.samples: list[float] = []

    def __call__(self) -> None:
        seconds = seconds_per_call(lambda: self.f(self.a, self.b), warmup=1, repeats=self.calls)
        self.samples.append(self.flops / median(seconds) / 1e9)

    @property
    def gflops(self) -> float:
        """The best sample: ceilings are upper bounds, so they take the best rate seen (samples
        after our train step run at 110-120 against 200 GFLOP/s in the warm-up round)."""
        return max(self.samples)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
