"""Data parallelism with `jax.jit` over a one-axis ('data',) mesh: batch sharded, state replicated.

Works unchanged on one CPU, all GPUs of a host, or many hosts (after `jax.distributed.initialize()`):
in training each process passes only its own slice of the global batch (`shard_batch`); in
evaluation every process holds the whole batch and each device takes its rows of it
(`shard_full_batch`), and outputs come back replicated, so every process has all of them.
Only process 0 writes files and prints (`is_primary`).
"""

from __future__ import annotations

import collections
import json
import time

import jax
import numpy as np
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
