"""An HF ``tokenizers`` BPE tokenizer, read from its files and applied exactly as it is.

    τ_HF : str → V*,   τ_HF(s) = pre ‖ β(s_0) ‖ [a_1] ‖ β(s_1) ‖ … ‖ [a_m] ‖ β(s_m) ‖ post

    a_1 … a_m   the added tokens found in s, leftmost-longest: first those matched on the raw
                text (normalized=false), then, in each stretch between, those matched on the
                normalized text (normalized=true; single_word, lstrip, rstrip as in HF)
    β(t)        ‖ over the pieces p of pre_tokenize(normalize(t)) of bpe_π(symbols(p))
    symbols(p)  each char of p as its vocabulary id, else its UTF-8 bytes as ``<0xNN>``
                tokens (byte_fallback), else ``unk_token`` (runs fused if fuse_unk), else
                nothing; with ignore_merges a piece that is a token is that token
    bpe_π       merge by pair priority (``pair_bpe.py``): while some adjacent pair has a
                merge, x ← x with (x_i, x_{i+1}) replaced by id(x_i ‖ x_{i+1}), where
                i = argmin_i (π(x_i, x_{i+1}), i) and π(a, b) is the line of "a b" in merges
    pre, post   the post-processor's template around the text (a BOS, an EOS)

which is ``tokenizers.Tokenizer.from_file(f).encode(s).ids`` on every s (the tests check it
against the library). ``decode`` is ``tokenizers``' ``decode`` (``hf_decode.py``). Where
``tokenizers`` would warn or fail late, this refuses early or loudly: an added token whose
file id is not the one ``tokenizers`` assigns, or an ``unk_token`` missing from the vocab, is
refused when read; an id that is no token raises in ``decode`` (``tokenizers`` drops it);
lone surrogates, which ``tokenizers`` cannot take, are repaired to U+FFFD as ``Tokenizer``
repairs them.

Why a sibling of ``Tokenizer`` and not ``Tokenizer`` itself: ``Tokenizer`` is tiktoken's map
(ids are ranks of byte strings, every byte a token, merge by the rank of the concatenation,
stored as a ``.tiktoken`` file). An HF vocabulary breaks each of these: SentencePiece-style
vocabularies lack most single bytes (they fall back to ``<0xNN>`` tokens or ``<unk>``), ids
need not follow merge order, and the merge rule is by pair. Generalising ``Tokenizer`` would
make every one of its invariants conditional; ``HFTokenizer`` has the same public face
(``encode``, ``encode_ordinary``, ``encode_batch``, ``decode``, ``decode_bytes``, ``n_vocab``,
``special_tokens``, ``save``/``load``) and keeps the file it was read from, which
``to_hf_tokenizer_json`` writes back. Unlike ``Tokenizer``, special tokens are split out by
default, as ``tokenizers`` does (``allowed_special=()`` treats them as text).

Anything in a file that is not implemented is refused with one line naming the field and
its value (``hf_json.py``; the model, the added tokens and the template are read in
``hf_read.py``), never ignored. Not implemented: models other than BPE, dropout,
continuing_subword_prefix / end_of_word_suffix, truncation, padding, and the normalizers,
pre-tokenizers, decoders and post-processors not listed in ``hf_text.py``/``hf_decode.py``.
"""

from __future__ import annotations

import copy
import json
import operator
import os
import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Literal

import regex

from ..atomic import write_atomic
from .encode import repair_surrogates
from .hf_decode import Decoder
from .hf_files import TOKENIZER_JSON, read_spec
from .hf_json import Fields, refuse
from .hf_read import AddedToken, read_added, read_model, template
from .hf_text import normalizer, pre_tokenizer
from .pair_bpe import bpe_by_pair_priority

_WORD = r"[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]"  # Rust regex's Unicode \w
_STARTS_WORD, _ENDS_WORD = regex.compile(_WORD), regex.compile(_WORD + r"\Z")
_TRAILING_SPACE, _LEADING_SPACE = regex.compile(r"\s*\Z"), regex.compile(r"\s*")
_CACHE_PIECE, _CACHE_SIZE = 256, 1 << 16


class HFTokenizer:
    """τ_HF of one ``tokenizer.json`` (see the module docstring). Build with ``from_hf``."""

    def __init__(self, spec: dict, file: str = TOKENIZER_JSON):
        self._spec = spec = copy.deepcopy(spec)  # read from the copy: the caller may edit theirs
        top = Fields(spec, file, "")
        top.take("version", str, "1.0")
        for key in ("truncation", "padding"):
            if top.take(key, object, None) is not None:
                raise refuse(file, key, spec[key], "not implemented (it changes the ids)")
        self._normalize = normalizer(top.take("normalizer", (dict, type(None)), None), file)
        self._pre = pre_tokenizer(top.take("pre_tokenizer", (dict, type(None)), None), file)
        m = read_model(Fields(top.take("model", dict), file, "model"))
        self._vocab, self._token_of, self._merges = m.vocab, m.token_of, m.merges
        self._unk, self._fuse_unk = m.unk, m.fuse_unk
        self._byte_fallback, self._ignore_merges = m.byte_fallback, m.ignore_merges
        self._added_by_id = read_added(top.take("added_tokens", list, []), file, self._vocab)
        self._match_added()
        self._prefix, self._suffix = template(top.take("post_processor", object, None), file)
        self._decoder = Decoder(top.take("decoder", (dict, type(None)), None), file)
        top.done()
        self._file = file
        self._cache: dict[str, tuple[int, ...]] = {}
        self._bytes: dict[int, bytes] = {}
        ids = [*self._vocab.values(), *self._added_by_id]
        self._n_vocab = max(ids) + 1 if ids else 0

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_hf(cls, path: str | os.PathLike) -> HFTokenizer:
        """Read ``tokenizer.json``, or ``vocab.json`` + ``merges.txt`` (GPT-2's byte-level
        pipeline, ``<|endoftext|>`` special if in the vocabulary, as ``GPT2TokenizerFast``);
        ``path`` is a directory holding them or one of the files."""
        return cls(*read_spec(path))

    load = from_hf

    def save(self, path: str | os.PathLike) -> None:
        """Write ``path/tokenizer.json`` (atomically): the file this tokenizer was read from,
        which ``tokenizers.Tokenizer.from_file`` and ``HFTokenizer.load`` read back."""
        write_atomic(Path(path) / TOKENIZER_JSON, self.to_json_text().encode("utf-8"))

    def tokenizer_json(self) -> dict:
        """The ``tokenizer.json`` object this tokenizer computes (a copy)."""
        return copy.deepcopy(self._spec)

    def to_json_text(self) -> str:
        return json.dumps(self._spec, ensure_ascii=False)

    # -- the map ----------------------------------------------------------------------------

    def encode(
        self,
        text: str,
        allowed_special: Literal["all"] | Collection[str] = "all",
        disallowed_special: Literal["all"] | Collection[str] = (),
        *,
        add_special_tokens: bool = True,
    ) -> list[int]:
        """τ_HF(text), ``tokenizers``' ``encode(text).ids``. Special tokens (added tokens with
        special=true) not in ``allowed_special`` are text; one in ``disallowed_special``
        raises ValueError. ``add_special_tokens=False`` leaves out the template's BOS/EOS."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        allowed = self._special_set(allowed_special, "allowed_special")
        disallowed = self._special_set(disallowed_special, "disallowed_special") - allowed
        if disallowed and (found := _alternation(disallowed).search(text)):
            raise ValueError(
                f"the text contains the special token {found.group()!r} at char "
                f"{found.start()}, which is disallowed: pass allowed_special={{{found.group()!r}}}"
                f" (or 'all') to encode it as a special token, or disallowed_special=() to "
                f"encode it as ordinary text"
            )
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: repaired as Tokenizer does
                text = repair_surrogates(text)
        ids = []
        for segment in self._split_added(text, allowed):
            if isinstance(segment, int):
                ids.append(segment)
                continue
            pieces = [segment] if self._pre is None else self._pre([segment])
            for piece, _ in pieces:
                ids += self._cache.get(piece) or self._bpe(piece)
        return self._prefix + ids + self._suffix if add_special_tokens else ids

    def encode_ordinary(self, text: str) -> list[int]:
        """τ_HF(text) with special tokens as text and no BOS/EOS."""
        return self.encode(text, (), (), add_special_tokens=False)

    def encode_batch(
        self, texts: Iterable[str], allowed_special="all", disallowed_special=()
    ) -> list[list[int]]:
        """[encode(t) for t in texts], with ``encode``'s special-token arguments."""
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of str, got one str: use encode")
        return [self.encode(t, allowed_special, disallowed_special) for t in texts]

    def decode(
        self, ids: Iterable[int], errors: str = "replace", *, skip_special_tokens: bool = False
    ) -> str:
        """``tokenizers``' ``decode(ids, skip_special_tokens)``; an id that is no token raises
        ValueError (``tokenizers`` drops it)."""
        tokens = [self._token(i, n) for n, i in enumerate(_ids(ids))]
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in self._specials]
        return self._decoder.decode(tokens, errors)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of the tokens as they stand mid-text, concatenated (``hf_decode``): a
        homomorphism, so decoding token by token streams the same bytes."""
        out = []
        for n, i in enumerate(_ids(ids)):
            if (b := self._bytes.get(i)) is None:
                b = self._bytes[i] = self._decoder.token_bytes(self._token(i, n))
            out.append(b)
        return b"".join(out)

    # -- the vocabulary ---------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        """One more than the largest id (the model's V)."""
        return self._n_vocab

    @property
    def special_tokens(self) -> dict[str, int]:
        """The added tokens marked special, content ↦ id."""
        return dict(self._specials)

    @property
    def added_tokens(self) -> list[AddedToken]:
        return list(self._added_by_id.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HFTokenizer):
            return NotImplemented
        return self._spec == other._spec

    def __repr__(self) -> str:
        return (
            f"HFTokenizer(n_vocab={self._n_vocab}, n_merges={len(self._merges)}, "
            f"special_tokens={self._specials}, file={self._file!r})"
        )

    # -- reading ----------------------------------------------------------------------------

    def _match_added(self) -> None:
        """The added tokens read → the special ones (content ↦ id) and the matchers that find
        each in a text: ``_raw`` by its content, ``_normed`` by its normalized form."""
        added = self._added_by_id.values()
        self._specials = {t.content: t.id for t in added if t.special}
        # a normalized token is matched in the normalized text, so by its normalized form
        norm = self._normalize or (lambda s: s)
        self._as_text = {t.id: norm(t.content) if t.normalized else t.content for t in added}
        self._raw = _Matcher({t.content: t for t in added if not t.normalized})
        self._normed = _Matcher({norm(t.content): t for t in added if t.normalized})

    # -- encoding ---------------------------------------------------------------------------

    def _split_added(self, text: str, allowed: frozenset[str]) -> list:
        """``AddedVocabulary::extract_and_normalize``: the segments of ``text``, each an added
        token's id or a non-empty normalized stretch (str, whether it starts the text)."""
        out = []
        for part in self._find_added(text, self._raw, allowed, 0):
            if isinstance(part, int):
                out.append(part)
                continue
            stretch, start = part
            if self._normalize is not None:
                stretch = self._normalize(stretch)
            for sub in self._find_added(stretch, self._normed, allowed, start):
                out.append(sub if isinstance(sub, int) else (sub[0], sub[1] == 0))
        return out

    def _find_added(self, s: str, tokens: _Matcher, allowed, offset: int) -> list:
        """``AddedVocabulary::find_matches``: added token ids and the stretches between them
        (str, offset of its start in the text), leftmost-longest; empty stretches dropped."""
        if tokens.pattern is None or not s:
            return [(s, offset)] if s else []
        parts, done = [], 0
        for m in tokens.pattern.finditer(s):
            start, stop = m.span()
            t = tokens.by_text[m.group()]
            if t.special and t.content not in allowed:
                continue
            if t.single_word and (
                (start > 0 and _ENDS_WORD.search(s, 0, start))
                or (stop < len(s) and _STARTS_WORD.match(s, stop))
            ):
                continue
            if t.lstrip:
                start = max(_TRAILING_SPACE.search(s, 0, start).start(), done)
            if t.rstrip:
                stop = _LEADING_SPACE.match(s, stop).end()
            if done < start:
                parts.append((s[done:start], offset + done))
            parts.append(t.id)
            done = stop
        if done < len(s):
            parts.append((s[done:], offset + done))
        return parts

    def _bpe(self, piece: str) -> tuple[int, ...]:
        """``BPE::tokenize`` of one piece: symbols, then merges by pair priority."""
        vocab = self._vocab
        if self._ignore_merges and (i := vocab.get(piece)) is not None:
            ids: tuple[int, ...] = (i,)
        else:
            ids = tuple(bpe_by_pair_priority(self._symbols(piece), self._merges))
        if len(piece) <= _CACHE_PIECE:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[piece] = ids
        return ids

    def _symbols(self, piece: str) -> list[int]:
        """``BPE::merge_word`` before merging: each char's id, byte fallback, or unk."""
        vocab, out = self._vocab, []
        unk = None  # the pending unk (fuse_unk: one for a run)
        for c in piece:
            if (i := vocab.get(c)) is not None:
                if unk is not None:
                    out.append(unk)
                    unk = None
                out.append(i)
                continue
            if self._byte_fallback:
                fallback = [vocab.get(f"<0x{b:02X}>") for b in c.encode("utf-8")]
                if None not in fallback:
                    out += fallback  # as tokenizers: a pending unk stays pending, after these
                    continue
            if self._unk is not None:
                if unk is not None and not self._fuse_unk:
                    out.append(unk)
                unk = vocab[self._unk]
            # else: tokenizers drops a char it has no token for
        if unk is not None:
            out.append(unk)
        return out

    def _token(self, i: int, position: int) -> str:
        if (t := self._added_by_id.get(i)) is not None:
            return self._as_text[t.id]
        if (s := self._token_of.get(i)) is None:
            raise ValueError(
                f"token id {i} at position {position} is no token of this tokenizer "
                f"(n_vocab={self._n_vocab}); pass ids that encode produced"
            )
        return s

    def _special_set(self, arg, name: str) -> frozenset[str]:
        if arg == "all":
            return frozenset(self._specials)
        if isinstance(arg, str) or not isinstance(arg, Collection):
            raise TypeError(f"{name} must be 'all' or a collection of special tokens, got {arg!r}")
        if unknown := set(arg) - set(self._specials):
            raise ValueError(
                f"{name} names {sorted(unknown)}, which are not special tokens of "
                f"this tokenizer; its special tokens are {sorted(self._specials)}"
            )
        return frozenset(arg)


class _Matcher:
    """Added tokens by the text they are matched as, and one regex finding them."""

    def __init__(self, by_text: dict[str, AddedToken]):
        self.by_text = by_text
        self.pattern = _alternation(frozenset(by_text)) if by_text else None


def _alternation(tokens: frozenset[str]) -> re.Pattern:
    # Longest first: at the leftmost match the longest token wins (aho-corasick's
    # LeftmostLongest, as tokenizers builds its matcher).
    return _ALTERNATIONS.get(tokens) or _ALTERNATIONS.setdefault(
        tokens, re.compile("|".join(map(re.escape, sorted(tokens, key=lambda t: (-len(t), t)))))
    )


_ALTERNATIONS: dict[frozenset[str], re.Pattern] = {}


def _ids(ids) -> list[int]:
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        raise TypeError(f"ids must be an iterable of int, got {type(ids).__name__}")
    return list(map(operator.index, ids))
