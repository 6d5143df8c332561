"""The tokenizer τ: str → V* and its inverse on V*, for ranks, a pattern and special tokens.

    τ(s) = τ_ord(s_0) ‖ [id(t_1)] ‖ τ_ord(s_1) ‖ … ‖ [id(t_m)] ‖ τ_ord(s_m)

where t_1 … t_m are the allowed special tokens found in s (leftmost, longest first) and s_i
the text between them; τ_ord is byte-level BPE by rank (``encode.py``). A disallowed special
token anywhere in s is an error, so text that merely contains ``<|endoftext|>`` is never
silently a special token. Lone surrogates are repaired as tiktoken repairs them.

    decode_bytes(ids) = bytes(id_1) ‖ … ‖ bytes(id_n),   decode(ids) = utf8⁻¹(decode_bytes(ids))

so decode(τ(s)) = s for every str s without lone surrogates. Ids: ranks 0 … n_ranks - 1 are
the merged byte strings (every single byte among them), special tokens take ids after them.
"""

import functools
import operator
import os
import re
import warnings
from collections.abc import Collection, Iterable, Mapping
from types import MappingProxyType
from typing import Literal

from . import files
from .count import count_pretokens
from .encode import OrdinaryEncoder, repair_surrogates
from .hf_tokenizer import HFTokenizer
from .patterns import compile_pattern, resolve_pattern
from .train import learn_merges

ENDOFTEXT = "<|endoftext|>"


class Tokenizer:
    """Byte-level BPE with tiktoken's semantics. Build with ``train``, ``load`` or
    ``from_tiktoken_file``; ``Tokenizer(ranks, pattern, special_tokens)`` checks everything."""

    def __init__(
        self,
        ranks: Mapping[bytes, int],
        pattern: str = "gpt2",
        special_tokens: Mapping[str, int] | None = None,
    ):
        ranks = dict(ranks)
        special_tokens = dict(special_tokens or {})
        self._pattern = resolve_pattern(pattern)
        _check_vocab(ranks, special_tokens)
        self._ranks = ranks
        self._specials = special_tokens
        self._decoder = {rank: token for token, rank in ranks.items()}
        self._decoder.update({i: s.encode("utf-8") for s, i in special_tokens.items()})
        self._n_vocab = max(self._decoder) + 1
        self._ordinary = OrdinaryEncoder(ranks, compile_pattern(self._pattern))

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        text: str | Iterable[str],
        vocab_size: int,
        pattern: str = "gpt2",
        special_tokens: Collection[str] = (ENDOFTEXT,),
        *,
        processes: int = 1,
        progress: bool = False,
    ) -> "Tokenizer":
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text`` (one str, or an
        iterable of documents). Ranks: byte b ↦ b, merge k ↦ 256 + k; specials follow.
        ``processes`` > 1 counts pre-tokens in parallel (same result for any count)."""
        if type(vocab_size) is not int:
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        if not isinstance(special_tokens, str):
            special_tokens = list(dict.fromkeys(special_tokens))  # in order, once each
        if isinstance(special_tokens, str) or not all(
            isinstance(s, str) and s for s in special_tokens
        ):
            raise TypeError(
                f"special_tokens must be a collection of non-empty str, got {special_tokens!r}"
            )
        if vocab_size < 256 + len(special_tokens):
            raise ValueError(
                f"vocab_size={vocab_size} is too small: the 256 byte tokens and "
                f"{len(special_tokens)} special tokens need at least "
                f"{256 + len(special_tokens)}"
            )
        if type(processes) is not int or processes < 1:
            raise ValueError(f"processes must be an int >= 1, got {processes!r}")
        pattern = resolve_pattern(pattern)
        if isinstance(text, bytes | bytearray):
            raise TypeError("text must be a str or an iterable of str: decode the bytes first")
        texts = [text] if isinstance(text, str) else text
        counts = count_pretokens(texts, pattern, special_tokens, processes, progress)
        n_merges = vocab_size - 256 - len(special_tokens)
        merges = learn_merges(counts, n_merges, progress)
        if len(merges) < n_merges:
            warnings.warn(
                f"the corpus ran out of pairs after {len(merges)} of {n_merges} "
                f"merges: the vocabulary has {256 + len(merges)} ranks, not "
                f"{256 + n_merges}",
                stacklevel=2,
            )
        ranks = {bytes([b]): b for b in range(256)}
        ranks.update({token: 256 + k for k, token in enumerate(merges)})
        return cls(ranks, pattern, {s: len(ranks) + k for k, s in enumerate(special_tokens)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """Read a tokenizer directory written by ``save`` (see ``files.py``), fully checked."""
        ranks, pattern, special_tokens = files.load(path)
        try:
            return cls(ranks, pattern, special_tokens)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}; save the tokenizer again") from e

    @classmethod
    def from_tiktoken_file(
        cls,
        path: str | os.PathLike,
        pattern: str = "gpt2",
        special_tokens: Mapping[str, int] | None = None,
        *,
        expected_sha256: str | None = None,
    ) -> "Tokenizer":
        """A ``.tiktoken`` ranks file with a pattern; ``special_tokens`` defaults to
        ``{"<|endoftext|>": n_ranks}`` (for gpt2.tiktoken that is GPT-2's 50256)."""
        ranks = files.read_ranks(path, expected_sha256)
        if special_tokens is None:
            special_tokens = {ENDOFTEXT: len(ranks)}
        try:
            return cls(ranks, pattern, special_tokens)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e

    @staticmethod
    def from_hf(path: str | os.PathLike) -> HFTokenizer:
        """An HF ``tokenizers`` BPE tokenizer (``tokenizer.json``, or ``vocab.json`` +
        ``merges.txt``; ``path`` a directory or the file), encoding exactly as ``tokenizers``
        does. It is an ``HFTokenizer``, this class's sibling: HF's merge rule and vocabularies
        are not tiktoken's (``hf_tokenizer.py`` says why)."""
        return HFTokenizer.from_hf(path)

    def save(self, path: str | os.PathLike) -> None:
        """Write ``path/vocab.tiktoken`` and ``path/tokenizer.json``, each atomically."""
        files.save(path, self._ranks, self._pattern, self._specials)

    def to_tiktoken(self, name: str = "jaxformer"):
        """The same map as a ``tiktoken.Encoding``."""
        import tiktoken  # only here: encoding never needs it

        return tiktoken.Encoding(
            name, pat_str=self._pattern, mergeable_ranks=self._ranks, special_tokens=self._specials
        )

    # -- the map ----------------------------------------------------------------------------

    def encode(
        self,
        text: str,
        allowed_special: Literal["all"] | Collection[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """τ(text). Allowed special tokens become their ids; a disallowed one raises
        ValueError (pass ``disallowed_special=()`` to encode it as ordinary text)."""
        _check_text(text)
        allowed = self._special_set(allowed_special, "allowed_special")
        disallowed = self._special_set(disallowed_special, "disallowed_special", allowed)
        if disallowed and (found := _alternation(disallowed).search(text)):
            raise ValueError(
                f"the text contains the special token {found.group()!r} at char "
                f"{found.start()}, which is disallowed: pass allowed_special={{{found.group()!r}}}"
                f" (or 'all') to encode it as a special token, or disallowed_special=() to "
                f"encode it as ordinary text"
            )
        try:
            return self._encode(text, allowed)
        except UnicodeEncodeError:
            return self._encode(repair_surrogates(text), allowed)

    def encode_ordinary(self, text: str) -> list[int]:
        """τ_ord(text): special tokens are ordinary text here."""
        _check_text(text)
        try:
            return self._ordinary(text)
        except UnicodeEncodeError:
            return self._ordinary(repair_surrogates(text))

    def encode_batch(
        self, texts: Iterable[str], allowed_special=frozenset(), disallowed_special="all"
    ) -> list[list[int]]:
        """[τ(t) for t in texts], with ``encode``'s special-token arguments."""
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of str, got one str: use encode")
        return [self.encode(t, allowed_special, disallowed_special) for t in texts]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of ``ids``, concatenated; an id that is no token raises ValueError."""
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
            raise TypeError(f"ids must be an iterable of int, got {type(ids).__name__}")
        ids = list(map(operator.index, ids))  # TypeError for floats; numpy ints → int
        try:
            return b"".join(map(self._decoder.__getitem__, ids))
        except KeyError as e:
            bad = e.args[0]
            gap = 0 <= bad < self._n_vocab
            raise ValueError(
                f"token id {bad} at position {ids.index(bad)} is "
                f"{'an unused id' if gap else 'out of range'}: valid ids are ranks "
                f"[0, {len(self._ranks)}) and special tokens {sorted(self._specials.values())}"
                f" (n_vocab={self._n_vocab})"
            ) from None

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """decode_bytes(ids) as UTF-8; ``errors`` as for ``bytes.decode``."""
        return self.decode_bytes(ids).decode("utf-8", errors)

    # -- the vocabulary ---------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        """One more than the largest id (the model's V)."""
        return self._n_vocab

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    @property
    def pattern(self) -> str:
        return self._pattern

    @property
    def mergeable_ranks(self) -> Mapping[bytes, int]:
        return MappingProxyType(self._ranks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tokenizer):
            return NotImplemented
        return (self._pattern, self._ranks, self._specials) == (
            other._pattern,
            other._ranks,
            other._specials,
        )

    def __repr__(self) -> str:
        return (
            f"Tokenizer(n_vocab={self._n_vocab}, n_ranks={len(self._ranks)}, "
            f"special_tokens={self._specials}, pattern={self._pattern!r})"
        )

    # -- helpers ----------------------------------------------------------------------------

    def _encode(self, text: str, allowed: frozenset[str]) -> list[int]:
        if not allowed:
            return self._ordinary(text)
        ids, start = [], 0
        for found in _alternation(allowed).finditer(text):
            ids += self._ordinary(text[start : found.start()])
            ids.append(self._specials[found.group()])
            start = found.end()
        return ids + self._ordinary(text[start:])

    def _special_set(self, arg, name: str, allowed: frozenset[str] = frozenset()):
        """``"all"`` or a collection of this tokenizer's special tokens → a frozenset."""
        if arg == "all":
            return frozenset(self._specials) - allowed
        if isinstance(arg, str) or not isinstance(arg, Collection):
            raise TypeError(f"{name} must be 'all' or a collection of special tokens, got {arg!r}")
        if unknown := set(arg) - set(self._specials):
            raise ValueError(
                f"{name} names {sorted(unknown)}, which are not special tokens of "
                f"this tokenizer; its special tokens are {sorted(self._specials)}"
            )
        return frozenset(arg)


@functools.lru_cache(maxsize=64)
def _alternation(tokens: frozenset[str]) -> re.Pattern:
    # Longest first, so that of two special tokens starting at one place the longer wins.
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=lambda t: (-len(t), t))))


def _check_text(text) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")


def _check_vocab(ranks: dict[bytes, int], special_tokens: dict[str, int]) -> None:
    """Ranks are a bijection bytes ↔ [0, n) holding all 256 bytes; specials take other ids."""
    if not all(isinstance(t, bytes) and t and type(r) is int for t, r in ranks.items()):
        raise TypeError("ranks must map non-empty bytes to int")
    if set(ranks.values()) != set(range(len(ranks))):
        missing = min(set(range(len(ranks))) - set(ranks.values()))
        raise ValueError(
            f"ranks must be exactly 0 … {len(ranks) - 1} with no gaps or repeats; "
            f"rank {missing} is missing"
        )
    if missing := [b for b in range(256) if bytes([b]) not in ranks]:
        raise ValueError(
            f"every single byte must be a token (byte-level BPE encodes any text), "
            f"but {len(missing)} are missing, e.g. {bytes(missing[:1])!r}"
        )
    if not all(isinstance(s, str) and s and type(i) is int for s, i in special_tokens.items()):
        raise TypeError(f"special_tokens must map non-empty str to int, got {special_tokens!r}")
    for s, i in special_tokens.items():
        if i < len(ranks):
            raise ValueError(
                f"special token {s!r} has id {i}, which is a rank (ranks are "
                f"0 … {len(ranks) - 1}): give it an id >= {len(ranks)}"
            )
    if len(set(special_tokens.values())) != len(special_tokens):
        raise ValueError(f"special tokens must have distinct ids, got {special_tokens}")
