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
    ],
)
def test_bad_settings_name_the_key_and_the_fix(overrides, words):
    with pytest.raises(ConfigError) as e:
        TrainConfig.preset("tiny", **overrides)
    for w in words:
        assert w in str(e.value)


def test_default_preset_sizes_the_run_to_its_time_budget(monkeypatch):
    import time

    from jaxformer.train import loop

    cfg = TrainConfig.preset("default")
    assert cfg.steps == 0 and cfg.max_minutes == 10

    class FakeStep:  # 0.1 s a step, no compiling: only the arithmetic is under test
        def __call__(self, p, s, x):
            time.sleep(0.1)
            return p, s, {"loss": 1.0}

    monkeypatch.setattr(loop.step, "make_train_step", lambda *a: FakeStep())
    monkeypatch.setattr(loop.optim, "optimizer", lambda c: type("O", (), {"init": id})())
    evaluate = lambda params, n: time.sleep(0.2)  # one eval batch: 0.2 s
    sized = loop._size_run(cfg.replace(max_minutes=1.0), None, {}, None, evaluate, print)
    # 0.1 s a step + 8 eval batches per 250 steps = 0.1064 s: 97% of 60 s fits 547 (or fewer
    # if the sleeps overrun)
    assert 200 <= sized.steps <= 560 and sized.warmup_steps == min(100, sized.steps // 10)


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


def test_cli_refuses_to_resume_nothing_and_to_overwrite_silently(capsys, tmp_path):
    run = tmp_path / "run"
    _fails(["--out", str(run), "--resume"], capsys, "no run to resume")
    run.mkdir()
    (run / "config.json").write_text("{}")
    _fails(["--out", str(run)], capsys, "already holds a run", "--resume", "--overwrite")


def test_resume_refuses_changed_model_settings(capsys, tmp_path):
    from jaxformer.train.checkpoint import write_json
    from jaxformer.train.loop import resolve

    cfg = TrainConfig.preset("tiny", out=str(tmp_path))
    write_json(tmp_path / "config.json", {"train": cfg.to_dict(), "model": {}})
    with pytest.raises(ConfigError, match=r"\['d_model'\] differ from the saved run"):
        resolve(cfg.replace(d_model=64), resume=True, overwrite=False, explicit={"d_model"})
    ok = resolve(cfg.replace(max_minutes=1.0), True, False, explicit={"max_minutes"})
    assert ok.max_minutes == 1.0 and ok.d_model == cfg.d_model
