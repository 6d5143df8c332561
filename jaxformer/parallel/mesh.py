"""The device mesh: data × fsdp × expert × tensor.

    data    replicas of the model, each reading its own slice of the batch
    fsdp    the batch is split as over ``data``, and the parameters' model axis d is split
            too: each use gathers a weight, its gradient is reduce-scattered (ZeRO-3, FSDP)
    expert  the batch is split as over ``data``, and a mixture's experts (E) are split: each
            token travels to its experts' devices and back by all-to-all (``experts.py``)
    tensor  attention heads (H, G), MLP units (m) and the vocabulary (V) are split (Megatron)

``rules.py`` says which parameter axis goes to which mesh axis. The mesh's axes are
``AxisType.Auto``: the step is jitted with in/out shardings and XLA's partitioner
(GSPMD) propagates them through the layers, with one constraint on the residual stream.
Explicit axes would make the sharding part of every array's type and ask for an
``out_sharding`` on each ambiguous op of the layers; Auto keeps the layers free of
sharding code, so the same composite runs on one device or on a mesh.

``jax.make_mesh`` orders the devices by the physical topology on TPU and GPU (so that
the inner axes, tensor then fsdp, ride the fastest links) and by process: a process's
devices are contiguous, so data and fsdp split across hosts, tensor within one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
from jax.sharding import AxisType, Mesh

AXES = ("data", "fsdp", "expert", "tensor")
POSITIONAL = ("data", "fsdp", "tensor")  # "2,2,2": the axes of a mesh without experts


class MeshError(ValueError):
    """The mesh does not fit the devices, the model or the batch; the message says why."""


def make_mesh(
    data: int = 1,
    fsdp: int = 1,
    tensor: int = 1,
    devices: Sequence[jax.Device] | None = None,
    expert: int = 1,
) -> Mesh:
    """The mesh data × fsdp × expert × tensor over ``devices`` (default: all devices of all
    processes). One size may be -1: it takes the devices the others leave."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = {"data": data, "fsdp": fsdp, "expert": expert, "tensor": tensor}
    sizes = resolve_sizes(sizes, len(devices))
    shape = tuple(sizes[a] for a in AXES)
    return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def resolve_sizes(sizes: dict[str, int], n_devices: int) -> dict[str, int]:
    """``sizes`` with a -1 filled in, checked to multiply to ``n_devices``."""
    for a, n in sizes.items():
        if not isinstance(n, int) or isinstance(n, bool) or (n < 1 and n != -1):
            raise MeshError(f"mesh axis {a}={n!r} must be a positive integer (or -1 for the rest)")
    free = [a for a, n in sizes.items() if n == -1]
    if len(free) > 1:
        raise MeshError(f"mesh {_show(sizes)}: only one axis may be -1, got {free}")
    fixed = math.prod(n for n in sizes.values() if n != -1)
    if free:
        if n_devices % fixed:
            raise MeshError(
                f"mesh {_show(sizes)}: the fixed axes ({fixed} devices) do not divide the "
                f"{n_devices} devices; choose sizes whose product divides {n_devices}"
            )
        sizes = {**sizes, free[0]: n_devices // fixed}
    if math.prod(sizes.values()) != n_devices:
        raise MeshError(
            f"mesh {_show(sizes)} needs {math.prod(sizes.values())} devices but there are "
            f"{n_devices}; choose sizes whose product is {n_devices}, or set one axis to -1"
        )
    return sizes


def parse_mesh(text: str) -> dict[str, int]:
    """``"data=2,fsdp=2,tensor=2"`` (axes left out are 1) or ``"2,2,2"`` (data, fsdp,
    tensor) → sizes by axis; the expert axis is named (``expert=4``)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if all("=" not in p for p in parts):
            if len(parts) != len(POSITIONAL):
                raise MeshError(
                    f"give {len(POSITIONAL)} sizes ({','.join(POSITIONAL)}), got {len(parts)}"
                )
            return dict.fromkeys(AXES, 1) | dict(zip(POSITIONAL, map(int, parts)))
        sizes = dict.fromkeys(AXES, 1)
        for p in parts:
            a, _, n = p.partition("=")
            if a.strip() not in sizes:
                raise MeshError(f"unknown axis {a.strip()!r}; the axes are {AXES}")
            sizes[a.strip()] = int(n)
        return sizes
    except (MeshError, ValueError) as e:
        raise MeshError(
            f"--mesh {text!r}: {e}; write e.g. data=2,fsdp=2,tensor=2, 2,2,2 or data=2,expert=4"
        ) from None


def _show(sizes: dict[str, int]) -> str:
    return " × ".join(f"{a}={n}" for a, n in sizes.items())
