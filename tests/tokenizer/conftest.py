"""Shared fixtures: the shared/ corpora and GPT-2 ranks, tiktoken references built offline."""

import pytest
import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tokenizer_cases import CORPORA, GPT2_RANKS, MULTILINGUAL, SHARED

from jaxformer.tokenizer import ENDOFTEXT, PATTERNS, Tokenizer


def skip_without_shared():
    if not GPT2_RANKS.exists() or not CORPORA:
        pytest.skip(f"needs the shared corpora and GPT-2 ranks in {SHARED.resolve()}")


@pytest.fixture(scope="session")
def gpt2() -> Tokenizer:
    skip_without_shared()
    return Tokenizer.from_tiktoken_file(GPT2_RANKS, "gpt2", {ENDOFTEXT: 50256})


@pytest.fixture(scope="session")
def gpt2_tiktoken() -> tiktoken.Encoding:
    """GPT-2 as tiktoken defines it (``tiktoken.get_encoding`` needs the network)."""
    skip_without_shared()
    from tiktoken_ext.openai_public import r50k_pat_str

    return tiktoken.Encoding(
        "gpt2",
        pat_str=r50k_pat_str,
        special_tokens={ENDOFTEXT: 50256},
        mergeable_ranks=load_tiktoken_bpe(str(GPT2_RANKS)),
    )


@pytest.fixture(scope="session")
def corpora() -> dict[str, str]:
    skip_without_shared()
    return {path.name: path.read_text(encoding="utf-8") for path in CORPORA}


@pytest.fixture(scope="session", params=sorted(PATTERNS))
def trained(request, corpora) -> Tokenizer:
    """A small vocabulary trained per named pattern on a corpus slice plus multilingual text."""
    text = corpora["austen.txt"][:300_000] + MULTILINGUAL * 50
    return Tokenizer.train(text, 1024, request.param, (ENDOFTEXT, "<|pad|>"))
