"""Stopping and starting again: SIGTERM saves at the step boundary and exits 0, Ctrl-C exits
130 with the last good checkpoint kept, and the run resumed after both is the uninterrupted
run bit for bit; a damaged checkpoint is refused by every reader and set aside (kept) by
--resume, which falls back to the newest intact one; a foreign checkpoint is refused by
the fields that differ; a finished run continues for more steps."""

import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxformer.cli import main
from jaxformer.rundir import CheckpointError, Checkpoints, complete_steps
from jaxformer.rundir_load import load_for_inference
from jaxformer.train.data import bundled_corpus
from jaxformer.train.report import read_metrics

STEPS = 20
FAULT = "JAXFORMER_FAULT_AT_STEP"  # "N:TERM": the loop sends itself SIGTERM after step N


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    (d / "plays.txt").write_text(bundled_corpus().read_text()[:30_000])
    return d


def _args(corpus, out, *extra):
    return [
        "train", "--preset", "tiny", "--data", str(corpus / "plays.txt"),
        "--cache", str(corpus / "cache"), "--out", str(out), "--steps", str(STEPS),
        "--checkpoint_every", "10", "--eval_every", "1000", "--progress", "false",
        "--sample_tokens", "0", *extra,
    ]  # fmt: skip


def _train(corpus, out, *extra, fault=None, monkeypatch):
    if fault is None:
        monkeypatch.delenv(FAULT, raising=False)
    else:
        monkeypatch.setenv(FAULT, fault)
    return main(_args(corpus, out, *extra))


def _params(run, step):
    ck = Checkpoints(run, read_only=True)
    config, _, _ = load_for_inference(run)
    from jaxformer.models import build

    like = jax.eval_shape(build(config).init, jax.random.key(0))
    params, _, _ = ck.restore(step, like)
    ck.close()
    return params


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _losses(run):
    return [(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl") if "loss" in r]


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):
    """An uninterrupted run, and one stopped by SIGTERM after step 13, by Ctrl-C after step
    16 of its resumption, then resumed to the end; and what each stop printed."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("runs")
    whole, cut = root / "whole", root / "cut"
    try:
        assert _train(corpus, whole, monkeypatch=mp) == 0
        cap = _Capture()
        with cap:
            term = _train(corpus, cut, fault="13:TERM", monkeypatch=mp)
        term_out = cap.text
        after_term = complete_steps(cut)
        with cap:
            interrupted = _train(corpus, cut, "--resume", fault="16:INT", monkeypatch=mp)
        int_err = cap.text
        after_int = complete_steps(cut)
        with cap:
            resumed = _train(corpus, cut, "--resume", monkeypatch=mp)
    finally:
        mp.undo()
    return dict(whole=whole, cut=cut, term=term, term_out=term_out, after_term=after_term,
                interrupted=interrupted, int_err=int_err, after_int=after_int,
                resumed=resumed)  # fmt: skip


class _Capture:
    """Both streams of a block, as one text (capsys is function-scoped)."""

    def __enter__(self):
        import contextlib
        import io

        self._buf = io.StringIO()
        self._cms = [contextlib.redirect_stdout(self._buf), contextlib.redirect_stderr(self._buf)]
        for cm in self._cms:
            cm.__enter__()

    def __exit__(self, *exc):
        for cm in reversed(self._cms):
            cm.__exit__(*exc)
        self.text = self._buf.getvalue()


def test_sigterm_saves_at_the_step_boundary_and_exits_0(runs):
    assert runs["term"] == 0, runs["term_out"]
    assert 13 in runs["after_term"]  # the step it stopped at, not only the last multiple of 10
    assert f"Resume with: jaxformer train --out {runs['cut']} --resume" in runs["term_out"]
    assert "Traceback" not in runs["term_out"]


def test_ctrl_c_exits_130_and_leaves_the_last_checkpoint(runs):
    assert runs["interrupted"] == 130, runs["int_err"]
    assert "Traceback" not in runs["int_err"]
    assert "interrupted; the last checkpoint is step" in runs["int_err"]
    assert max(runs["after_int"]) <= 16 and 13 in runs["after_int"]


def test_the_resumed_run_is_the_uninterrupted_run_bit_for_bit(runs):
    assert runs["resumed"] == 0
    whole, cut = runs["whole"], runs["cut"]
    assert _losses(cut) == _losses(whole) and len(_losses(whole)) == STEPS
    assert _same(_params(cut, STEPS), _params(whole, STEPS))


def test_a_damaged_checkpoint_is_refused_and_set_aside(runs, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs["whole"], run)
    biggest = max((run / "checkpoints" / str(STEPS)).rglob("*"), key=lambda f: f.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[100:2100] = bytes(2000)  # a few KB garbled
    biggest.write_bytes(bytes(data))
    for argv in (
        ["sample", "--checkpoint", str(run), "--prompt", "ROMEO:"],
        ["convert", "--to-hf", str(run), "--out", str(tmp_path / "hf")],
    ):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert biggest.name in err and "damaged" in err and out == ""
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "hf").exists()
    with pytest.raises(CheckpointError, match=biggest.name):
        load_for_inference(run)
    # --resume falls back to the newest intact checkpoint, says which, and keeps the damaged one
    argv = ["train", "--out", str(run), "--resume", "--steps", str(STEPS + 5), "--progress", "0"]
    monkeypatch.delenv(FAULT, raising=False)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"resuming from checkpoint {STEPS - 10}, the newest intact one" in out
    assert (run / "damaged" / str(STEPS)).is_dir() and biggest.name in out
    kept = run / "damaged" / str(STEPS) / biggest.relative_to(run / "checkpoints" / str(STEPS))
    assert kept.read_bytes() == bytes(data)  # as it was found, not deleted
    assert complete_steps(run)[-1] == STEPS + 5
    # that also continued a finished run: past its schedule's end the lr stays at --min_lr
    lr = {r["step"]: r["lr"] for r in read_metrics(run / "metrics.jsonl") if "lr" in r}
    assert lr[STEPS + 1] == lr[STEPS + 5] == pytest.approx(3e-4) and lr[STEPS - 5] > 3e-4
    assert main(argv) == 0  # the new length is the run's now
    assert f"finished at step {STEPS + 5} of {STEPS + 5}" in capsys.readouterr().out


def test_a_finished_run_says_how_to_continue_it(runs, capsys):
    from jaxformer.train.resolve import resolve

    run = runs["whole"]
    base = ["train", "--out", str(run), "--progress", "false"]
    assert main(base + ["--resume"]) == 0  # nothing to train: a note, exit 0
    assert f"finished at step {STEPS} of {STEPS}" in capsys.readouterr().out
    assert main(base) == 2
    assert f"--resume --steps N (N > {STEPS})" in capsys.readouterr().err
    cfg, mode = resolve("tiny", {"out": str(run), "steps": STEPS + 6}, resume=True)
    assert mode == "resume" and (cfg.steps, cfg.decay_steps) == (STEPS + 6, STEPS)


def test_a_checkpoint_of_another_model_is_refused_by_its_fields(runs, tmp_path, capsys):
    """A checkpoint of a narrower model (d_model 16), copied into a run of d_model 32."""
    from jaxformer.models import build
    from jaxformer.train.checkpoint import read_run_config
    from jaxformer.train.optim import optimizer

    run = tmp_path / "run"
    shutil.copytree(runs["whole"], run)
    cfg, _ = read_run_config(run)
    narrow = cfg.replace(d_model=16)
    mcfg = narrow.model_config(300)
    params = build(mcfg).init(jax.random.key(0))
    meta = {"sampler": {"seed": 0, "step": 10}, "train": narrow.to_dict(), "model": mcfg.to_dict()}
    shutil.rmtree(run / "checkpoints")
    ck = Checkpoints(run)
    ck.save(10, params, optimizer(narrow).init(params), meta)
    ck.wait()
    ck.close()
    assert main(["sample", "--checkpoint", str(run), "--prompt", "ROMEO:"]) == 2
    err = capsys.readouterr().err
    assert "another model" in err and "d_model 16 vs 32" in err
    assert main(["train", "--out", str(run), "--resume", "--progress", "false"]) == 2
    err = capsys.readouterr().err
    assert "d_model 16 vs 32" in err and "Traceback" not in err


@pytest.mark.slow
def test_ctrl_c_during_compile_exits_130(corpus, tmp_path):
    """A real SIGINT, sent while the first step compiles (after setup has printed)."""
    env = {k: v for k, v in os.environ.items() if k != FAULT}
    cmd = [sys.executable, "-m", "jaxformer.cli", *_args(corpus, tmp_path / "run")]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith("out "):  # setup is done; the first step compiles next
            p.send_signal(signal.SIGINT)
            break
    out, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    # no complete checkpoint: the same command starts it again, with a note
    short = ["--steps", "3", "--warmup_steps", "0"]  # the same command, shorter (last wins)
    again = subprocess.run(cmd + short, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "holds no complete checkpoint" in again.stdout
