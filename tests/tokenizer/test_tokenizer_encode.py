"""encode equals tiktoken's ids (the reference), decode inverts it, bad input is refused."""

import heapq
import itertools

import pytest
from hypothesis import given, settings
from tokenizer_cases import reference, texts, texts_with_surrogates

from jaxformer.tokenizer import ENDOFTEXT, Tokenizer, encode
from jaxformer.tokenizer.encode import _bpe_long, _bpe_short

SUITE = settings(max_examples=300, deadline=None)


def test_gpt2_equals_tiktoken_on_the_corpora(gpt2, gpt2_tiktoken, corpora):
    for name, text in corpora.items():
        ids = gpt2.encode(text)
        assert ids == gpt2_tiktoken.encode(text), name
        assert gpt2.decode(ids) == text


@SUITE
@given(text=texts)
def test_gpt2_equals_tiktoken_on_unicode(gpt2, gpt2_tiktoken, text):
    ids = gpt2.encode(text, disallowed_special=())
    assert ids == gpt2_tiktoken.encode(text, disallowed_special=())
    assert gpt2.decode(ids) == text


@SUITE
@given(text=texts_with_surrogates)
def test_surrogates_are_repaired_as_tiktoken(gpt2, gpt2_tiktoken, text):
    assert gpt2.encode_ordinary(text) == gpt2_tiktoken.encode_ordinary(text)


def test_trained_equals_tiktoken_on_the_corpora(trained, corpora):
    text = "".join(corpora.values())[::7]  # every 7th char: a shuffled, fast sample
    ids = trained.encode(text)
    assert ids == reference(trained).encode(text) == trained.to_tiktoken().encode(text)


@SUITE
@given(text=texts)
def test_trained_equals_tiktoken_on_unicode(trained, text):
    ids = trained.encode(text, disallowed_special=())
    assert ids == reference(trained).encode(text, disallowed_special=())
    assert trained.decode(ids) == text


def test_special_tokens(gpt2, gpt2_tiktoken):
    text = "a<|endoftext|>b <|endoftext|>"
    with pytest.raises(ValueError, match="disallowed"):
        gpt2.encode(text)
    with pytest.raises(ValueError, match="disallowed"):
        gpt2.encode_batch(["fine", text])
    for allowed in ["all", {ENDOFTEXT}]:
        ids = gpt2.encode(text, allowed_special=allowed)
        assert ids == gpt2_tiktoken.encode(text, allowed_special=allowed)
        assert ids.count(50256) == 2
    as_text = gpt2.encode(text, disallowed_special=())
    assert 50256 not in as_text and as_text == gpt2.encode_ordinary(text)
    assert gpt2.decode(gpt2.encode(text, allowed_special="all")) == text
    with pytest.raises(ValueError, match="not special tokens"):
        gpt2.encode("x", allowed_special={"<|nope|>"})


def test_longest_special_token_wins_where_two_start():
    tok = Tokenizer({bytes([b]): b for b in range(256)}, "gpt2", {"<|a|>": 256, "<|a|>b": 257})
    assert tok.encode("x<|a|>bc", allowed_special="all") == [ord("x"), 257, ord("c")]


def test_encode_batch_equals_encode(gpt2):
    batch = ["hello world", "", " ünïcödé", "\n\n"]
    assert gpt2.encode_batch(batch) == [gpt2.encode(t) for t in batch]


@pytest.mark.parametrize("length", [65, 300, 3001])
def test_long_pieces_equal_tiktoken(gpt2, gpt2_tiktoken, length):
    # Above 64 bytes a piece takes the heap path; both paths must agree with tiktoken.
    for text in [
        "a" * length,
        "ab" * (length // 2),
        "xyz" * (length // 3),
        "1" * length,
        "日本" * (length // 6),
        " !?" * (length // 3),
    ]:
        assert gpt2.encode(text) == gpt2_tiktoken.encode(text), text[:10]
        piece = text.encode()
        ranks = dict(gpt2.mergeable_ranks)
        assert _bpe_long(piece, ranks) == _bpe_short(piece, ranks)


def test_a_megabyte_of_one_letter_encodes_in_near_linear_time(gpt2, gpt2_tiktoken, monkeypatch):
    """One piece of 10^6 bytes: tiktoken's ids, by heap merges whose number is linear in
    the length (counted, not timed: a shared machine's seconds say little)."""
    ops = {"push": 0, "pop": 0, "heapify": 0}

    def counted(name, fn, size=lambda *a: 1):
        def wrapper(*args):
            ops[name] += size(*args)
            return fn(*args)

        return wrapper

    monkeypatch.setattr(encode, "heappush", counted("push", heapq.heappush))
    monkeypatch.setattr(encode, "heappop", counted("pop", heapq.heappop))
    monkeypatch.setattr(encode, "heapify", counted("heapify", heapq.heapify, len))
    # 10^4 first: a quadratic path fails there in a second instead of hanging on 10^6
    for n, char in itertools.product((10_000, 1_000_000), "a "):
        ops.update(dict.fromkeys(ops, 0))
        ids = gpt2.encode(char * n)  # "a": one letter piece, merged to "aaaa"…; " ": no merge
        assert ids == gpt2_tiktoken.encode(char * n)
        merges = n - len(ids)  # each merge joins two parts into one
        assert ops["pop"] >= merges, (n, ops)  # the merges went through the heap
        assert sum(ops.values()) <= 5 * n, (n, ops)  # O(n) heap operations: O(n log n) time


def test_cache_is_bounded(gpt2):
    tok = Tokenizer(gpt2.mergeable_ranks, gpt2.pattern, gpt2.special_tokens)
    tok._ordinary._cache_size = 100
    text = " ".join(f"w{i}" for i in range(1000))
    assert tok.encode(text) == gpt2.encode(text)
    assert len(tok._ordinary._cache) <= 100


def test_decode_refuses_ids_that_are_no_token(gpt2):
    for bad in [50257, -1, 10**9]:
        with pytest.raises(ValueError, match=rf"token id {bad} at position 1 .*\[0, 50256\)"):
            gpt2.decode([0, bad])
    gap = Tokenizer({bytes([b]): b for b in range(256)}, "gpt2", {ENDOFTEXT: 300})
    assert gap.n_vocab == 301
    with pytest.raises(ValueError, match="token id 299 .* unused id"):
        gap.decode([299])
    with pytest.raises(TypeError):
        gpt2.decode([1.0])
    with pytest.raises(TypeError):
        gpt2.decode("1 2")
    assert gpt2.decode_bytes([50256, 31373]) == b"<|endoftext|>hello"


def test_decode_of_partial_utf8(gpt2):
    ids = gpt2.encode("日")
    assert len(ids) > 1
    assert gpt2.decode(ids[:1]) == "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        gpt2.decode(ids[:1], errors="strict")


def test_encode_refuses_non_text(gpt2):
    for bad in [b"bytes", None, 5, ["a"]]:
        with pytest.raises(TypeError, match="text must be a str"):
            gpt2.encode(bad)
        with pytest.raises(TypeError, match="text must be a str"):
            gpt2.encode_ordinary(bad)
    with pytest.raises(TypeError, match="one str"):
        gpt2.encode_batch("hello")
    with pytest.raises(TypeError, match="allowed_special"):
        gpt2.encode("x", allowed_special=ENDOFTEXT)
