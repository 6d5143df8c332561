"""HF ``tokenizers``' decoders: token strings → text, and each token's bytes mid-text.

    decode(t_1 … t_n) = ''.join(D_k ∘ … ∘ D_1 (t_1 … t_n))    (``Decoder::decode``)

each D a map of token lists, as in ``decoders/*.rs``: ByteLevel (the byte images back to
bytes, then UTF-8 with U+FFFD for invalid sequences), Metaspace (▁ → space; in the first
token ▁ is dropped unless prepend_scheme is never), Replace (a String pattern), ByteFallback
(runs of ``<0xNN>`` tokens → their bytes as UTF-8, else one U+FFFD per byte), Fuse (join)
and Strip (up to ``start``/``stop`` copies of a char off each token's ends). No decoder:
the tokens joined by spaces.

``token_bytes`` is the homomorphism ids → bytes used to stream or count bytes: each token's
bytes as it stands mid-text, i.e. the per-token maps above without the ones that look at
the ends of the text (Metaspace's first token, Strip). So decode(ids) and
utf8⁻¹(token_bytes(ids)) differ only at the start of the text (the ▁ the pre-tokenizer put
there) and where bytes are not UTF-8.
"""

from __future__ import annotations

import regex

from .hf_json import Fields, refuse
from .hf_text import byte_to_unicode, literal_pattern

_BYTE_TOKEN = regex.compile(r"<0x([0-9A-Fa-f]{2})>")


class Decoder:
    """A chain of token-list maps read from a ``tokenizer.json`` ``decoder`` field."""

    def __init__(self, spec, file: str):
        self.steps: list[tuple] = [] if spec is None else _steps(spec, file, "decoder")
        self.none = spec is None
        self._chars = {c: b for b, c in byte_to_unicode().items()}

    def decode(self, tokens: list[str], errors: str = "replace") -> str:
        """``Tokenizer::decode`` of the token strings (``errors`` for invalid UTF-8)."""
        if self.none:
            return " ".join(tokens)
        for step in self.steps:
            tokens = self._apply(step, tokens, errors)
        return "".join(tokens)

    def token_bytes(self, token: str) -> bytes:
        """The bytes ``token`` stands for mid-text (see the module docstring)."""
        data = token.encode("utf-8")
        for kind, *args in self.steps:
            if kind == "ByteLevel":
                text = data.decode("utf-8", "surrogateescape")
                data = self._byte_level(text)
            elif kind in ("Replace", "Metaspace"):
                old, new = args if kind == "Replace" else (args[0], " ")
                data = data.replace(old.encode("utf-8"), new.encode("utf-8"))
            elif kind == "ByteFallback" and (m := _BYTE_TOKEN.fullmatch(data.decode("latin-1"))):
                data = bytes([int(m.group(1), 16)])
        return data

    def _byte_level(self, token: str) -> bytes:
        # byte_level.rs: a token whose every char is a byte image → those bytes, else as is
        if all(c in self._chars for c in token):
            return bytes(self._chars[c] for c in token)
        return token.encode("utf-8", "surrogateescape")

    def _apply(self, step: tuple, tokens: list[str], errors: str) -> list[str]:
        kind, *args = step
        if kind == "ByteLevel":
            return [b"".join(map(self._byte_level, tokens)).decode("utf-8", errors)]
        if kind == "Metaspace":
            r, keep_first = args
            return [t.replace(r, "" if i == 0 and not keep_first else " ")
                    for i, t in enumerate(tokens)]  # fmt: skip
        if kind == "Replace":
            old, new = args
            return [t.replace(old, new) for t in tokens]
        if kind == "Fuse":
            return ["".join(tokens)]
        if kind == "Strip":
            return [_strip(t, *args) for t in tokens]
        return _byte_fallback(tokens, errors)


def _steps(spec, file: str, where: str) -> list[tuple]:
    f = Fields(spec, file, where)
    kind = f.take("type", str)
    if kind == "Sequence":
        steps = [s for i, d in enumerate(f.take("decoders", list))
                 for s in _steps(d, file, f"{where}.decoders[{i}]")]  # fmt: skip
    elif kind == "ByteLevel":
        f.ignore("add_prefix_space", "trim_offsets", "use_regex")  # unused when decoding
        steps = [("ByteLevel",)]
    elif kind == "Metaspace":
        r = f.take("replacement", str)
        scheme = f.take("prepend_scheme", str, "always")
        if f.take("add_prefix_space", (bool, type(None)), None) is False:
            scheme = "never"
        f.ignore("split", "str_rep")
        steps = [("Metaspace", r, scheme == "never")]
    elif kind == "Replace":
        steps = [("Replace", literal_pattern(f, "pattern"), f.take("content", str))]
    elif kind in ("ByteFallback", "Fuse"):
        steps = [(kind,)]
    elif kind == "Strip":
        content = f.take("content", str)
        if len(content) != 1:
            raise refuse(file, f.sub("content"), content, "expected one char")
        steps = [("Strip", content, f.take("start", int), f.take("stop", int))]
    else:
        raise refuse(file, f"{where}.type", kind, "this decoder is not implemented")
    f.done()
    return steps


def _strip(token: str, content: str, start: int, stop: int) -> str:
    """decoders/strip.rs: drop up to ``start`` leading and ``stop`` trailing ``content``."""
    i = 0
    while i < min(start, len(token)) and token[i] == content:
        i += 1
    j = len(token)
    while len(token) - j < stop and j > i and token[j - 1] == content:
        j -= 1
    return token[i:j]


def _byte_fallback(tokens: list[str], errors: str) -> list[str]:
    """decoders/byte_fallback.rs: a run of ``<0xNN>`` tokens → its bytes as one string if
    they are UTF-8, else one U+FFFD per byte (``errors="strict"`` raises instead)."""
    out, run = [], bytearray()

    def flush():
        if run:
            try:
                out.append(run.decode("utf-8"))
            except UnicodeDecodeError:
                if errors == "strict":
                    raise
                out.extend("\ufffd" * len(run))
            run.clear()

    for t in tokens:
        if len(t) == 6 and (m := _BYTE_TOKEN.fullmatch(t)):
            run.append(int(m.group(1), 16))
        else:
            flush()
            out.append(t)
    flush()
    return out
