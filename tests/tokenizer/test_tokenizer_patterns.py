"""Patterns: the named regexes are tiktoken 0.14's, and split as tiktoken's Rust regex does."""

import pytest
import regex
import tiktoken_ext.openai_public as openai_public
from tokenizer_cases import reference

from jaxformer.tokenizer import CL100K, GPT2, O200K, PATTERNS, Tokenizer, unicode16
from jaxformer.tokenizer.patterns import resolve_pattern


def test_named_patterns_are_tiktokens(monkeypatch):
    # The constructors would download the ranks; the pattern is all we want from them.
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *args, **kwargs: {})
    assert GPT2 == openai_public.r50k_pat_str == openai_public.r50k_base()["pat_str"]
    assert CL100K == openai_public.cl100k_base()["pat_str"]
    assert O200K == openai_public.o200k_base()["pat_str"]
    assert PATTERNS == {"gpt2": GPT2, "cl100k": CL100K, "o200k": O200K}


def test_resolve_pattern():
    assert resolve_pattern("cl100k") == CL100K
    assert resolve_pattern(r"\w+|\W") == r"\w+|\W"
    with pytest.raises(ValueError, match="not a valid regex"):
        resolve_pattern("[")
    with pytest.raises(TypeError, match="pattern must be"):
        resolve_pattern(None)


def boundary_tokenizer(pattern: str, context: bytes) -> Tokenizer:
    """Bytes plus every pair (context byte, UTF-8 lead byte) and (continuation byte, context
    byte): pairs that straddle a character boundary, so the ids show where the split cuts."""
    lead, cont = range(0xC2, 0xF5), range(0x80, 0xC0)
    pairs = [bytes([c, b]) for c in context for b in lead]
    pairs += [bytes([b, c]) for b in cont for c in context]
    ranks = {bytes([b]): b for b in range(256)} | {t: 256 + i for i, t in enumerate(pairs)}
    return Tokenizer(ranks, pattern)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_newer_unicode_is_split_as_unicode_16(pattern):
    # regex knows a newer Unicode than tiktoken's Rust regex (16.0). Every character that regex
    # classifies differently must split as 16.0 has it, in every context that tells.
    changed = sorted(unicode16._changed())
    assert len(changed) > 17_000 and "\u0295" in changed
    tok = boundary_tokenizer(PATTERNS[pattern], b"a 1'xADb\n")
    text = "".join(f"a{c}a {c}1{c}A'{c} x{c}D{c}Ab\n" for c in changed + ["\u00e9", "\u0301"])
    assert tok.encode_ordinary(text) == reference(tok).encode_ordinary(text)


def test_unicode16_mask_keeps_lengths_and_plain_text():
    assert not unicode16.differs("plain ascii") and not unicode16.differs("日本語 ʔ")
    assert unicode16.differs("aʕa") and unicode16.differs("x\U000323b0")
    tok = Tokenizer({bytes([b]): b for b in range(256)}, "o200k")
    pieces = unicode16.finditer_16(tok._ordinary._pattern, "Aʕb \U000323b0\U000323b1x")
    assert pieces == ["Aʕb", " \U000323b0\U000323b1", "x"]


def test_regex_knows_every_character_of_unicode_16():
    # The mask handles a `regex` newer than Unicode 16.0, not an older one: with an older one a
    # 16.0 letter would be unassigned here and split apart where tiktoken keeps it whole.
    unassigned = set()
    for item in unicode16.UNASSIGNED.split():
        lo, _, hi = item.partition("-")
        unassigned.update(range(int(lo, 16), int(hi or lo, 16) + 1))
    assigned_16 = "".join(chr(c) for c in range(0x110000) if c not in unassigned)
    assert regex.findall(r"\P{Assigned}", assigned_16) == []
