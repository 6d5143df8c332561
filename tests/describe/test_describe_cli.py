"""``jaxformer describe``: presets, config files (ours and Hugging Face's), errors."""

import argparse
import json

import pytest

from jaxformer import Config, build
from jaxformer.cli import main
from jaxformer.describe import describe
from jaxformer.describe.cli import add_parser
from jaxformer.models.presets import PRESETS


def describe_cli(argv, capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="jaxformer")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["describe", *argv])
    code = args.run(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_preset_through_the_jaxformer_command(capsys):
    assert main(["describe", "gpt2-small"]) == 0
    out = capsys.readouterr().out
    assert out == describe(build(PRESETS["gpt2-small"]))
    assert "124,439,808 parameters" in out.splitlines()[1]


def test_config_file_formats_and_T(tmp_path, capsys):
    cfg = Config(family="llama", vocab_size=300, context=64, n_layers=2, d_model=32, n_heads=4)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(cfg.to_dict()))
    for fmt in ("text", "markdown", "latex"):
        code, out, _ = describe_cli([str(path), "--format", fmt, "-T", "16"], capsys)
        assert code == 0 and out == describe(build(cfg), fmt, T=16)
    code, out, _ = describe_cli([str(path), "--format", "latex", "--standalone"], capsys)
    assert (
        code == 0 and out.startswith(r"\documentclass") and out.rstrip().endswith(r"\end{document}")
    )


def test_hugging_face_config(tmp_path, capsys):
    import jaxformer.interop.hf_config  # noqa: F401  (ours: an ImportError is a failure)

    hf = {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768,
          "n_layer": 12, "n_head": 12, "activation_function": "gelu_new",
          "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(hf))
    code, out, err = describe_cli([str(tmp_path / "config.json")], capsys)
    assert code == 0, err
    assert "124,439,808 parameters" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nope"], "neither a preset (gpt2-small, "),
        (["BAD_JSON"], "not a readable JSON file"),
        (["UNKNOWN_FIELD"], "Config has no field(s) ['d_modl']"),
        (["gpt2-small", "-T", "2048"], "exceeds the context 1024"),
        (["gpt2-small", "-T", "0"], "T must be a positive int"),
        (["gpt2-small", "--standalone"], "--standalone needs --format latex"),
    ],
)
def test_errors(argv, message, tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "unknown.json").write_text('{"d_modl": 3}')
    files = {"BAD_JSON": tmp_path / "bad.json", "UNKNOWN_FIELD": tmp_path / "unknown.json"}
    argv = [str(files.get(a, a)) for a in argv]
    code, out, err = describe_cli(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("jaxformer describe: ") and message in err
