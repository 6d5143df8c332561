"""The `jaxformer tokenizer` commands, run through their argparse registration."""

import argparse
import io
import re

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
    assert run(["tokenizer", "encode", *tok, "--text", "a<|endoftext|>"]) == 2
    assert "--allow-special" in capsys.readouterr().err
    assert run(["tokenizer", "encode", *tok, "--allow-special", "--text", "a<|endoftext|>"]) == 0
    assert capsys.readouterr().out == "64 50256\n"
    assert run(["tokenizer", "decode", *tok, "64", "50257"]) == 2
    assert re.search(r"token id 50257 .*out of range", capsys.readouterr().err)
    assert run(["tokenizer", "decode", *tok, "6x4"]) == 2
    assert "ids must be integers" in capsys.readouterr().err


def test_bad_input_ends_with_a_message(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("some text")
    assert (
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
        == 2
    )
    assert "vocab_size=10 is too small" in capsys.readouterr().err
    assert (
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
        == 2
    )
    assert "missing.txt: no such file" in capsys.readouterr().err
    assert run(["tokenizer", "encode", "--tokenizer", str(tmp_path / "nope"), "--text", "x"]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_train_reads_folders_and_never_replaces_a_tokenizer_silently(tmp_path, capsys):
    (tmp_path / "texts" / "more").mkdir(parents=True)
    (tmp_path / "texts" / "a.txt").write_text("hello world, hello tokens\n" * 30)
    (tmp_path / "texts" / "more" / "b.txt").write_text("the cat sat on the mat\n" * 30)
    out = tmp_path / "tok"
    argv = ["tokenizer", "train", "--input", str(tmp_path / "texts"), "--vocab-size", "280"]
    assert run([*argv, "--out", str(out)]) == 0
    first = (out / "vocab.tiktoken").read_bytes()
    assert run([*argv, "--out", str(out), "--special", "<|x|>"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "vocab.tiktoken").read_bytes() == first
    assert run([*argv, "--out", str(out), "--special", "<|x|>", "--overwrite"]) == 0
    assert Tokenizer.load(out).special_tokens == {"<|x|>": 279}


def test_encode_refuses_invalid_utf8_unless_told(tmp_path, capsys, monkeypatch):
    (tmp_path / "a.txt").write_text("caf\u00e9 au lait " * 20)
    assert run(["tokenizer", "train", "--input", str(tmp_path / "a.txt"), "--vocab-size", "260",
                "--out", str(tmp_path / "tok")]) == 0  # fmt: skip
    capsys.readouterr()
    enc = ["tokenizer", "encode", "--tokenizer", str(tmp_path / "tok")]

    class Stdin:
        buffer = io.BytesIO(b"caf\xe9")

    monkeypatch.setattr("sys.stdin", Stdin)
    assert run(enc) == 2
    assert "not valid UTF-8" in capsys.readouterr().err
    Stdin.buffer = io.BytesIO(b"caf\xe9")
    assert run([*enc, "--errors", "replace"]) == 0
    tok = Tokenizer.load(tmp_path / "tok")
    assert capsys.readouterr().out.split() == [str(i) for i in tok.encode("caf\ufffd")]
