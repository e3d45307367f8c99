"""Data parallelism with `jax.jit` over a one-axis ('data',) mesh: batch sharded, state replicated.

Works unchanged on one CPU, all GPUs of a host, or many hosts (after `jax.distributed.initialize()`):
each process passes only its own slice of the global batch.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def check_global_batch(global_batch: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if global_batch % n:
        raise ValueError(
            f"train.batch_size={global_batch} is not divisible by the {n} devices of the mesh; "
            f"set --config.train.batch_size to a multiple of {n}")


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Places this process's slice of a global batch on its devices (numeric arrays only)."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v)
            for k, v in batch.items() if np.asarray(v).dtype.kind in "biuf"}
