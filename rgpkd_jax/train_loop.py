"""One training loop with hooks: a plain ``for`` over steps, and what happens around a step as hooks
(data prefetch, profiling, the non-finite-loss stop, metric logging, checkpoints, the stop on
SIGTERM), as flax's
ImageNet example runs clu's periodic actions around its loop.

`run` is used by `train.train_and_evaluate` and by the sanity benchmark (`benchmarks/sanity`),
which add the hooks they need; a hook sees the step count after the step, the new state and the
step's metrics (device arrays: reading one waits for the step).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Callable, Iterator, Sequence

import jax
import numpy as np
from absl import logging


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; training stopped and the last good checkpoint was kept."""


class Preempted(Exception):
    """A stop signal ended training at ``step`` after a checkpoint of that step was saved."""

    def __init__(self, step: int, signal_name: str):
        super().__init__(f"{signal_name} at step {step}")
        self.step, self.signal_name = step, signal_name


class Hook:
    """Something done around train steps. ``step`` counts the steps done so far."""

    def before_step(self, step: int) -> None:
        """Before the step that makes ``step + 1``."""

    def after_step(self, step: int, state, metrics: dict) -> None:
        """After step ``step`` was dispatched; ``state`` and ``metrics`` are its results."""


def run(train_step: Callable, state, frozen, batches: Iterator[dict], *, start: int, stop: int,
        hooks: Sequence[Hook] = (), device_cache=()):
    """Steps ``start + 1 .. stop`` of ``train_step(state, frozen, batch, device_cache)``, each
    with the next of ``batches``; the hooks run in their order around each. Returns the state."""
    for step in range(start, stop):
        for hook in hooks:
            hook.before_step(step)
        state, metrics = train_step(state, frozen, next(batches), device_cache)
        for hook in hooks:
            hook.after_step(step + 1, state, metrics)
    return state


def due(step: int, every: int, stop: int) -> bool:
    """Whether a periodic action every ``every`` steps is due after ``step`` (always at the last)."""
    return step % every == 0 or step == stop


class Prefetch(Hook):
    """Reads and copies the next batch while the step just dispatched runs (put it first)."""

    def __init__(self, batches, stop: int):
        self.batches, self.stop = batches, stop

    def after_step(self, step: int, state, metrics: dict) -> None:
        if step < self.stop:
            self.batches.prefetch()


class Profile(Hook):
    """A jax profiler trace of the steps after ``first`` up to ``last`` (after the compile) in ``directory``."""

    def __init__(self, directory: str, first: int, last: int):
        self.directory, self.first, self.last = directory, first, last

    def before_step(self, step: int) -> None:
        if step == self.first:
            jax.profiler.start_trace(self.directory)

    def after_step(self, step: int, state, metrics: dict) -> None:
        if step == self.last:
            jax.block_until_ready(state)
            jax.profiler.stop_trace()
            logging.info("wrote a profiler trace of steps %d-%d to %s", self.first, self.last, self.directory)


class NonFiniteStop(Hook):
    """Checks every loss since the last check, at the steps where ``is_due(step)`` (a check waits
    for the step: it is done where the loop waits anyway, before logging and saving), and stops
    training with :class:`NonFiniteLossError` at the first NaN or inf, naming the checkpoint
    ``last_saved()`` if there are checkpoints."""

    def __init__(self, is_due: Callable[[int], bool], last_saved: Callable[[], int] | None = None):
        self.is_due, self.last_saved = is_due, last_saved
        self.pending: list = []

    def after_step(self, step: int, state, metrics: dict) -> None:
        self.pending.append((step, metrics["loss"]))
        if self.is_due(step):
            pending, self.pending = self.pending, []
            for at, loss in pending:
                value = float(loss)
                if not np.isfinite(value):
                    kept = ("" if self.last_saved is None else
                            f" The last good checkpoint (step {self.last_saved()}) is kept.")
                    raise NonFiniteLossError(
                        f"the loss became {value} at step {at}; training stopped.{kept} Lower "
                        "--config.train.learning_rate or check the data.")


class Checkpoint(Hook):
    """Saves with ``save(step, state)`` where ``is_due(step)``; ``last_saved`` is the step of the
    last save and ``save_s`` the seconds the loop was blocked starting saves (the caller resets it)."""

    def __init__(self, save: Callable, is_due: Callable[[int], bool], start: int):
        self.save, self.is_due = save, is_due
        self.last_saved, self.save_s = start, 0.0

    def after_step(self, step: int, state, metrics: dict) -> None:
        if self.is_due(step):
            self.save_now(step, state)

    def save_now(self, step: int, state) -> None:
        begin = time.perf_counter()
        self.save(step, state)
        self.save_s += time.perf_counter() - begin
        self.last_saved = step


class LogMetrics(Hook):
    """Where ``is_due(step)``, writes a record to ``writer`` (a `metric_writer.MetricWriter`):
    ``step_fields(step)`` (e.g. epoch, learning rate), the step's metrics, and over the window since
    the last record ``images_per_sec`` and ``step_time_s`` (wall time, which includes waiting for
    data, saves and compiles) and ``window_fields()``: what other hooks added up over the window
    (it resets them)."""

    def __init__(self, writer, is_due: Callable[[int], bool], batch_size: int, *,
                 step_fields: Callable[[int], dict], window_fields: Callable[[], dict]):
        self.writer, self.is_due, self.batch_size = writer, is_due, batch_size
        self.step_fields, self.window_fields = step_fields, window_fields
        self.window_start, self.window_steps = time.perf_counter(), 0

    def after_step(self, step: int, state, metrics: dict) -> None:
        self.window_steps += 1
        if not self.is_due(step):
            return
        values = {k: float(v) for k, v in metrics.items()}  # waits for the step
        elapsed = time.perf_counter() - self.window_start
        self.writer.write(step, {**self.step_fields(step), **values,
                                 "images_per_sec": self.window_steps * self.batch_size / elapsed,
                                 "step_time_s": elapsed / self.window_steps, **self.window_fields()})
        self.writer.advance(self.window_steps)
        self.window_start, self.window_steps = time.perf_counter(), 0


@contextlib.contextmanager
def stop_signal(signum: int = signal.SIGTERM) -> Iterator[Callable[[], bool]]:
    """While the block runs, ``signum`` only sets a flag (read with the yielded function) that
    :class:`PreemptionStop` acts on; outside it the signal does what it did before (SIGTERM:
    end the process). Only the main thread can take signals; elsewhere the flag stays down."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[int] = []
    previous = signal.signal(signum, lambda sig, frame: received.append(sig))
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signum, signal.SIG_DFL if previous is None else previous)


class PreemptionStop(Hook):
    """Stops training at the first step where ``is_due(step)`` after a stop signal reached any
    process (docs/multihost.md, Preemption): ``any_process(received())`` gives every process the
    same answer at the same step (a collective with many processes: done where the loop waits for
    the step anyway, as the non-finite check). The step is saved with ``checkpoint`` unless it just
    was, then :class:`Preempted` is raised (the caller waits for the save to finish). Put it after
    the checkpoint hook."""

    def __init__(self, received: Callable[[], bool], any_process: Callable[[bool], bool],
                 is_due: Callable[[int], bool], checkpoint: Checkpoint, signal_name: str = "SIGTERM"):
        self.received, self.any_process, self.is_due = received, any_process, is_due
        self.checkpoint, self.signal_name = checkpoint, signal_name

    def after_step(self, step: int, state, metrics: dict) -> None:
        if not self.is_due(step) or not self.any_process(self.received()):
            return
        if self.checkpoint.last_saved != step:
            self.checkpoint.save_now(step, state)
        logging.warning("%s received: saved the checkpoint of step %d, stopping", self.signal_name, step)
        raise Preempted(step, self.signal_name)
