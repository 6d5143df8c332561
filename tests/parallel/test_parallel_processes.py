"""Two processes on 127.0.0.1 (jax.distributed, 2 CPU devices each) train as one.

The 2-process run (mesh data=1, fsdp=2, tensor=2: the parameters' d axis split across
the processes) must give the losses of the plain library step in one process on the
same global batches, read disjoint halves of every batch, and write a checkpoint that
a 1-process, 1-device run restores to its own final state.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("mp_worker.py")
TOL = 1e-5
# One worker runs the module: its fixture (the subprocess runs) then runs once.
pytestmark = pytest.mark.xdist_group("parallel_processes")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _launch(out: Path, *args: str, devices: int = 1) -> subprocess.Popen:
    cmd = [sys.executable, str(WORKER), str(out), *args]
    return subprocess.Popen(cmd, env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    out = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=600)
            out.append((p.returncode, err.decode(errors="replace")))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mp")
    addr = f"127.0.0.1:{_free_port()}"
    procs = [
        _launch(
            tmp / "mp", "--coordinator", addr, "--num-processes", "2", "--process-id", str(i),
            "--mesh", "1,2,2", "--save", str(tmp / "run"), devices=2,
        )
        for i in range(2)
    ]  # fmt: skip
    for code, err in _finish(procs):
        assert code == 0, err[-4000:]
    [(code, err)] = _finish([_launch(tmp / "ref", "--restore", str(tmp / "run"))])
    assert code == 0, err[-4000:]
    read = lambda name: json.loads((tmp / name).read_text())
    return [read("mp.0"), read("mp.1")], read("ref.0")


def test_two_processes_match_one(runs):
    (p0, p1), ref = runs
    for losses in (p0["loss"], p1["loss"]):
        assert len(losses) == len(ref["loss"])
        for got, want in zip(losses, ref["loss"]):
            assert abs(got - want) <= TOL


def test_processes_read_disjoint_halves(runs):
    (p0, p1), ref = runs
    assert p0["shards"] == {"0": 2} and p1["shards"] == {"1": 2}
    for a, b, whole in zip(p0["indices"], p1["indices"], ref["indices"]):
        assert not set(a) & set(b)
        assert sorted(a + b) == whole


def test_two_process_checkpoint_restores_on_one_device(runs):
    _, ref = runs
    assert ref["restored_step"] == 3
    assert ref["restore_err"] <= TOL
    assert ref["restore_opt_err"] <= TOL


def test_mismatched_process_counts_fail_clearly(tmp_path):
    addr = f"127.0.0.1:{_free_port()}"
    told = [("2", "0"), ("3", "1")]  # process 1 was told of 3 processes, the coordinator of 2
    procs = [
        _launch(tmp_path / "x", "--coordinator", addr, "--num-processes", n, "--process-id", i)
        for n, i in told
    ]
    for code, err in _finish(procs):
        assert code != 0
        assert "mismatched process counts" in err, err[-2000:]
        assert "process 1 was told N=3" in err
