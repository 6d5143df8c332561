"""Two processes on 127.0.0.1 (jax.distributed, 2 CPU devices each) train as one.

The 2-process run (mesh data=1, fsdp=2, tensor=2: the parameters' d axis split across
the processes) must give the losses of the plain library step in one process on the
same global batches, read disjoint halves of every batch, and write a checkpoint that
a 1-process, 1-device run restores to its own final state. The pieces first (mp_worker.py),
then `jaxformer train` itself: its 2-process run logs the losses of a 1-process run, and
its checkpoints resume and load on one device.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import with_devices

from jaxformer.cli import main
from jaxformer.train.checkpoint import load_for_inference
from jaxformer.train.data import bundled_corpus
from jaxformer.train.report import read_metrics

pytestmark = pytest.mark.slow  # a module fixture of a minute or more

WORKER = Path(__file__).with_name("mp_worker.py")
TOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    env["XLA_FLAGS"] = with_devices(devices)
    return env


def _launch(out: Path, *args: str, devices: int = 1) -> subprocess.Popen:
    return _spawn([str(WORKER), str(out), *args], devices)


def _spawn(argv: list[str], devices: int, **env: str) -> subprocess.Popen:
    pipe = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return subprocess.Popen([sys.executable, *argv], env={**_env(devices), **env}, **pipe)


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    """(exit code, stdout and stderr) of each process."""
    out = []
    try:
        for p in procs:
            text, _ = p.communicate(timeout=600)
            out.append((p.returncode, text.decode(errors="replace")))
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
    cli = ["-m", "jaxformer.cli", "train", "--preset", "tiny", "--out", str(tmp_path / "run")]
    procs = [
        _spawn([*cli, "--coordinator", addr, "--num-processes", n, "--process-id", i], devices=1)
        for n, i in told
    ]
    for code, err in _finish(procs):
        assert code == 2, err[-2000:]  # both stop, before reading any data
        assert "jaxformer train: error: mismatched process counts" in err, err[-2000:]
        assert "process 1 was told N=3" in err
    assert not (tmp_path / "run").exists()


# -- `jaxformer train` on two processes ------------------------------------------------------
TRAIN = ["train", "--preset", "tiny", "--steps", "6", "--checkpoint_every", "3"]
TRAIN += ["--eval_every", "3", "--sample_tokens", "4", "--progress", "false"]


@pytest.fixture(scope="module")
def train_runs(tmp_path_factory):
    """`jaxformer train` on 2 processes of 2 devices (fsdp=2 across them, tensor=2 within
    each; process 0 told by flags, process 1 by the environment), the same run here on one
    device meanwhile, and the 2-process run resumed here from its step-3 checkpoint."""
    tmp = tmp_path_factory.mktemp("train")
    (tmp / "text.txt").write_text(bundled_corpus().read_text()[:12_000])
    args = [*TRAIN, "--data", str(tmp / "text.txt"), "--cache", str(tmp / "cache")]
    addr = f"127.0.0.1:{_free_port()}"
    cli = ["-m", "jaxformer.cli", *args, "--out", str(tmp / "two"), "--mesh", "fsdp=2,tensor=2"]
    cli += ["--max_minutes", "30"]  # never reached; each step, all ask process 0's clock
    flags = ["--coordinator", addr, "--num-processes", "2", "--process-id", "0"]
    env = dict(JAX_COORDINATOR_ADDRESS=addr, JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="1")
    procs = [_spawn([*cli, *flags], devices=2), _spawn(cli, devices=2, **env)]
    quick = ["--sample_tokens", "0"]  # no sample: one compile fewer here (the 2 sample)
    assert main([*args, "--out", str(tmp / "one"), *quick]) == 0
    outs = _finish(procs)
    for code, out in outs:
        assert code == 0, out[-4000:]
    shutil.copytree(tmp / "two", tmp / "cut")
    shutil.rmtree(tmp / "cut" / "checkpoints" / "6")  # as if stopped after step 3's save
    resume = ["train", "--out", str(tmp / "cut"), "--resume", "--mesh", "data=-1"]
    assert main([*resume, "--progress", "false", *quick]) == 0
    return tmp, [out for _, out in outs]


def _by_step(run: Path, key: str) -> dict:
    return {r["step"]: r[key] for r in read_metrics(run / "metrics.jsonl") if key in r}


def test_cli_two_processes_train_as_one(train_runs):
    tmp, (out0, out1) = train_runs
    for key in ("loss", "grad_norm", "val_loss"):
        one, two = _by_step(tmp / "one", key), _by_step(tmp / "two", key)
        assert sorted(one) == sorted(two) == ([3, 6] if key == "val_loss" else [*range(1, 7)])
        assert all(abs(two[k] - one[k]) <= TOL for k in one), (key, one, two)
    assert "mesh   data=1 × fsdp=2 × expert=1 × tensor=2: 4 devices, 2 processes" in out0
    assert "done   step 6/6" in out0
    assert "model  " not in out1 and "done" not in out1  # process 0 alone reports
    assert (tmp / "two" / "sample.txt").is_file() and (tmp / "two" / "loss.png").is_file()


def test_cli_two_process_checkpoints_resume_and_load_on_one_device(train_runs):
    tmp, _ = train_runs
    one, cut = _by_step(tmp / "one", "loss"), _by_step(tmp / "cut", "loss")
    assert sorted(cut) == [1, 2, 3, 4, 5, 6]  # 1-3 from the two processes, 4-6 resumed here
    assert all(abs(cut[k] - one[k]) <= TOL for k in (4, 5, 6))
    _, want, _ = load_for_inference(tmp / "one")
    _, got, _ = load_for_inference(tmp / "two")  # step 6, written by both processes
    assert jax.tree.structure(got) == jax.tree.structure(want)
    err = [np.abs(np.asarray(a) - b).max() for a, b in zip(*map(jax.tree.leaves, (got, want)))]
    assert max(err) <= TOL
