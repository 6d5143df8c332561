"""TrainConfig, presets and the `jaxformer train` command line: bad input fails before training."""

import pytest

from jaxformer.cli import main
from jaxformer.train import PRESETS, ConfigError, TrainConfig
from jaxformer.train.config import parse_value


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_valid(name):
    cfg = TrainConfig.preset(name)
    assert cfg.name == name and cfg.run_dir.name == name
    assert cfg.model_config(cfg.vocab_size).n_layers == cfg.n_layers


@pytest.mark.parametrize(
    "overrides, words",
    [
        (dict(lr=-1.0), ["--lr", "positive"]),
        (dict(batch_size=30, micro_batches=4), ["--batch_size 30", "--micro_batches 4"]),
        (dict(d_model=100, n_heads=3), ["d_model=100", "n_heads=3"]),
        (dict(vocab_size=100), ["--vocab_size", "257"]),
        (dict(family="bert"), ["--family", "gpt2"]),
        (dict(remat="some"), ["--remat", "dots"]),
        (dict(compute_dtype="float16"), ["--compute_dtype", "bfloat16"]),
        (dict(val_fraction=1.5), ["--val_fraction", "(0, 1)"]),
        (dict(warmup_steps=50, steps=10), ["--warmup_steps", "--steps 10"]),
        (dict(steps="10"), ["--steps", "int"]),
        (dict(steps=0), ["--steps 0", "--max_minutes"]),  # tiny has no time budget
        (dict(lrr=1.0), ["unknown setting", "lrr", "lr"]),
        (dict(mesh="data=2,pipe=2"), ["--mesh", "unknown axis 'pipe'", "data=2,fsdp=2,tensor=2"]),
    ],
)
def test_bad_settings_name_the_key_and_the_fix(overrides, words):
    with pytest.raises(ConfigError) as e:
        TrainConfig.preset("tiny", **overrides)
    for w in words:
        assert w in str(e.value)


def test_default_preset_sizes_the_run_to_its_time_budget(monkeypatch):
    from types import SimpleNamespace

    from jaxformer.train import budget, step

    cfg = TrainConfig.preset("default")
    assert cfg.steps == 0 and cfg.max_minutes == 10
    clock = SimpleNamespace(t=0.0)  # a fake clock: only the arithmetic is under test

    def tick(dt):
        clock.t += dt

    def fake_step(p, s, x):  # 0.1 s a step, no compiling
        tick(0.1)
        return p, s, {"loss": 1.0}

    monkeypatch.setattr(budget, "time", SimpleNamespace(perf_counter=lambda: clock.t))
    monkeypatch.setattr(step, "make_train_step", lambda *a: fake_step)
    monkeypatch.setattr(budget.optim, "optimizer", lambda c: SimpleNamespace(init=id))
    evaluate = lambda params, n: tick(0.2)  # one eval batch: 0.2 s
    sized = budget.size_run(cfg.replace(max_minutes=1.0), None, {}, None, evaluate, print)
    # 0.1 s a step + 8 eval batches of 0.2 s per 250 steps = 0.1064 s: 97% of 60 s fits 546
    assert sized.steps == 546 and sized.warmup_steps == 54


def test_unknown_preset():
    with pytest.raises(ConfigError, match="no such preset.*tiny"):
        TrainConfig.preset("huge")


def test_parse_value_types():
    assert parse_value("lr", "3e-4") == 3e-4
    assert parse_value("steps", "12") == 12
    assert parse_value("progress", "off") is False
    assert parse_value("prompt", "ROMEO:") == "ROMEO:"
    with pytest.raises(ConfigError, match="expected an integer, got '1.5'"):
        parse_value("steps", "1.5")


def test_an_int_where_a_float_is_expected_is_accepted():
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)


# -- the command line: errors come before any data is read or anything compiles -------------
def _fails(argv, capsys, *words, code=2):
    try:
        rc = main(["train", *argv])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == code, err
    for w in words:
        assert w in err, err
    return err


def test_cli_rejects_bad_values(capsys, tmp_path):
    _fails(["--lr", "fast"], capsys, "--lr", "expected a number, got 'fast'")
    _fails(["--lr", "-1"], capsys, "--lr -1.0", "must be positive")
    _fails(["--no_such_key", "1"], capsys, "unrecognized arguments: --no_such_key")
    _fails(["--preset", "nope"], capsys, "no such preset")
    _fails(["--batch_size", "6", "--micro_batches", "4"], capsys, "not divisible")


def test_cli_rejects_a_missing_corpus(capsys, tmp_path):
    missing = tmp_path / "nothing.txt"
    _fails(["--data", str(missing), "--out", str(tmp_path / "run")], capsys, str(missing))
    assert not (tmp_path / "run").exists()


def test_cli_rejects_a_mesh_that_does_not_fit_the_devices(capsys, tmp_path):
    missing = tmp_path / "nothing.txt"  # the mesh is checked first: the data is never read
    argv = ["--mesh", "tensor=3", "--data", str(missing), "--out", str(tmp_path / "run")]
    _fails(argv, capsys, "--mesh 'tensor=3'", "needs 3 devices but there are 1")
    assert not (tmp_path / "run").exists()


def _saved_run(run, cfg, step=10):
    """A run directory as training leaves it (run files, one complete checkpoint's marks)."""
    from jaxformer.tokenizer import Tokenizer
    from jaxformer.train.checkpoint import save_run_files

    save_run_files(run, cfg, cfg.model_config(258), Tokenizer.train("ab " * 20, 258))
    ckpt = run / "checkpoints" / str(step)
    ckpt.mkdir(parents=True)
    (ckpt / "_CHECKPOINT_METADATA").write_text("{}")
    (ckpt / "SHA256SUMS").write_text("")


def test_cli_refuses_to_overwrite_a_run_silently(capsys, tmp_path):
    run = tmp_path / "run"
    _saved_run(run, TrainConfig.preset("tiny", out=str(run)))
    _fails(["--out", str(run)], capsys, "holds a run stopped at step 10 of 40", "--resume",
           "--overwrite")  # fmt: skip


def test_resume_refuses_changed_model_settings(tmp_path):
    from jaxformer.train.resolve import resolve

    cfg = TrainConfig.preset("tiny", out=str(tmp_path))
    _saved_run(tmp_path, cfg)
    with pytest.raises(ConfigError, match=r"--d_model 64, but it was trained with 32"):
        resolve("tiny", {"out": str(tmp_path), "d_model": 64}, resume=True)
    with pytest.raises(ConfigError, match=r"--steps 20: the run in .* is 40 steps long"):
        resolve("default", {"out": str(tmp_path), "steps": 20}, resume=True)
    ok, mode = resolve("default", {"out": str(tmp_path), "max_minutes": 1.0}, resume=True)
    assert mode == "resume" and ok.max_minutes == 1.0 and ok.d_model == cfg.d_model
    longer, _ = resolve("tiny", {"out": str(tmp_path), "steps": 60}, resume=True)
    assert (longer.steps, longer.decay_steps) == (60, 40)  # the schedule keeps its length


def test_resume_may_change_the_mesh(tmp_path):
    from jaxformer.train.resolve import resolve

    cfg = TrainConfig.preset("tiny", out=str(tmp_path), mesh="fsdp=2,tensor=2")
    _saved_run(tmp_path, cfg)
    got, _ = resolve("tiny", {"out": str(tmp_path), "mesh": "data=-1"}, resume=True)
    assert got.mesh == "data=-1"


def test_a_run_without_a_complete_checkpoint_starts_again(tmp_path):
    from jaxformer.train.resolve import resolve

    notes = []
    (tmp_path / "run" / "checkpoints" / "3.orbax-checkpoint-tmp").mkdir(parents=True)
    (tmp_path / "run" / "metrics.jsonl").write_text("{}")
    for resume in (False, True):
        cfg, mode = resolve("tiny", {"out": str(tmp_path / "run")}, resume, log=notes.append)
        assert mode == "new" and not (tmp_path / "run" / "metrics.jsonl").exists()
    assert "holds no complete checkpoint" in notes[0] and len(notes) == 2


def test_a_checkpoint_without_a_manifest_is_never_deleted_by_a_restart(capsys, tmp_path):
    """A step orbax committed but no manifest sealed (an older jaxformer's) is in the way of
    a new run like any checkpoint: only --overwrite replaces it."""
    run = tmp_path / "run"
    step = run / "checkpoints" / "10"
    step.mkdir(parents=True)
    (step / "_CHECKPOINT_METADATA").write_text("{}")
    (run / "config.json").write_text("{}")
    _fails(["--out", str(run)], capsys, "stopped at step 10", "--overwrite")
    assert step.is_dir()


def test_a_run_saved_before_the_newer_settings_reads_as_it_trained():
    # written by hand, as a run of an earlier version saved it: no --schedule (it ran the
    # cosine), no --init-from nor --freeze (it started from its seed, trained everything)
    new = TrainConfig.preset("tiny").to_dict()
    old = {k: v for k, v in new.items() if k not in ("schedule", "init_from", "freeze")}
    cfg = TrainConfig.from_dict(old)
    assert (cfg.schedule, cfg.init_from, cfg.freeze) == ("cosine", "", "")
    assert cfg.replace(schedule="wsd").to_dict() == new


@pytest.mark.parametrize(
    "overrides, words",
    [
        (dict(lora_rank=4), ["--lora_rank 4", "give --init-from"]),
        (dict(lora_rank=4, init_from="x", freeze="embed.*"), ["--freeze", "only the adapters"]),
        (dict(lora_rank=-1), ["--lora_rank -1", ">= 0"]),
        (dict(lora_alpha=0.0), ["--lora_alpha 0.0", "positive"]),
    ],
)
def test_lora_settings_are_checked_when_made(overrides, words):
    with pytest.raises(ConfigError) as e:
        TrainConfig.preset("tiny", **overrides)
    assert all(w in str(e.value) for w in words), str(e.value)
