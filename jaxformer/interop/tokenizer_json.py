"""A jaxformer ``Tokenizer`` as an HF ``tokenizer.json`` (the ``tokenizers`` library).

jaxformer's τ is tiktoken's byte-level BPE: split the text with a regex, then
merge adjacent parts of each piece, always the pair whose concatenation has the
lowest rank, leftmost first; a piece that is itself a token is taken whole.
HF's BPE merges by a list of pairs instead, so the export writes:

    vocab    the GPT-2 byte↔unicode image of each token's bytes ↦ its rank
    merges   for every token t, each split t = x + y into two tokens, in blocks
             ordered by rank(t): a pair's priority is then the rank of its merge
    pre      Split(regex, Isolated) then ByteLevel without its own regex
    model    ignore_merges=true (a piece that is a token is taken whole)
    added    the special tokens

which is the same map, except in one corner: two *overlapping* pairs with the
same concatenation (t = x + y = y' + z in one piece) are merged leftmost first by
tiktoken and in list order by HF. Every single byte is a token (``Tokenizer``
checks it), so no text needs an unknown token.

An ``HFTokenizer`` (``Tokenizer.from_hf``) is written back as the ``tokenizer.json`` it was
read from: it holds nothing that file cannot say (what jaxformer could not honour was
refused when it was read), so ``tokenizers`` loads the same map.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import write_atomic
from ..tokenizer import HFTokenizer, Tokenizer
from ..tokenizer.hf_files import bpe_model
from ..tokenizer.hf_text import byte_to_unicode

__all__ = ["byte_to_unicode", "to_hf_tokenizer_json", "tokenizer_json"]


def tokenizer_json(tok: Tokenizer | HFTokenizer) -> dict:
    """The ``tokenizer.json`` object of ``tok`` (see the module docstring)."""
    if isinstance(tok, HFTokenizer):
        return tok.tokenizer_json()
    if not isinstance(tok, Tokenizer):
        raise TypeError(f"expected a Tokenizer or an HFTokenizer, got {type(tok).__name__}")
    ranks, u = tok.mergeable_ranks, byte_to_unicode()
    text = lambda token: "".join(u[b] for b in token)
    merges = [
        [text(t[:i]), text(t[i:])]
        for t in sorted(ranks, key=ranks.__getitem__)
        for i in range(1, len(t))
        if t[:i] in ranks and t[i:] in ranks
    ]
    added = [
        dict(id=i, content=s, single_word=False, lstrip=False, rstrip=False, normalized=False,
             special=True)
        for s, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])
    ]  # fmt: skip
    byte_level = dict(type="ByteLevel", add_prefix_space=False, trim_offsets=True, use_regex=False)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": tok.pattern},
                    "behavior": "Isolated",
                    "invert": False,
                },
                byte_level,
            ],
        },
        "post_processor": None,
        "decoder": byte_level,
        "model": bpe_model(
            {text(t): r for t, r in sorted(ranks.items(), key=lambda kv: kv[1])},
            merges,
            ignore_merges=True,
        ),
    }


def to_hf_tokenizer_json(tok: Tokenizer | HFTokenizer, path: str | os.PathLike) -> None:
    """Write ``tok`` as the HF ``tokenizer.json`` file ``path`` (atomically)."""
    text = json.dumps(tokenizer_json(tok), ensure_ascii=False)
    write_atomic(Path(path), text.encode("utf-8"))
