"""Global batches from per-process data.

A step's batch is one global array [M, b, T+1] whose b windows are split over the
mesh's data × fsdp × expert devices. A process reads only the windows its own devices
hold:

    data_shard(mesh) = (i, n)     this process reads part i of n equal parts of each batch

(n = 1 when the batch is not split across processes, e.g. one host, or a mesh whose
cross-host axis is tensor). Feed (i, n) to ``BatchSampler(process_index=i,
process_count=n)``, which reads disjoint windows for distinct i, and ``global_batch``
assembles the parts with ``jax.make_array_from_process_local_data``: no process ever
holds another's windows. ``global_rows`` does the same for rows every process holds
whole (the eval windows and their masks): each contributes only its own part.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from . import rules as R
from .mesh import MeshError


def data_shard(mesh: Mesh) -> tuple[int, int]:
    """(i, n): this process holds part i of the n equal parts of every batch."""
    S = math.prod(mesh.shape[a] for a in R.BATCH)
    probe = R.batch_sharding(mesh).addressable_devices_indices_map((1, S, 1))
    parts = sorted({idx[1].start or 0 for idx in probe.values()})
    k = len(parts)
    if parts != list(range(parts[0], parts[0] + k)) or parts[0] % k:
        raise MeshError(
            f"this process's devices hold batch parts {parts} of {S}, not one contiguous "
            "block; order the mesh's devices by process (jax.make_mesh does)"
        )
    return parts[0] // k, S // k


def check_batch(shape: tuple[int, ...], mesh: Mesh) -> None:
    """A global batch [M, b, T+1] must split b evenly over data × fsdp × expert."""
    S = math.prod(mesh.shape[a] for a in R.BATCH)
    if len(shape) != 3:
        raise ValueError(f"a batch is [M, b, T+1] (micro-batches, windows, tokens), got {shape}")
    if shape[1] % S:
        raise MeshError(
            f"the batch's {shape[1]} windows per micro-batch do not split over data × fsdp × "
            f"expert = {S} devices; choose a batch size (per micro-batch) that is a multiple of {S}"
        )


def global_batch(local_MbT1: np.ndarray, mesh: Mesh) -> jax.Array:
    """This process's part [M, b/n, T+1] of a batch → the global batch [M, b, T+1] (ids as
    int32; a packed batch's masks, [M, b/n, T] bool, as they are)."""
    local = np.asarray(local_MbT1)
    mask = local.dtype == np.bool_
    if local.ndim != 3 or not (mask or np.issubdtype(local.dtype, np.integer)):
        raise ValueError(
            f"a process's batch is [M, b/n, T+1] integer token ids, got {local.dtype}{local.shape}"
        )
    _, n = data_shard(mesh)
    M, b, T1 = local.shape
    check_batch((M, b * n, T1), mesh)
    return jax.make_array_from_process_local_data(
        R.batch_sharding(mesh), local if mask else local.astype(np.int32), (M, b * n, T1)
    )


def global_rows(x_B: np.ndarray, mesh: Mesh) -> jax.Array:
    """Rows [B, …] that every process holds whole → the global array, B split over
    data × fsdp × expert; each process gives its part i of n."""
    x = np.asarray(x_B)
    i, n = data_shard(mesh)
    S = math.prod(mesh.shape[a] for a in R.BATCH)
    if x.ndim < 1 or x.shape[0] % S:
        raise MeshError(
            f"{x.shape[0] if x.ndim else 0} rows do not split over data × fsdp × expert = {S} "
            "devices; "
            f"give a multiple of {S} rows"
        )
    m = x.shape[0] // n
    sharding = NamedSharding(mesh, P(R.BATCH))
    return jax.make_array_from_process_local_data(sharding, x[i * m : (i + 1) * m], x.shape)
