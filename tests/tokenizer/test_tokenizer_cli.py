"""The `jaxformer tokenizer` commands, run through their argparse registration."""

import argparse
import io

import pytest
from tokenizer_cases import GPT2_RANKS, MULTILINGUAL

from jaxformer.tokenizer import PATTERNS, Tokenizer
from jaxformer.tokenizer.cli import add_parser


def run(argv: list[str], stdin: str = "", monkeypatch=None) -> int:
    parser = argparse.ArgumentParser(prog="jaxformer")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    if monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return args.run(args)


def test_train_then_encode_and_decode(tmp_path, capsys, monkeypatch):
    (tmp_path / "a.txt").write_text(MULTILINGUAL * 10, encoding="utf-8")
    (tmp_path / "b.txt").write_text("hello world, hello tokens\n" * 50, encoding="utf-8")
    out = tmp_path / "tok"
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    argv = f"tokenizer train --input {a} {b} --vocab-size 400 --out {out} --pattern o200k"
    assert run(argv.split()) == 0
    tok = Tokenizer.load(out)
    assert tok.n_vocab == 400 and tok.pattern == PATTERNS["o200k"]
    assert tok.special_tokens == {"<|endoftext|>": 399}
    capsys.readouterr()

    assert run(["tokenizer", "encode", "--tokenizer", str(out), "--text", "hello world"]) == 0
    ids = capsys.readouterr().out.split()
    assert list(map(int, ids)) == tok.encode("hello world")

    assert run(["tokenizer", "decode", "--tokenizer", str(out), *ids]) == 0
    assert capsys.readouterr().out == "hello world"

    assert run(["tokenizer", "decode", "--tokenizer", str(out)], " ".join(ids), monkeypatch) == 0
    assert capsys.readouterr().out == "hello world"


def test_encode_reads_stdin_and_a_tiktoken_file(capsys, monkeypatch):
    if not GPT2_RANKS.exists():
        pytest.skip("needs shared/vocab/gpt2.tiktoken")
    tok = ["--tokenizer", str(GPT2_RANKS)]
    assert run(["tokenizer", "encode", *tok], "hello world\n", monkeypatch) == 0
    assert capsys.readouterr().out == "31373 995 198\n"
    with pytest.raises(SystemExit, match="disallowed"):
        run(["tokenizer", "encode", *tok, "--text", "a<|endoftext|>"])
    assert run(["tokenizer", "encode", *tok, "--allow-special", "--text", "a<|endoftext|>"]) == 0
    assert capsys.readouterr().out == "64 50256\n"
    with pytest.raises(SystemExit, match=r"token id 50257 .*out of range"):
        run(["tokenizer", "decode", *tok, "64", "50257"])
    with pytest.raises(SystemExit, match="ids must be integers"):
        run(["tokenizer", "decode", *tok, "6x4"])


def test_bad_input_ends_with_a_message(tmp_path):
    (tmp_path / "a.txt").write_text("some text")
    with pytest.raises(SystemExit, match="vocab_size=10 is too small"):
        run(
            [
                "tokenizer",
                "train",
                "--input",
                str(tmp_path / "a.txt"),
                "--vocab-size",
                "10",
                "--out",
                str(tmp_path / "tok"),
            ]
        )
    with pytest.raises(SystemExit, match="cannot read"):
        run(
            [
                "tokenizer",
                "train",
                "--input",
                str(tmp_path / "missing.txt"),
                "--vocab-size",
                "300",
                "--out",
                str(tmp_path / "tok"),
            ]
        )
    with pytest.raises(SystemExit, match="not a tokenizer directory|No such file"):
        run(["tokenizer", "encode", "--tokenizer", str(tmp_path / "nope"), "--text", "x"])
