"""`jaxformer sae train` end to end on a tiny run, and its refusals: exit 2, one line."""

import json

import pytest

from jaxformer.cli import main
from jaxformer.sae import load
from jaxformer.train.data import bundled_corpus
from jaxformer.train.report import read_metrics


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("sae_run")
    (d / "plays.txt").write_text(bundled_corpus().read_text()[:30_000])
    code = main([
        "train", "--preset", "tiny", "--data", str(d / "plays.txt"), "--cache", str(d / "cache"),
        "--out", str(d / "run"), "--steps", "2", "--checkpoint_every", "2", "--eval_every",
        "1000", "--progress", "false", "--sample_tokens", "0", "--warmup_steps", "0",
    ])  # fmt: skip
    assert code == 0
    return d / "run"


def _sae(run, out, *extra):
    return [
        "sae", "train", "--checkpoint", str(run), "--at", "blocks.1.resid_post", "--latents",
        "64", "--k", "4", "--steps", "6", "--batch", "64", "--model_batch", "2", "--buffer",
        "256", "--eval_sequences", "4", "--progress", "false", "--out", str(out), *extra,
    ]  # fmt: skip


def test_trains_saves_and_reports(run, tmp_path, capsys):
    out = tmp_path / "sae"
    assert main(_sae(run, out, "--log_every", "2")) == 0
    printed = capsys.readouterr().out
    assert "L0" in printed and "FVE" in printed and "CE recovered" in printed and "dead" in printed
    sae, params, cfg = load(out / "sae")
    assert (sae.d, sae.n, sae.k, sae.variant) == (32, 64, 4, "topk")
    assert cfg["hook_name"] == "blocks.1.resid_post"
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records if "mse" in r] == [2, 4, 6]
    final = records[-1]
    assert {"eval_l0", "eval_fve", "eval_ce_recovered", "eval_dead"} <= final.keys()
    assert final["eval_l0"] <= 4
    assert json.loads((out / "config.json").read_text())["sae"]["latents"] == 64
    # a finished run asked again: refused without --resume; with it, nothing more to train
    assert main(_sae(run, out)) == 2
    assert "--resume" in capsys.readouterr().err


def _exit_code(args) -> int:
    """main's status, also where argparse exits (a value of the wrong type)."""
    try:
        return main(args)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--at": "blocks.5.resid_post"}, "--at 'blocks.5.resid_post'"),
        ({"--k": "100"}, "--k 100"),
        ({"--variant": "gated"}, "--variant 'gated'"),
        ({"--buffer": "100"}, "--buffer 100"),
        ({"--latents": "many"}, "--latents"),
        ({"--checkpoint": "/nonexistent/run"}, "/nonexistent/run"),
        ({"--resume": None, "--overwrite": None}, "contradict"),
    ],
)
def test_refusals_are_one_line(run, tmp_path, capsys, change, message):
    args = _sae(run, tmp_path / "sae")
    for flag, value in change.items():
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag] if value is None else [flag, value]
    code = _exit_code(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert message in err


def test_sae_lens_names_of_the_settings_are_accepted():
    from jaxformer.cli import parser

    args = ["sae", "train", "--checkpoint", "r", "--hook_name", "blocks.0.mlp", "--d_sae", "64"]
    a = parser().parse_args(args + ["--l1_coefficient", "3", "--train_batch_size_tokens", "512"])
    assert (a.at, a.latents, a.l1, a.batch) == ("blocks.0.mlp", 64, 3.0, 512)


def test_a_stop_request_checkpoints_and_resume_finishes(run, tmp_path, capsys, monkeypatch):
    """SIGTERM's flag (``train.preempt.Preemption``) raised before step 4: a checkpoint, exit 0;
    ``--resume`` continues to the end."""
    from jaxformer.rundir import complete_steps
    from jaxformer.train import preempt

    class Soon(preempt.Preemption):
        asked = 0

        @property
        def requested(self):
            Soon.asked += 1
            return Soon.asked > 3

        @requested.setter
        def requested(self, value):
            pass

    monkeypatch.setattr(preempt, "Preemption", Soon)
    out = tmp_path / "sae"
    assert main(_sae(run, out, "--log_every", "1")) == 0
    assert "stopped at step 3" in capsys.readouterr().out
    assert complete_steps(out) == [3] and not (out / "sae").exists()
    monkeypatch.undo()
    assert main(_sae(run, out, "--log_every", "1", "--resume")) == 0
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4, 5, 6, 6]  # the step lines, then the final eval
    assert load(out / "sae")[0].n == 64
