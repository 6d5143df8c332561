"""HF ``tokenizers``' normalizers and pre-tokenizers: text → the pieces BPE acts on.

    normalize : str → str                  applied to each stretch of text between added tokens
    pre       : [(s, first)] → [(s, first)] each piece s split further, non-empty pieces kept;
                                            ``first`` says the piece starts the original text

Implemented, each as ``tokenizers`` 0.23 defines it (file and function named in each class):

    normalizer     NFC, NFD, NFKC, NFKD, Prepend, Replace (a String pattern), Sequence
    pre-tokenizer  ByteLevel (add_prefix_space, use_regex = GPT-2's pattern as HF writes it),
                   Split (Regex or String pattern, all five behaviours, invert), Metaspace
                   (replacement, prepend_scheme always/first/never, split), Sequence

Regexes: ``tokenizers`` runs them in Oniguruma with Ruby syntax, whose ``^`` and ``$`` are
line anchors; here they run in the ``regex`` package with MULTILINE, which gives them the
same meaning. Constructs whose meaning differs (``\\h``, ``\\Z``, ``\\z``, ``\\R``, ``\\K``,
``\\G``, an inline ``m`` flag, which is dot-all in Ruby) are refused. Oniguruma classifies by
Unicode 16.0, as tiktoken does, so the spans are found through ``unicode16``'s mask (checked
for every general category over all code points). The NF* forms use ``unicodedata``
(Unicode 14.0 on Python 3.11), which agrees with ``tokenizers``' tables on every code point
assigned since (they leave those unchanged too).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

import regex

from .hf_json import Fields, refuse
from .unicode16 import _mask, differs

Piece = tuple[str, bool]  # (text, whether it starts at offset 0 of the original text)
Normalizer = Callable[[str], str]
PreTokenizer = Callable[[list[Piece]], list[Piece]]

# ``pre_tokenizers/byte_level.rs``: the pattern of ByteLevel(use_regex=True). Not tiktoken's
# GPT-2 pattern (that one has ``\s++$`` and a lone ``\s``): HF's has neither.
HF_GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_BEHAVIORS = ("Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous")


# -- normalizers ---------------------------------------------------------------------------


def normalizer(spec, file: str, where: str = "normalizer") -> Normalizer | None:
    """The normalizer of a ``tokenizer.json`` ``normalizer`` field (None: the identity)."""
    if spec is None:
        return None
    f = Fields(spec, file, where)
    kind = f.take("type", str)
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        f.done()
        return lambda s, form=kind: unicodedata.normalize(form, s)
    if kind == "Prepend":
        prefix = f.take("prepend", str)
        f.done()
        return lambda s: prefix + s if s else s  # normalizers/prepend.rs: not on ""
    if kind == "Replace":
        old, new = literal_pattern(f, "pattern"), f.take("content", str)
        f.done()
        return lambda s: s.replace(old, new)
    if kind == "Sequence":
        steps = [normalizer(n, file, f"{where}.normalizers[{i}]")
                 for i, n in enumerate(f.take("normalizers", list))]  # fmt: skip
        f.done()
        steps = [s for s in steps if s is not None]
        return lambda s: _chain(steps, s)
    raise refuse(file, f"{where}.type", kind, "this normalizer is not implemented")


def _chain(steps: list[Normalizer], s: str) -> str:
    for step in steps:
        s = step(s)
    return s


def literal_pattern(f: Fields, key: str) -> str:
    """A ``{"String": s}`` pattern (``{"Regex": r}`` is refused: not needed by the families)."""
    pattern = Fields(f.take(key, dict), f.file, f.sub(key))
    if "String" not in pattern.obj:
        kind = next(iter(pattern.obj), None)
        raise refuse(f.file, f.sub(key), pattern.obj, f"a {kind} pattern is not implemented here")
    s = pattern.take("String", str)
    pattern.done()
    if not s:
        raise refuse(f.file, f.sub(key), s, "an empty pattern matches everywhere")
    return s


# -- pre-tokenizers ------------------------------------------------------------------------


def pre_tokenizer(spec, file: str, where: str = "pre_tokenizer") -> PreTokenizer | None:
    """The pre-tokenizer of a ``tokenizer.json`` ``pre_tokenizer`` field (None: no split)."""
    if spec is None:
        return None
    f = Fields(spec, file, where)
    kind = f.take("type", str)
    if kind == "ByteLevel":
        step = ByteLevel(f.take("add_prefix_space", bool), f.take("use_regex", bool, True))
        f.ignore("trim_offsets")  # offsets only
    elif kind == "Split":
        step = Split(f, f.take("pattern", dict))
    elif kind == "Metaspace":
        step = Metaspace(f)
    elif kind == "Sequence":
        steps = [pre_tokenizer(p, file, f"{where}.pretokenizers[{i}]")
                 for i, p in enumerate(f.take("pretokenizers", list))]  # fmt: skip
        step = lambda pieces: _chain(steps, pieces)
    else:
        raise refuse(file, f"{where}.type", kind, "this pre-tokenizer is not implemented")
    f.done()
    return step


def compile_onig(pattern: str, file: str, where: str) -> regex.Pattern:
    """An Oniguruma (Ruby syntax) regex as a ``regex`` pattern of the same meaning."""
    escapes = {m.group()[1] for m in regex.finditer(r"\\.", pattern, regex.DOTALL)}
    bare = regex.sub(r"\\.", "", pattern, flags=regex.DOTALL)
    if bad := escapes & set("hHZzRKG"):
        raise refuse(file, where, pattern, f"\\{min(bad)} means another thing in Oniguruma")
    if regex.search(r"\(\?[a-zA-Z-]*m", bare):
        raise refuse(file, where, pattern, "an inline m flag is dot-all in Oniguruma")
    try:
        return regex.compile(pattern, regex.MULTILINE)
    except regex.error as e:
        raise refuse(file, where, pattern, f"not a regex the `regex` package reads ({e})") from e


def spans(pattern: regex.Pattern, text: str) -> list[tuple[int, int]]:
    """The (start, end) of each match of ``pattern`` in ``text``, classes as Unicode 16.0."""
    if differs(text):  # rare: a character `regex` classifies unlike Unicode 16.0
        text = text.translate(_mask())
    return [m.span() for m in pattern.finditer(text)]


def split_by(
    pattern: regex.Pattern, piece: Piece, behavior: str, invert: bool = False
) -> list[Piece]:
    """``NormalizedString::split`` (tokenizer/normalizer.rs) of one piece by a regex."""
    text, first = piece
    marks, prev = [], 0  # (start, end, is_match) covering the text: pattern.rs find_matches
    for start, end in spans(pattern, text):
        if prev != start:
            marks.append([prev, start, invert])
        marks.append([start, end, not invert])
        prev = end
    if prev != len(text):
        marks.append([prev, len(text), invert])
    if behavior == "Removed":
        kept = [(s, e) for s, e, match in marks if not match]
    elif behavior == "Isolated":
        kept = [(s, e) for s, e, _ in marks]
    else:
        kept = _merge_marks(marks, behavior)
    return [(text[s:e], first and s == 0) for s, e in kept if e > s]


def _merge_marks(marks: list[list], behavior: str) -> list[tuple[int, int]]:
    """Contiguous: runs of equal kind join; MergedWithPrevious/Next: a match joins the
    non-match before/after it (the folds of ``NormalizedString::split``)."""
    out: list[list[int]] = []
    previous = False
    if behavior == "MergedWithNext":
        for s, e, match in reversed(marks):
            if match and not previous and out:
                out[-1][0] = s
            else:
                out.append([s, e])
            previous = match
        return [(s, e) for s, e in reversed(out)]
    for s, e, match in marks:
        joins = match == previous if behavior == "Contiguous" else match and not previous
        if joins and out:
            out[-1][1] = e
        else:
            out.append([s, e])
        previous = match
    return [(s, e) for s, e in out]


class ByteLevel:
    """``pre_tokenizers/byte_level.rs``: a space before each piece that lacks one (if
    ``add_prefix_space``), HF's GPT-2 split (if ``use_regex``), then every UTF-8 byte of a
    piece as its printable stand-in (``byte_to_unicode``)."""

    def __init__(self, add_prefix_space: bool, use_regex: bool):
        self.add_prefix_space, self.use_regex = add_prefix_space, use_regex
        self._pattern = regex.compile(HF_GPT2) if use_regex else None

    def __call__(self, pieces: list[Piece]) -> list[Piece]:
        out = []
        for text, first in pieces:
            if self.add_prefix_space and not text.startswith(" "):
                text = " " + text
            if self._pattern is None:
                out.append((text, first))
            else:
                out += split_by(self._pattern, (text, first), "Isolated")
        # Each byte b as the Latin-1 char chr(b), then that char as b's printable image.
        return [(s.encode("utf-8").decode("latin-1").translate(_IMAGE), f) for s, f in out]


class Split:
    """``pre_tokenizers/split.rs``: split each piece by a regex or a literal string."""

    def __init__(self, f: Fields, pattern: dict):
        p = Fields(pattern, f.file, f.sub("pattern"))
        if "Regex" in pattern:
            self.pattern = compile_onig(p.take("Regex", str), f.file, p.sub("Regex"))
        else:
            self.pattern = regex.compile(regex.escape(p.take("String", str)))
        p.done()
        self.behavior = f.must_be("behavior", _BEHAVIORS, f"expected one of {_BEHAVIORS}")
        self.invert = f.take("invert", bool)

    def __call__(self, pieces: list[Piece]) -> list[Piece]:
        return [q for p in pieces for q in split_by(self.pattern, p, self.behavior, self.invert)]


class Metaspace:
    """``pre_tokenizers/metaspace.rs``: spaces become the replacement ▁; a ▁ goes before a
    piece not starting with one (``always``; ``first``: only the piece that starts the
    text; ``never``); then, if ``split``, each ▁ starts a new piece."""

    def __init__(self, f: Fields):
        self.replacement = f.take("replacement", str)
        if len(self.replacement) != 1:
            raise refuse(f.file, f.sub("replacement"), self.replacement, "expected one char")
        scheme = f.must_be("prepend_scheme", ("always", "first", "never"),
                           "expected always, first or never", "always")  # fmt: skip
        if f.take("add_prefix_space", (bool, type(None)), None) is False:  # the older field
            if scheme != "never":
                raise refuse(f.file, f.sub("add_prefix_space"), False,
                             f"contradicts prepend_scheme {scheme!r}")  # fmt: skip
        self.prepend_scheme = scheme
        self.split = f.take("split", bool, True)
        f.ignore("str_rep")  # derived from replacement
        self._pattern = regex.compile(regex.escape(self.replacement))

    def __call__(self, pieces: list[Piece]) -> list[Piece]:
        r, out = self.replacement, []
        for text, first in pieces:
            text = text.replace(" ", r)
            prepend = self.prepend_scheme == "always" or self.prepend_scheme == "first" and first
            if prepend and not text.startswith(r):
                text = r + text
            if self.split:
                out += split_by(self._pattern, (text, first), "MergedWithNext")
            elif text:
                out.append((text, first))
        return out


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's bijection bytes → printable characters: printable Latin-1 bytes map to
    themselves, the other 68 to U+0100 onwards (so no byte becomes whitespace or control)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    moved = [b for b in range(256) if b not in keep]
    return {b: chr(b) for b in keep} | {b: chr(256 + i) for i, b in enumerate(moved)}


_IMAGE = byte_to_unicode()
