"""A jaxformer Tokenizer exported as tokenizer.json encodes the same ids in HF ``tokenizers``."""

import pytest

tokenizers = pytest.importorskip("tokenizers")

from jaxformer.interop.tokenizer_json import byte_to_unicode, to_hf_tokenizer_json  # noqa: E402
from jaxformer.tokenizer import ENDOFTEXT, Tokenizer  # noqa: E402

TEXTS = [
    "Hello world! It's 2024, isn't it?  \n\n  Tabs\tand  spaces   ",
    "naïve café — 日本語のテキスト 🤖🎉 ٱلْعَرَبِيَّة ÀÉÎ",
    "I'LL SAY 'TIS 1234567 times\r\n\r\n  trailing  \n",
    f"{ENDOFTEXT}The end.{ENDOFTEXT}",
]


def assert_same_map(tok: Tokenizer, texts: list[str], path):
    to_hf_tokenizer_json(tok, path)
    hf = tokenizers.Tokenizer.from_file(str(path))
    for text in texts:
        ids = tok.encode(text, allowed_special="all")
        assert hf.encode(text).ids == ids
        assert hf.decode(ids, skip_special_tokens=False) == text


def test_byte_to_unicode_is_gpt2s_bijection():
    u = byte_to_unicode()
    assert len(set(u.values())) == 256
    assert u[ord("A")] == "A" and u[ord(" ")] == "Ġ" and u[ord("\n")] == "Ċ"  # GPT-2's vocab


def test_gpt2_ranks(shared, tmp_path):
    tok = Tokenizer.from_tiktoken_file(shared / "vocab" / "gpt2.tiktoken")
    corpora = shared / "corpora"
    corpus = [(corpora / f).read_text()[:30_000] for f in ("austen.txt", "shakespeare.txt")]
    assert_same_map(tok, TEXTS + corpus, tmp_path / "tokenizer.json")
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's ids


def test_trained_tokenizer_with_cl100k_pattern(shared, tmp_path):
    text = (shared / "corpora" / "shakespeare.txt").read_text()[:50_000]
    tok = Tokenizer.train(text, vocab_size=400, pattern="cl100k")
    assert_same_map(tok, TEXTS + [text[-5000:]], tmp_path / "tokenizer.json")
