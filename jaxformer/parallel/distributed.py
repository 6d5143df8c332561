"""Joining a multi-process run: ``jax.distributed.initialize``, checked.

    jaxformer train --coordinator HOST:PORT --num-processes N --process-id I
    JAX_COORDINATOR_ADDRESS=HOST:PORT JAX_NUM_PROCESSES=N JAX_PROCESS_ID=I jaxformer train
    jaxformer train --coordinator auto         # TPU slice, SLURM, Open MPI: JAX detects all

Every process runs the same command with its own I (0 is the coordinator, which serves
at PORT). Flags win over the environment; JAX_COORDINATOR_ADDRESS is JAX's own
variable, the other two follow its naming. After joining, the processes exchange what
they were told and fail together, with one message, if they disagree.

What JAX's runtime itself aborts on (no Python error can be raised there): a process
that never arrives (all wait ``timeout_s``, then "DEADLINE_EXCEEDED"), an id at or
above the coordinator's N ("Unexpected task"), two processes with one id
("ALREADY_EXISTS"). The line logged before joining says what was expected.

Once joined, the processes take decisions together: ``from_lead`` gives every process
process 0's value (a step count sized by timing, a time budget's stop), ``barrier``
waits for all, ``check_same`` fails on every process if their inputs differ. On a
single process each is the identity, at no cost.
"""

from __future__ import annotations

import hashlib
import os

import jax
import numpy as np

ENV = {
    "coordinator": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
}
FLAGS = {
    "coordinator": "--coordinator",
    "num_processes": "--num-processes",
    "process_id": "--process-id",
}


class DistributedError(ValueError):
    """The multi-process settings are incomplete, malformed or inconsistent."""


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_s: int = 300,
    log=print,
) -> bool:
    """Join the run the arguments (or the environment) describe; False (and nothing
    done) when they describe none, i.e. a single process."""
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    s = {k: v if v is not None else _env(k) for k, v in given.items()}
    if all(v is None for v in s.values()):
        return False
    if s["coordinator"] == "auto":
        log("distributed: joining the cluster JAX detects (TPU slice, SLURM or Open MPI)")
        jax.distributed.initialize(num_processes=s["num_processes"], process_id=s["process_id"])
        return True
    missing = [f"{FLAGS[k]} (or {ENV[k]})" for k, v in s.items() if v is None]
    if missing:
        raise DistributedError(
            f"a multi-process run needs all of --coordinator HOST:PORT, --num-processes N and "
            f"--process-id I; missing {', '.join(missing)}"
        )
    host, port = _address(s["coordinator"])
    n, i = s["num_processes"], s["process_id"]
    if n < 1:
        raise DistributedError(f"--num-processes {n}: must be at least 1")
    if not 0 <= i < n:
        raise DistributedError(f"--process-id {i}: must lie in [0, {n}) for {n} processes")
    log(
        f"distributed: process {i} of {n} joining {host}:{port}"
        + (" (serving it)" if i == 0 else "")
        + f"; waits up to {timeout_s} s for all {n} processes"
    )
    jax.distributed.initialize(f"{host}:{port}", n, i, initialization_timeout=timeout_s)
    _check_agree(n, i)
    return True


def _check_agree(n: int, i: int) -> None:
    """All processes learn every process's (N, I); all raise if any differ from JAX's."""
    from jax.experimental import multihost_utils

    told = np.asarray(multihost_utils.process_allgather(np.array([n, i], np.int32)))
    told = told.reshape(-1, 2)
    expect = [[jax.process_count(), k] for k in range(jax.process_count())]
    if told.tolist() != expect:
        said = ", ".join(f"process {k} was told N={a}, I={b}" for k, (a, b) in enumerate(told))
        raise DistributedError(
            f"mismatched process counts: the coordinator runs {jax.process_count()} processes "
            f"but {said}; start every process with the same --num-processes and its own "
            "--process-id"
        )


def from_lead(value):
    """Process 0's ``value`` (a Python bool, int or float) on every process."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return type(value)(multihost_utils.broadcast_one_to_all(np.asarray(value)).item())


def barrier(name: str) -> None:
    """Wait until every process has reached ``barrier(name)``."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def check_same(text: str, what: str) -> None:
    """Raise on every process unless all processes hold the same ``text``."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    h = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.int32)
    told = np.asarray(multihost_utils.process_allgather(h)).reshape(-1, 2)
    differ = [k for k, t in enumerate(told) if (t != told[0]).any()]
    if differ:
        raise DistributedError(
            f"processes {differ} hold another {what} than process 0; every process must "
            "read the same files with the same settings"
        )


def _env(key: str):
    v = os.environ.get(ENV[key])
    if v is None or key == "coordinator":
        return v
    try:
        return int(v)
    except ValueError:
        raise DistributedError(f"{ENV[key]}={v!r} must be an integer") from None


def _address(text: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(
            f"--coordinator {text!r}: write HOST:PORT, e.g. 10.0.0.1:1234 (process 0's address, "
            "a free port), or auto to let JAX detect the cluster"
        )
    return host, int(port)
