"""Files: tiktoken's format byte for byte, exact round trips, every corruption refused."""

import json
import os

import pytest
from tiktoken.load import load_tiktoken_bpe
from tokenizer_cases import GPT2_RANKS, MULTILINGUAL

from jaxformer.tokenizer import ENDOFTEXT, Tokenizer, files


@pytest.fixture(scope="module")
def small() -> Tokenizer:
    # 300 ranks: lines 1 … 300 of vocab.tiktoken hold ranks 0 … 299.
    return Tokenizer.train(MULTILINGUAL * 5, 302, "cl100k", (ENDOFTEXT, "<|pad|>"))


@pytest.fixture
def saved(small, tmp_path):
    small.save(tmp_path / "tok")
    return tmp_path / "tok"


def test_ranks_file_is_tiktoken_format_byte_for_byte(gpt2):
    assert files.format_ranks(dict(gpt2.mergeable_ranks)) == GPT2_RANKS.read_bytes()


def test_save_load_round_trip(small, saved):
    assert sorted(os.listdir(saved)) == ["tokenizer.json", "vocab.tiktoken"]  # no temp files
    loaded = Tokenizer.load(saved)
    assert loaded == small
    text = "the cat sat <|pad|> on the mat"
    assert loaded.encode(text, allowed_special="all") == small.encode(text, allowed_special="all")
    assert load_tiktoken_bpe(str(saved / "vocab.tiktoken")) == dict(small.mergeable_ranks)
    small.save(saved)  # overwriting is fine
    assert Tokenizer.load(saved) == small


def test_gpt2_round_trip(gpt2, tmp_path):
    gpt2.save(tmp_path)
    assert (tmp_path / "vocab.tiktoken").read_bytes() == GPT2_RANKS.read_bytes()
    assert Tokenizer.load(tmp_path) == gpt2


def test_from_tiktoken_file_checks_the_hash(tmp_path):
    sha = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"  # shared/README
    if not GPT2_RANKS.exists():
        pytest.skip("needs shared/vocab/gpt2.tiktoken")
    assert Tokenizer.from_tiktoken_file(GPT2_RANKS, expected_sha256=sha).n_vocab == 50257
    with pytest.raises(ValueError, match="sha256 is 306cd.*expected 0000"):
        Tokenizer.from_tiktoken_file(GPT2_RANKS, expected_sha256="0" * 64)


def lines_of(saved) -> list[bytes]:
    return (saved / "vocab.tiktoken").read_bytes().splitlines(keepends=True)


def write_ranks(path, lines: list[bytes]):
    path.write_bytes(b"".join(lines))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda ls: ls[:3] + [b"!!notbase64 3\n"] + ls[4:],
            r":4: b'!!notbase64' is not the base64",
        ),
        (lambda ls: ls[:3] + [b"YQ 3\n"] + ls[4:], r":4: b'YQ' is not the base64"),
        (lambda ls: ls[:3] + [b"YQ== 3 extra\n"] + ls[4:], r":4: expected '<base64 token> <rank>'"),
        (lambda ls: ls[:3] + [b"YQ==\n"] + ls[4:], r":4: expected '<base64 token> <rank>'"),
        (lambda ls: ls[:3] + [b"YQ== -3\n"] + ls[4:], r":4: expected '<base64 token> <rank>'"),
        (lambda ls: ls[:3] + [b"YQ==  3\n"] + ls[4:], r":4: expected '<base64 token> <rank>'"),
        (lambda ls: ls[:3] + [b"YQ== 3\r\n"] + ls[4:], r":4: expected '<base64 token> <rank>'"),
        (lambda ls: ls[:3] + [b"\n"] + ls[4:], r":4: expected '<base64 token> <rank>'"),
        (lambda ls: ls[:3] + [b" 3\n"] + ls[4:], r":4: b'' is not the base64 of a non-empty"),
        (lambda ls: ls + [ls[100].split()[0] + b" 300\n"], r":301: token b'd' is listed twice"),
        (lambda ls: ls + [b"eHl6 299\n"], r":301: rank 299 is given twice \(also line 300\)"),
        (lambda ls: ls + [b"eHl6 301\n"], r"rank 300 is missing"),
        (lambda ls: ls[:-1] + [ls[-1][:-3]], r"last line has no newline \(truncated\?\)"),
        (lambda ls: [], r"the ranks file is empty"),
    ],
)
def test_malformed_ranks_are_refused(saved, edit, message):
    path = write_ranks(saved / "vocab.tiktoken", edit(lines_of(saved)))
    with pytest.raises(ValueError, match=message) as error:
        Tokenizer.from_tiktoken_file(path, "cl100k", {})
    assert str(error.value).startswith(str(path))
    with pytest.raises(ValueError, match="sha256 does not match"):
        Tokenizer.load(saved)  # the header's hash refuses any edit


def test_truncation_at_a_line_end_is_caught_by_the_hash(saved):
    write_ranks(saved / "vocab.tiktoken", lines_of(saved)[:-1])
    with pytest.raises(ValueError, match="vocab.tiktoken: sha256 does not match tokenizer.json"):
        Tokenizer.load(saved)


def test_ranks_without_every_byte_are_refused(saved, tmp_path):
    # Drop byte 0 and renumber: contiguous ranks, but text with a NUL could not be encoded.
    lines = [line for line in lines_of(saved) if not line.startswith(b"AA== ")]
    lines = [line.split()[0] + b" %d\n" % rank for rank, line in enumerate(lines)]
    path = write_ranks(tmp_path / "no-nul.tiktoken", lines)
    with pytest.raises(ValueError, match=r"no-nul.tiktoken: every single byte .* b'\\x00'"):
        Tokenizer.from_tiktoken_file(path, "gpt2", {})


def edit_header(saved, **changes):
    header = json.loads((saved / "tokenizer.json").read_text())
    header.update(changes)
    (saved / "tokenizer.json").write_text(json.dumps(header))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"version": 2}, r"unknown format version 2; this jaxformer reads version 1"),
        ({"format": "other"}, r"not a jaxformer tokenizer header"),
        ({"extra": 1}, r"expected the keys"),
        ({"special_tokens": {"<|x|>": 5}}, r"special token '<\|x\|>' has id 5, which is a rank"),
        ({"special_tokens": {"<|x|>": 300, "<|y|>": 300}}, r"distinct ids"),
        ({"special_tokens": {"<|x|>": "300"}}, r"must map strings to integer ids"),
        ({"pattern": "(unclosed"}, r"not a valid regex"),
        ({"pattern": 5}, r"must be strings"),
        ({"ranks_sha256": "0" * 64}, r"sha256 does not match"),
    ],
)
def test_inconsistent_headers_are_refused(saved, changes, message):
    edit_header(saved, **changes)
    with pytest.raises(ValueError, match=message) as error:
        Tokenizer.load(saved)
    assert str(saved) in str(error.value)


def test_unreadable_headers_are_refused(saved, tmp_path):
    (saved / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"tokenizer.json: not valid JSON"):
        Tokenizer.load(saved)
    (saved / "tokenizer.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"not a jaxformer tokenizer header"):
        Tokenizer.load(saved)
    with pytest.raises(ValueError, match=r"not a tokenizer directory.*from_tiktoken_file"):
        Tokenizer.load(saved / "vocab.tiktoken")
    with pytest.raises(ValueError, match=r"not a tokenizer directory"):
        Tokenizer.load(tmp_path / "missing")


def test_a_failed_write_keeps_the_last_good_file(small, saved, monkeypatch):
    before = (saved / "vocab.tiktoken").read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        Tokenizer.train("other text entirely", 270, special_tokens=()).save(saved)
    monkeypatch.undo()
    assert (saved / "vocab.tiktoken").read_bytes() == before
    assert sorted(os.listdir(saved)) == ["tokenizer.json", "vocab.tiktoken"]
    assert Tokenizer.load(saved) == small


def test_constructor_checks_the_vocabulary():
    byte_ranks = {bytes([b]): b for b in range(256)}
    with pytest.raises(ValueError, match="rank 256 is missing"):
        Tokenizer({**byte_ranks, b"ab": 257})
    with pytest.raises(TypeError, match="ranks must map non-empty bytes to int"):
        Tokenizer({**byte_ranks, "ab": 256})
    with pytest.raises(TypeError, match="special_tokens must map non-empty str to int"):
        Tokenizer(byte_ranks, "gpt2", {"": 256})
    with pytest.raises(ValueError, match="give it an id >= 256"):
        Tokenizer(byte_ranks, "gpt2", {ENDOFTEXT: 255})
