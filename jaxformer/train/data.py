"""Text → tokens, once: corpus → train/val split → tokenizer → token files.

    text ─split─▶ (train_text, val_text) ─τ─▶ (train.bin, val.bin) ∈ V^N

The tokenizer is trained on the train split only (or loaded), and each split is
encoded separately, so the val tokens decode to exactly the val text: bits per
byte are measured on bytes the model never saw. Everything is cached under
``cache/<hash>/``, keyed by a hash of the corpus and the tokenizer settings, so a
second run reads the token files instead of re-encoding; the directory is built
in a temporary place, sealed with a ``SHA256SUMS`` of its files and renamed, so a
half-built cache is never used, and every use verifies it first (a damaged one is
refused, naming the file).

Documents (``packing.py``: JSONL records, or with ``--pack`` each file of a folder) are split
by record, the last ones held out, and each tokenized alone and ended by the end-of-text
token; their table of lengths (``train.docs.npy``, ``val.docs.npy``) sits beside the token
files, and the run packs them into windows.

A token file is ``MAGIC ‖ uint32 n ‖ JSON header (n bytes) ‖ tokens``: the header
holds the dtype (uint16 when V ≤ 65536, else uint32), the token count, the
vocabulary size and the tokenizer's sha256, and ``read_tokens`` checks the file
against all of them before memory-mapping it.
"""

from __future__ import annotations

import bz2
import hashlib
import importlib.resources
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import rundir
from ..atomic import MANIFEST, Damaged, atomic_open, verify_manifest, write_manifest
from ..interop import is_hf_dir
from ..tokenizer import HFTokenizer, Tokenizer
from ..tokenizer.files import format_ranks
from . import packing
from .config import TrainConfig
from .packing import Tokenized

MAGIC = b"JXTOKENS"
FORMAT_VERSION = 1
_ALIGN = 64  # token data starts on a 64-byte boundary


class DataError(ValueError):
    """The corpus, a tokenizer or a token file cannot be used; the message says why and the fix."""


@dataclass(frozen=True)
class Corpus:
    """A prepared corpus: the tokenizer and both splits as memory-mapped token arrays."""

    tokenizer: Tokenizer | HFTokenizer
    train: np.ndarray  # [N_train] uint16|uint32
    val: np.ndarray  # [N_val]
    token_bytes: np.ndarray  # [V] int64: the bytes of text each id stands for (bits per byte)
    val_text: str
    bzip2_bpb: float  # 8 · |bzip2 -9 (val bytes)| / |val bytes|, the baseline to beat
    source: str  # where the text came from
    dir: Path  # the cache directory holding the token files
    tokenizer_sha256: str  # the tokenizer's hash, computed once (checkpoints record it)
    train_docs: Tokenized | None = None  # documents to pack (train holds their ids), or None
    val_docs: Tokenized | None = None


def bundled_corpus() -> Path:
    """The bundled default corpus: Shakespeare's plays (Project Gutenberg, public domain)."""
    return Path(str(importlib.resources.files("jaxformer") / "data" / "shakespeare.txt"))


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file, or every file below a folder (sorted by path) joined by blank lines."""
    text = "\n\n".join(read_texts(path))
    if not text.strip():
        raise DataError(f"--data {str(path)!r}: the text is empty")
    return text


def read_texts(path: str | os.PathLike) -> list[str]:
    """The UTF-8 text of a file, or of each file below a folder (sorted by path)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"--data {str(path)!r}: no such file or folder")
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if _visible_file(f, p))
    if not files:
        raise DataError(f"--data {str(path)!r}: the folder holds no files")
    texts = []
    for f in files:
        try:
            texts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(
                f"--data: {f} is not UTF-8 text ({e.reason} at byte {e.start}); "
                "convert it to UTF-8 or leave it out"
            ) from None
        except OSError as e:
            raise DataError(f"--data: cannot read {f} ({e.strerror or e}); check it") from None
    return texts


def read_documents(path: Path) -> list[tuple[str, str]]:
    """(prompt, response) records: a JSONL file's lines, or each (non-empty) text file's text."""
    try:
        if packing.is_jsonl(path):
            return packing.read_jsonl(path)
    except (OSError, packing.DocumentError) as e:
        raise DataError(str(e)) from None
    docs = [("", t) for t in read_texts(path) if t.strip()]
    if not docs:
        raise DataError(f"--data {str(path)!r}: the text is empty")
    return docs


def _visible_file(f: Path, root: Path) -> bool:
    return f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts)


def bzip2_bits_per_byte(data: bytes) -> float:
    """8 · |bzip2 -9 (data)| / |data|: a general-purpose compressor's bits per byte, the
    baseline a model's bits per byte must beat on the same text."""
    return 8 * len(bz2.compress(data, 9)) / len(data)


def split(text: str, val_fraction: float) -> tuple[str, str]:
    """(train, val): val is the tail, cut at the line break nearest the requested fraction."""
    cut = int(len(text) * (1 - val_fraction))
    nl = text.rfind("\n", 0, cut)
    cut = nl + 1 if nl > 0 else cut
    return text[:cut], text[cut:]


def tokenizer_sha256(tok: Tokenizer | HFTokenizer) -> str:
    """A hash of what the tokenizer computes: its pattern, special tokens and ranks (an HF
    tokenizer: its tokenizer.json, canonically written)."""
    if isinstance(tok, HFTokenizer):
        spec = json.dumps(tok.tokenizer_json(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(spec.encode()).hexdigest()
    h = hashlib.sha256(json.dumps([tok.pattern, tok.special_tokens], sort_keys=True).encode())
    h.update(format_ranks(dict(tok.mergeable_ranks)))
    return h.hexdigest()


def id_bytes(tok: Tokenizer | HFTokenizer, ids) -> np.ndarray:
    """[len(ids)] int64: |decode_bytes([i])| of each id i, the bytes it decodes to (a special
    token's as its text)."""
    return np.array([len(tok.decode_bytes([int(i)])) for i in ids], np.int64)


def token_bytes(tok: Tokenizer | HFTokenizer) -> np.ndarray:
    """[V] int64: the bytes of text each id stands for, ``id_bytes`` (bits per byte); 0 for
    the special tokens, which stand for no text (and are not decoded)."""
    special = set(tok.special_tokens.values())
    ordinary = [i for i in range(tok.n_vocab) if i not in special]
    out = np.zeros(tok.n_vocab, np.int64)
    out[ordinary] = id_bytes(tok, ordinary)
    return out


# -- token files ----------------------------------------------------------------------------
def write_tokens(path: Path, ids: np.ndarray, vocab_size: int, tokenizer_hash: str) -> None:
    """Write ``ids`` with its header, atomically."""
    dtype = np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)
    header = {
        "format": "jaxformer-tokens", "version": FORMAT_VERSION, "dtype": dtype.name,
        "n_tokens": int(ids.size), "vocab_size": int(vocab_size),
        "tokenizer_sha256": tokenizer_hash,
    }  # fmt: skip
    body = json.dumps(header).encode()
    body += b" " * (-(len(MAGIC) + 4 + len(body)) % _ALIGN)
    with atomic_open(path) as f:
        f.write(MAGIC + struct.pack("<I", len(body)) + body)
        f.write(np.ascontiguousarray(ids, dtype).tobytes())


def read_tokens(
    path: Path, vocab_size: int | None = None, tokenizer_hash: str | None = None
) -> np.ndarray:
    """Memory-map a token file after checking its header, its size and its ids."""

    def bad(why: str) -> DataError:
        return DataError(f"token file {path}: {why}; delete it (and its folder) to rebuild it")

    if not path.is_file():
        raise DataError(f"token file {path} is missing; delete its folder to rebuild it")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(len(MAGIC) + 4)
        if len(head) < len(MAGIC) + 4 or head[: len(MAGIC)] != MAGIC:
            raise bad("not a jaxformer token file (bad magic)")
        (n,) = struct.unpack("<I", head[len(MAGIC) :])
        try:
            header = json.loads(f.read(n))
            dtype = np.dtype(header["dtype"])
            n_tokens, vocab = int(header["n_tokens"]), int(header["vocab_size"])
            file_hash = header["tokenizer_sha256"]
        except (ValueError, KeyError, TypeError) as e:
            raise bad(f"unreadable header ({e})") from None
    if dtype not in (np.uint16, np.uint32):
        raise bad(f"dtype {dtype} is not uint16 or uint32")
    offset = len(MAGIC) + 4 + n
    if (size - offset) % dtype.itemsize:
        raise bad(f"{size - offset} data bytes is not a multiple of the {dtype} size")
    if (size - offset) // dtype.itemsize != n_tokens:
        raise bad(f"holds {(size - offset) // dtype.itemsize} tokens, the header says {n_tokens}")
    if vocab_size is not None and vocab != vocab_size:
        raise bad(f"was written for a vocabulary of {vocab}, the tokenizer has {vocab_size}")
    if tokenizer_hash is not None and file_hash != tokenizer_hash:
        raise bad("was written by a different tokenizer (sha256 mismatch)")
    ids = np.memmap(path, dtype, "r", offset, (n_tokens,))
    if n_tokens and int(ids.max()) >= vocab:
        raise bad(f"holds token id {int(ids.max())}, outside the vocabulary [0, {vocab})")
    return ids


# -- the pipeline ---------------------------------------------------------------------------
def prepare(cfg: TrainConfig, log=print, tokenizer=None) -> Corpus:
    """Read, split, tokenize and cache the corpus of ``cfg`` (or reuse the cache), with
    ``tokenizer``, else that of ``--tokenizer`` or ``--init-from``, else a BPE trained on
    the train split."""
    source = Path(cfg.data) if cfg.data else bundled_corpus()
    as_docs = cfg.pack or packing.is_jsonl(source)
    if as_docs:
        records = read_documents(source)
        try:
            parts = packing.split_documents(records, cfg.val_fraction)
        except packing.DocumentError as e:
            raise DataError(str(e)) from None
        text = json.dumps(records, ensure_ascii=False)  # what the cache key hashes
        train_text, val_text = ("\n\n".join(p + r for p, r in part) for part in parts)
    else:
        text = read_text(source)
        train_text, val_text = split(text, cfg.val_fraction)
        parts = None
    loaded = tokenizer
    if loaded is None and (cfg.tokenizer or cfg.init_from):
        flag = "--tokenizer" if cfg.tokenizer else "--init-from"
        loaded = load_tokenizer(cfg.tokenizer or cfg.init_from, flag)
    settings = {
        "version": FORMAT_VERSION,
        "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "val_fraction": cfg.val_fraction,
        "tokenizer": tokenizer_sha256(loaded) if loaded else {"vocab_size": cfg.vocab_size},
    } | ({"documents": True} if as_docs else {})
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cfg.cache) / key
    if not (folder / MANIFEST).is_file():
        _check_cache(Path(cfg.cache))
        log(f"preparing {source} → {folder} (tokenizer and token files, once)")
        _build(folder, train_text, val_text, loaded, cfg.vocab_size, settings, parts)
    try:
        verify_manifest(folder)
    except Damaged as e:
        raise DataError(f"{e}: the cache is damaged; delete it ({folder}) to rebuild it") from None
    meta = json.loads((folder / "meta.json").read_text())
    tok = load_tokenizer(folder / "tokenizer")
    h = tokenizer_sha256(tok)
    train = read_tokens(folder / "train.bin", tok.n_vocab, h)
    val = read_tokens(folder / "val.bin", tok.n_vocab, h)
    bpb = meta["bzip2_bpb"]
    if as_docs:
        docs = [_documents(folder, name, ids) for name, ids in (("train", train), ("val", val))]
        return Corpus(tok, train, val, token_bytes(tok), val_text, bpb, str(source), folder, h,
                      *docs)  # fmt: skip
    for name, ids in (("train", train), ("val", val)):
        if ids.size < cfg.context + 2:
            raise DataError(
                f"the {name} split has {ids.size} tokens, too few for --context "
                f"{cfg.context}: use more text, a shorter context or another --val_fraction"
            )
    return Corpus(tok, train, val, token_bytes(tok), val_text, bpb, str(source), folder, h)


def _documents(folder: Path, name: str, ids: np.ndarray) -> Tokenized:
    try:
        table = np.load(folder / f"{name}.docs.npy", allow_pickle=False)
        return Tokenized(ids, table)
    except (OSError, ValueError) as e:
        raise DataError(f"{folder}/{name}.docs.npy: {e}; delete {folder} to rebuild it") from None


def load_tokenizer(path, flag: str = "--tokenizer") -> Tokenizer | HFTokenizer:
    """The tokenizer in ``path``: a tokenizer directory (``save``'s), an HF model directory
    (tokenizer.json, or vocab.json + merges.txt) or a run (its ``tokenizer/``)."""
    p = Path(path)
    try:
        if is_hf_dir(p):
            return Tokenizer.from_hf(p)
        return rundir.load_tokenizer(p / "tokenizer" if (p / "config.json").is_file() else p)
    except (OSError, ValueError) as e:
        raise DataError(f"{flag} {str(path)!r}: cannot load its tokenizer ({e})") from None


def _check_cache(cache: Path) -> None:
    """Refuse a --cache that is a file or cannot be written, before anything is built."""
    p = cache
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise DataError(f"--cache {cache}: {p} is a file, not a directory; choose another --cache")
    if not os.access(p, os.W_OK | os.X_OK):
        raise DataError(
            f"--cache {cache}: {p} is not writable (permission denied); choose a writable --cache"
        )


def _build(folder: Path, train_text, val_text, tok, vocab_size: int, settings, parts=None):
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the cache private to one user
    try:
        if tok is None:
            tok = Tokenizer.train(train_text, vocab_size)
        tok.save(tmp / "tokenizer")
        h = tokenizer_sha256(tok)
        encode = (
            tok.to_tiktoken().encode_ordinary if isinstance(tok, Tokenizer) else tok.encode_ordinary
        )
        if parts is None:
            for name, part in (("train", train_text), ("val", val_text)):
                write_tokens(tmp / f"{name}.bin", np.asarray(encode(part)), tok.n_vocab, h)
        else:
            try:
                eos = packing.eos_id(tok)
            except packing.DocumentError as e:
                raise DataError(str(e)) from None
            for name, part in zip(("train", "val"), parts):
                docs = packing.tokenize(part, encode, eos)
                write_tokens(tmp / f"{name}.bin", docs.ids, tok.n_vocab, h)
                with atomic_open(tmp / f"{name}.docs.npy") as f:
                    np.save(f, docs.table, allow_pickle=False)
        val_bytes = val_text.encode()
        bpb = bzip2_bits_per_byte(val_bytes)
        meta = {**settings, "bzip2_bpb": bpb, "n_vocab": tok.n_vocab}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        write_manifest(tmp)  # last: a folder with a manifest is complete
        if folder.exists() and not (folder / MANIFEST).is_file():
            shutil.rmtree(folder)  # not ours to keep: a cache folder someone broke by hand
        try:
            os.replace(tmp, folder)
        except OSError:  # another process built it first: theirs is as good as ours
            if not (folder / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
