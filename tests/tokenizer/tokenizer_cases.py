"""Test cases shared by the tokenizer tests: where shared/ is, texts that stress the split."""

from pathlib import Path

import tiktoken
from hypothesis import strategies as st

from jaxformer.tokenizer import Tokenizer

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
GPT2_RANKS = SHARED / "vocab" / "gpt2.tiktoken"
CORPORA = sorted((SHARED / "corpora").glob("*.txt"))

# Text with merges outside ASCII, so trained vocabularies have multi-byte tokens to apply.
MULTILINGUAL = (
    "Grüße aus Köln, naïve café! Ελληνικά κείμενα. Русский текст. 日本語のテキスト、中文文本。"
    " 한국어 텍스트. עברית. العربية. हिन्दी पाठ. 👍🏽 👨‍👩‍👧 🎉🎉 e\u0301 n\u0303 ʕaʕ\n"
)

# Fragments that stress the split: the hypothesis suite draws texts from these and random chars.
FRAGMENTS = [
    "'s",
    "'S",
    "'ll",
    "'VE",
    "'re",
    "'d",
    "'t",
    "'M",
    "don't",
    "I'M",
    "ſ",
    "'ſ",
    " ",
    "  ",
    "   ",
    "\n",
    "\n\n",
    "\r\n",
    "\t",
    " \n ",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x1f",
    "\x85",
    "\u2028",
    "\u2029",
    "\u00a0",
    "\u3000",
    "\u200b",
    "123",
    "4567",
    "１２",
    "٣",
    "Ⅻ",
    "½",
    "e\u0301",
    "\u0301",
    "👍",
    "👍🏽",
    "👨‍👩‍👧",
    "🇫🇷",
    "日本語",
    "中文",
    "한국어",
    "ʕ",
    "\U000323b0",
    "\U0003d000",
    "\ua7ce",
    "ABC",
    "abc",
    "Hello",
    "WORLD",
    "!!",
    "...",
    "//",
    "<|",
    "|>",
    "<|endoftext|>",
    "$",
    "ℵ",
    "ǅ",
    "ß",
    "İ",
    "\x00",
    "\x7f",
    "\ufeff",
]

texts = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8), st.characters(codec="utf-8")),
    max_size=40,
).map("".join)
surrogates = st.integers(0xD800, 0xDFFF).map(chr)
texts_with_surrogates = st.lists(st.one_of(texts, surrogates), max_size=6).map("".join)


def reference(tok: Tokenizer) -> tiktoken.Encoding:
    """tiktoken's own encoder over the same ranks, pattern and special tokens."""
    return tiktoken.Encoding(
        "reference",
        pat_str=tok.pattern,
        special_tokens=tok.special_tokens,
        mergeable_ranks=dict(tok.mergeable_ranks),
    )
