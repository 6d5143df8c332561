"""Pre-tokenization patterns: the split text → pieces that BPE never merges across.

    split_P : str → str*,   split_P(s) = P.findall(s)   (leftmost-first, non-overlapping)

Concatenating the pieces gives back s, so BPE acts on each piece independently. The named
patterns are copied verbatim from tiktoken 0.14 (``tiktoken_ext/openai_public.py``), so that
``split_P`` agrees with tiktoken's Rust ``fancy_regex`` split. The ``regex`` package is used
because ``re`` lacks ``\\p{L}``; its ``\\s`` is Unicode White_Space, as in Rust (``re``'s ``\\s``
would also take ``\\x1c``–``\\x1f``).
"""

import functools

import regex

GPT2 = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

CL100K = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|"""
    r"""\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

O200K = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

PATTERNS = {"gpt2": GPT2, "cl100k": CL100K, "o200k": O200K}


def resolve_pattern(pattern: str) -> str:
    """A pattern name ("gpt2", "cl100k", "o200k") or a regex string → the regex string."""
    if not isinstance(pattern, str):
        raise TypeError(
            f"pattern must be a name in {sorted(PATTERNS)} or a regex string, got "
            f"{type(pattern).__name__}"
        )
    pattern = PATTERNS.get(pattern, pattern)
    compile_pattern(pattern)  # fail here, with the pattern in the message, not at first encode
    return pattern


@functools.lru_cache(maxsize=32)
def compile_pattern(pattern: str) -> regex.Pattern:
    """The compiled regex of a pattern string (cached: tokenizers sharing a pattern share it)."""
    try:
        return regex.compile(pattern)
    except regex.error as e:
        raise ValueError(
            f"pattern {pattern!r} is not a valid regex ({e}); pass one of "
            f"{sorted(PATTERNS)} or a regex accepted by the `regex` package"
        ) from e
