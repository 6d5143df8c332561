"""HF tokenizer files → the ``tokenizer.json`` object they define, and where it came from.

    read_spec(path) = (spec, file)   path: a directory holding ``tokenizer.json`` (preferred,
                                     as transformers does) or ``vocab.json`` + ``merges.txt``,
                                     or one of those files

The pair is GPT-2's format (``models.BPE.save`` writes it; ``#version`` lines skipped, one
``a b`` merge a line): it is read as the pipeline ``GPT2TokenizerFast`` builds around it,
byte-level with HF's GPT-2 regex and no prefix space, ``<|endoftext|>`` a special token if
the vocabulary has it, so that it becomes one ``tokenizer.json`` object like any other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TOKENIZER_JSON = "tokenizer.json"


def read_spec(path: str | os.PathLike) -> tuple[dict, str]:
    """The ``tokenizer.json`` object of ``path`` and the file to name in errors."""
    p = Path(path)
    if p.is_dir():
        if (p / TOKENIZER_JSON).is_file():
            return read_json(p / TOKENIZER_JSON), str(p / TOKENIZER_JSON)
        if (p / "vocab.json").is_file() and (p / "merges.txt").is_file():
            return pair_spec(p / "vocab.json", p / "merges.txt")
        raise ValueError(
            f"{p}: holds neither {TOKENIZER_JSON} nor vocab.json + merges.txt; pass the "
            f"directory an HF tokenizer was saved to (save_pretrained, Tokenizer.save)"
        )
    if p.is_file():
        if p.name in ("vocab.json", "merges.txt"):
            return pair_spec(p.with_name("vocab.json"), p.with_name("merges.txt"))
        return read_json(p), str(p)
    raise FileNotFoundError(
        f"{p}: no such file or directory; pass a {TOKENIZER_JSON}, a vocab.json or a "
        f"directory holding them"
    )


def read_json(path: Path) -> dict:
    """The JSON in ``path``; a jaxformer tokenizer header is pointed to ``Tokenizer.load``."""
    try:
        spec = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); re-save the tokenizer") from e
    if isinstance(spec, dict) and spec.get("format") == "jaxformer-tokenizer":
        raise ValueError(f"{path}: a jaxformer tokenizer, not an HF one: use Tokenizer.load")
    return spec


def pair_spec(vocab_file: Path, merges_file: Path) -> tuple[dict, str]:
    """vocab.json + merges.txt → the ``tokenizer.json`` of GPT-2's byte-level pipeline."""
    for p in (vocab_file, merges_file):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing; vocab.json and merges.txt go together")
    vocab = read_json(vocab_file)
    if not isinstance(vocab, dict):
        raise ValueError(f"{vocab_file}: expected a JSON object token → id")
    try:
        text = merges_file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{merges_file}: not UTF-8 ({e})") from e
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # as Rust's lines(): no empty line after the last newline
    merges = [line.removesuffix("\r") for line in lines if not line.startswith("#version")]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}  # fmt: skip
    eot = "<|endoftext|>"
    flags = dict(single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
    added = [{"id": vocab[eot], "content": eot, **flags}] if eot in vocab else []
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": None,
        "decoder": byte_level,
        # a merges line of other than 2 parts is refused when the spec is read
        "model": bpe_model(vocab, [m.split(" ") for m in merges], ignore_merges=False),
    }
    return spec, f"{vocab_file} + {merges_file.name}"


def bpe_model(vocab: dict, merges: list, ignore_merges: bool) -> dict:
    """The ``model`` object of a byte-level BPE ``tokenizer.json``: no unknown token, no
    byte fallback, no dropout (every byte is in the vocabulary)."""
    return {
        "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
        "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
        "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges,
    }  # fmt: skip
