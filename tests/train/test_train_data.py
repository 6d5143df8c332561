"""The data pipeline: split, tokenize once, cache, token files checked before use."""

import bz2
import struct

import numpy as np
import pytest

from jaxformer.train import TrainConfig
from jaxformer.train.data import (
    DataError,
    bundled_corpus,
    prepare,
    read_text,
    read_tokens,
    split,
    tokenizer_sha256,
    write_tokens,
)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "plays.txt"
    path.write_text(bundled_corpus().read_text()[:40_000])
    return path


@pytest.fixture(scope="module")
def prepared(corpus_file, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    cfg = TrainConfig.preset("tiny", data=str(corpus_file), cache=str(cache))
    logs = []
    return cfg, prepare(cfg, log=logs.append), logs


def test_bundled_corpus_is_the_shakespeare_text():
    text = bundled_corpus().read_text()
    assert text.startswith("ALL'S WELL THAT ENDS WELL") and len(text.encode()) == 5_057_321


def test_split_cuts_at_a_line_break():
    text = "".join(f"line {i}\n" for i in range(100))
    train, val = split(text, 0.1)
    assert train + val == text and train.endswith("\n")
    assert abs(len(val) - 0.1 * len(text)) < 10


def test_val_tokens_decode_to_the_val_text(prepared, corpus_file):
    cfg, c, _ = prepared
    train_text, val_text = split(corpus_file.read_text(), cfg.val_fraction)
    assert c.tokenizer.decode(c.val) == val_text == c.val_text
    assert c.tokenizer.decode(c.train) == train_text
    assert c.tokenizer.n_vocab == cfg.vocab_size
    assert c.train.dtype == np.uint16
    # bits per byte counts each target's bytes: the per-id table adds up to the text's bytes
    assert c.token_bytes[c.val].sum() == len(val_text.encode())


def test_bzip2_baseline_is_bzip2_on_the_val_bytes(prepared):
    _, c, _ = prepared
    data = c.val_text.encode()
    assert c.bzip2_bpb == 8 * len(bz2.compress(data, 9)) / len(data)


def test_second_prepare_reuses_the_cache(prepared):
    cfg, c, logs = prepared
    assert len(logs) == 1 and "preparing" in logs[0]
    stamp = (c.dir / "train.bin").stat().st_mtime_ns
    again = []
    c2 = prepare(cfg, log=again.append)
    assert again == [] and c2.dir == c.dir
    assert (c.dir / "train.bin").stat().st_mtime_ns == stamp
    # other tokenizer settings are another cache entry
    assert prepare(cfg.replace(vocab_size=320), log=again.append).dir != c.dir


def test_a_loaded_tokenizer_is_used_as_is(prepared, tmp_path):
    cfg, c, _ = prepared
    c.tokenizer.save(tmp_path / "tok")
    c2 = prepare(cfg.replace(tokenizer=str(tmp_path / "tok"), vocab_size=999), log=lambda s: None)
    assert c2.tokenizer == c.tokenizer and np.array_equal(c2.val, c.val)
    with pytest.raises(DataError, match="--tokenizer.*cannot load"):
        prepare(cfg.replace(tokenizer=str(tmp_path / "none")), log=lambda s: None)


def test_a_folder_is_its_files_in_path_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_text("two")
    (tmp_path / "1.txt").write_text("one")
    (tmp_path / ".hidden").write_text("no")
    assert read_text(tmp_path) == "one\n\ntwo"
    (tmp_path / "3.bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match="3.bin is not UTF-8"):
        read_text(tmp_path)


def test_a_context_longer_than_the_data_is_refused(prepared):
    cfg, c, _ = prepared
    with pytest.raises(DataError, match="too few for --context 100000"):
        prepare(cfg.replace(context=100_000, n_heads=2), log=lambda s: None)


# -- token files ----------------------------------------------------------------------------
@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "t.bin"
    write_tokens(path, np.arange(1000) % 300, 300, "abc")
    return path


def test_token_file_round_trip(token_file):
    ids = read_tokens(token_file, 300, "abc")
    assert ids.dtype == np.uint16 and np.array_equal(ids, np.arange(1000) % 300)


def test_large_vocabularies_use_uint32(tmp_path):
    write_tokens(tmp_path / "t.bin", np.array([70_000, 1]), 100_000, "h")
    assert read_tokens(tmp_path / "t.bin").dtype == np.uint32


def _corrupt(path, cut=0, append=b"", patch=None):
    data = path.read_bytes()
    if patch:
        data = data.replace(*patch)
    path.write_bytes(data[: len(data) - cut] + append)


@pytest.mark.parametrize(
    "damage, kwargs, message",
    [
        (dict(cut=1), {}, "not a multiple of the uint16 size"),
        (dict(cut=2), {}, "holds 999 tokens, the header says 1000"),
        (dict(append=b"\0\0"), {}, "holds 1001 tokens"),
        (dict(patch=(b"JXTOKENS", b"NOTOKENS")), {}, "bad magic"),
        (dict(patch=(b'"n_tokens"', b'"n_tokenz"')), {}, "unreadable header"),
        (dict(patch=(b"uint16", b"int8xx")), {}, "unreadable header"),
        ({}, dict(vocab_size=512), "vocabulary of 300, the tokenizer has 512"),
        ({}, dict(tokenizer_hash="xyz"), "different tokenizer"),
    ],
)
def test_corrupt_token_files_are_refused(token_file, damage, kwargs, message):
    _corrupt(token_file, **damage)
    with pytest.raises(DataError, match="delete it") as e:
        read_tokens(token_file, **kwargs)
    assert message in str(e.value) and str(token_file) in str(e.value)


def test_out_of_vocabulary_ids_are_refused(tmp_path):
    path = tmp_path / "t.bin"
    write_tokens(path, np.array([1, 2, 3]), 300, "h")
    data = bytearray(path.read_bytes())
    data[-2:] = struct.pack("<H", 400)
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="token id 400, outside the vocabulary"):
        read_tokens(path)


def test_a_corrupt_cached_token_file_stops_prepare(prepared):
    cfg, c, _ = prepared
    bin_ = c.dir / "val.bin"
    keep = bin_.read_bytes()
    try:
        bin_.write_bytes(keep[:-1])
        with pytest.raises(DataError, match="val.bin.*delete it"):
            prepare(cfg, log=lambda s: None)
    finally:
        bin_.write_bytes(keep)


def test_tokenizer_hash_tracks_the_ranks(prepared):
    _, c, _ = prepared
    from jaxformer.tokenizer import Tokenizer

    other = Tokenizer.train("abc abd abe", 258)
    assert tokenizer_sha256(c.tokenizer) == tokenizer_sha256(Tokenizer.load(c.dir / "tokenizer"))
    assert tokenizer_sha256(c.tokenizer) != tokenizer_sha256(other)
