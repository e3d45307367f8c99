"""Data parallelism with `jax.jit` over a one-axis ('data',) mesh: batch sharded, state replicated.

Works unchanged on one CPU, all GPUs of a host, or many hosts (after `jax.distributed.initialize()`):
in training each process passes only its own slice of the global batch (`shard_batch`); in
evaluation every process holds the whole batch and each device takes its rows of it
(`shard_full_batch`), and outputs come back replicated, so every process has all of them.
Only process 0 writes files and prints (`is_primary`).
"""

from __future__ import annotations

import atexit
import collections
import json
import threading
import time

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def is_primary() -> bool:
    """Process 0: the one that writes the workdir's files and prints (all of them log)."""
    return jax.process_index() == 0


def check_global_batch(global_batch: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if global_batch % n:
        raise ValueError(
            f"train.batch_size={global_batch} is not divisible by the {n} devices of the mesh; "
            f"set --config.train.batch_size to a multiple of {n}")


def _numeric(batch: dict) -> dict:
    """The arrays jax can hold: all but strings (bfloat16, numpy kind 'V', included)."""
    return {k: v for k, v in batch.items() if np.asarray(v).dtype.kind not in "USO"}


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Places this process's slice of a global batch on its devices (numeric arrays only)."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in _numeric(batch).items()}


def shard_full_batch(array: np.ndarray, mesh: Mesh) -> jax.Array:
    """A global batch that every process holds whole: each process puts its devices' rows of it
    on them (the same array in every process, as in evaluation)."""
    return jax.make_array_from_process_local_data(batch_sharded(mesh), array, array.shape)


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is set on any process (a collective with many processes: all must call it)."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.process_allgather(np.asarray(flag, np.int32)).any())


def _coordination_client():
    from jax._src import distributed  # the client has no public accessor (jax 0.10)

    return distributed.global_state.client


_heartbeat_timeout_s = 100  # jax's default; `start_distributed` sets it


def start_distributed(heartbeat_timeout_s: int, **explicit) -> None:
    """`jax.distributed.initialize` for a run of many processes (docs/multihost.md): SIGTERM is
    the training loop's (`train_loop.stop_signal`), not jax's preemption notifier's; processes are
    recoverable tasks, so that a lost one is named by the others (`processes_lost_after_error`)
    instead of the coordination service aborting them, and they leave together
    (`leave_together`). A process without heartbeats for ``heartbeat_timeout_s`` is lost."""
    global _heartbeat_timeout_s
    _heartbeat_timeout_s = heartbeat_timeout_s
    jax.config.update("jax_enable_preemption_service", False)
    jax.config.update("jax_enable_recoverability", True)
    jax.distributed.initialize(**explicit, heartbeat_timeout_seconds=heartbeat_timeout_s)
    atexit.register(leave_together, heartbeat_timeout_s)  # runs before jax's own shutdown


class ProcessLostError(RuntimeError):
    """Another process of the run ended or stopped responding: this one stops too."""

    def __init__(self, lost: list[int]):
        super().__init__(
            f"lost process {', '.join(map(str, lost))} of {jax.process_count()} (it ended or stopped "
            f"responding), so process {jax.process_index()} stops too; rerun the same command on every "
            "process to resume from the last checkpoint")


def processes_lost_after_error() -> list[int]:
    """After an error with many processes: the other processes that are lost (a collective with
    them failed, or would wait for them forever). Waits at most the heartbeat timeout (and 10 s)
    for the coordination service to tell; [] with one process or without an answer."""
    return (lost_processes(_heartbeat_timeout_s + 10) or []) if jax.process_count() > 1 else []


def lost_processes(timeout_s: float) -> list[int] | None:
    """The processes the coordination service no longer hears from; None without an answer
    within ``timeout_s``. The question waits for every live process to ask it too (or to
    disconnect), and a dead one counts once its heartbeats time out."""
    every = list(range(jax.process_count()))
    answer = []
    asking = threading.Thread(target=lambda: answer.append(_coordination_client().get_live_nodes(every)),
                              daemon=True)
    asking.start()
    asking.join(timeout_s)
    return sorted(set(every) - set(answer[0])) if answer else None


def leave_together(timeout_s: float) -> None:
    """At exit of a run whose processes are recoverable tasks (a lost one does not abort the
    others; docs/multihost.md): jax's shutdown then no longer waits for every process, and one
    still disconnecting when process 0, which hosts the coordination service, has ended is
    aborted. So all meet here, the others disconnect, and process 0 waits until they have."""
    client = _coordination_client()
    if client is None:
        return
    try:
        client.wait_at_barrier("rgpkd_jax_exit", int(timeout_s * 1000))
        if jax.process_index() != 0:
            jax.distributed.shutdown()
        else:
            lost_processes(timeout_s)  # answers once the others have disconnected
    except Exception as e:  # a process that does not come: leave anyway
        logging.warning("processes did not end together: %s", e)


def allgather_json(value) -> list:
    """A JSON-able value from every process, in process order (a collective: all must call it)."""
    if jax.process_count() == 1:
        return [value]
    data = np.frombuffer(json.dumps(value, sort_keys=True).encode(), np.uint8)
    lengths = multihost_utils.process_allgather(np.asarray([len(data)], np.int32))[:, 0]
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[:len(data)] = data
    gathered = multihost_utils.process_allgather(padded)
    return [json.loads(row[:n].tobytes()) for row, n in zip(gathered, lengths)]


class DevicePrefetcher:
    """Batches of a host iterator placed on the mesh one step ahead: :meth:`prefetch` reads and
    copies batch n+1 while step n runs, so the step after it needs not wait for the host.

    `get_state()` is the position of the first batch not yet handed out (the inner iterator is
    ahead by the queued batch), so a checkpoint resumes at the batch the loop takes next. An error
    while prefetching (the iterator ended or was interrupted) is raised when that batch is asked
    for, after the step already dispatched has been logged and checkpointed. `wait_s` adds up the
    seconds spent reading and copying batches (the caller resets it).
    """

    def __init__(self, iterator, mesh: Mesh):
        self._iterator, self._mesh = iterator, mesh
        self._queue = collections.deque()  # (state before the batch, batch on the devices)
        self._error: BaseException | None = None
        self.wait_s = 0.0

    def __iter__(self):
        return self

    def prefetch(self) -> None:
        if self._queue or self._error is not None:
            return
        start = time.perf_counter()
        state = self._iterator.get_state()
        try:
            self._queue.append((state, shard_batch(next(self._iterator), self._mesh)))
        except BaseException as error:  # noqa: BLE001 - raised by __next__, in order
            self._error = error
        self.wait_s += time.perf_counter() - start

    def __next__(self) -> dict:
        self.prefetch()
        if not self._queue:
            error, self._error = self._error, None
            raise error
        return self._queue.popleft()[1]

    def get_state(self):
        return self._queue[0][0] if self._queue else self._iterator.get_state()
