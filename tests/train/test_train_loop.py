"""The loop end to end: a real SIGKILL and --resume repeat the uninterrupted run bit for bit;
a NaN stops training with the last good checkpoint kept."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import pytest

from jaxformer.cli import main
from jaxformer.train import step as step_module
from jaxformer.train.checkpoint import Checkpoints, load_for_inference
from jaxformer.train.data import bundled_corpus
from jaxformer.train.report import read_metrics

STEPS = 150


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    (d / "plays.txt").write_text(bundled_corpus().read_text()[:30_000])
    return d


def _args(corpus, out, *extra):
    return [
        "train", "--preset", "tiny", "--data", str(corpus / "plays.txt"),
        "--cache", str(corpus / "cache"), "--out", str(out), "--steps", str(STEPS),
        "--checkpoint_every", "10", "--eval_every", "50", "--progress", "false",
        "--sample_tokens", "12", *extra,
    ]  # fmt: skip


def _spawn(args):
    # one environment for every run: the same XLA flags and threads give the same numbers
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "jaxformer.cli", *args]
    pipe = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.Popen(cmd, env=env, **pipe)


def _finish(p, timeout=900):
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out
    return out


def _complete_steps(run):
    d = run / "checkpoints"
    if not d.is_dir():
        return []
    done = (s for s in d.iterdir() if s.name.isdigit() and (s / "_CHECKPOINT_METADATA").is_file())
    return [int(s.name) for s in done]


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):
    """An uninterrupted run, and a run SIGKILLed mid-way then resumed (both to STEPS)."""
    root = tmp_path_factory.mktemp("runs")
    whole, cut = root / "whole", root / "cut"
    a = _spawn(_args(corpus, whole))
    b = _spawn(_args(corpus, cut))
    deadline = time.time() + 900  # only against a hang: a loaded machine is slow
    while not any(s >= 20 for s in _complete_steps(cut)):
        assert b.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    b.send_signal(signal.SIGKILL)
    b.communicate()
    killed_at = max(r["step"] for r in read_metrics(cut / "metrics.jsonl"))
    resumed = _finish(_spawn(_args(corpus, cut, "--resume")))
    return whole, cut, _finish(a), resumed, killed_at


def test_resume_after_sigkill_repeats_the_run_bit_for_bit(runs):
    whole, cut, _, resumed, killed_at = runs
    start = int(resumed.split("resuming at step ")[1].split(")")[0])
    assert 20 <= start < STEPS and start <= killed_at
    a, b = read_metrics(whole / "metrics.jsonl"), read_metrics(cut / "metrics.jsonl")
    losses = lambda rs: [(r["step"], r["loss"], r["grad_norm"]) for r in rs if "loss" in r]
    assert [s for s, *_ in losses(a)] == list(range(1, STEPS + 1))
    assert losses(b) == losses(a)  # exactly: floats written with repr round-trip
    evals = lambda rs: [(r["step"], r["val_loss"], r["val_bpb"]) for r in rs if "val_loss" in r]
    assert evals(b) == evals(a) and len(evals(a)) == 3  # steps 50, 100 and the final one
    assert (cut / "sample.txt").read_text() == (whole / "sample.txt").read_text()


def test_a_run_reports_and_leaves_its_files(runs):
    whole, _, out, _, _ = runs
    for line in ("model  gpt2 L=2 d=32", "eval   step     50", "bzip2 -9", "done   step 150/150"):
        assert line in out, out
    val = [r for r in read_metrics(whole / "metrics.jsonl") if "val_bpb" in r][-1]
    assert f"val    {val['val_bpb']:.4f} bits/byte" in out
    assert val["val_bpb"] < 8 and 0 < val["bzip2_bpb"] < 8
    assert (whole / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (whole / "sample.txt").read_text().strip() in out
    assert json.loads((whole / "config.json").read_text())["train"]["steps"] == STEPS
    assert sorted(_complete_steps(whole)) == [140, 150]  # keep_checkpoints=2
    config, params, tok = load_for_inference(whole)
    assert config.vocab_size == tok.n_vocab == 300 and "embed" in params


def test_nan_loss_stops_with_the_last_good_checkpoint(corpus, tmp_path, monkeypatch, capsys):
    real = step_module.make_train_step

    def poisoned(model, opt, dtype):
        step, calls = real(model, opt, dtype), [0]

        def run(params, opt_state, batch):
            calls[0] += 1
            if calls[0] == 5:  # a NaN weight: the real step computes a NaN loss
                params = jax.tree.map(lambda w: w * jnp.nan, params)
            return step(params, opt_state, batch)

        return run

    monkeypatch.setattr(step_module, "make_train_step", poisoned)
    out = tmp_path / "run"
    argv = _args(corpus, out, "--checkpoint_every", "2")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "step 5: the loss is nan" in err and "last good checkpoint is step 4" in err
    ck = Checkpoints(out)
    assert ck.steps() == [2, 4]
    ck.close()
    assert max(r["step"] for r in read_metrics(out / "metrics.jsonl")) == 4


def test_resume_refuses_a_changed_corpus(runs, corpus, tmp_path, capsys):
    whole = runs[0]
    copy = tmp_path / "copy"
    shutil.copytree(whole, copy)
    other = tmp_path / "other.txt"
    other.write_text((corpus / "plays.txt").read_text().replace("the", "thy"))
    cfg = json.loads((copy / "config.json").read_text())
    cfg["train"]["data"] = str(other)  # as if the file at the run's data path had been edited
    (copy / "config.json").write_text(json.dumps(cfg))
    assert main(["train", "--out", str(copy), "--resume", "--progress", "false"]) == 2
    assert "the corpus or tokenizer changed" in capsys.readouterr().err
