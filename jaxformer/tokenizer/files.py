"""Tokenizer files: (ranks, pattern, special tokens) ↔ a directory of two files, no pickle.

    PATH/vocab.tiktoken   ``base64(token) SPACE rank\\n`` per token, in rank order: byte for
                          byte the format of tiktoken's ``.tiktoken`` files (e.g. gpt2.tiktoken),
                          so ``tiktoken.load.load_tiktoken_bpe`` reads it too.
    PATH/tokenizer.json   {"format": "jaxformer-tokenizer", "version": 1, "pattern": <regex>,
                           "special_tokens": {<str>: <id>}, "ranks_sha256": <hex of vocab.tiktoken>}

Reading checks every line and every field, and raises ValueError naming the file, the line
and the fix. Each file is written atomically (temp file + os.replace); the ranks go first and
the header last, and the header holds the ranks' sha256, so a save interrupted between the two,
or a ranks file edited or truncated later, is refused at load instead of decoding wrongly.
"""

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from ..atomic import write_atomic

FORMAT = "jaxformer-tokenizer"
VERSION = 1
RANKS_FILE = "vocab.tiktoken"
HEADER_FILE = "tokenizer.json"
_HEADER_KEYS = {"format", "version", "pattern", "special_tokens", "ranks_sha256"}
_FIX_RANKS = "the file is corrupt or not a .tiktoken ranks file: re-create or re-download it"


def format_ranks(ranks: dict[bytes, int]) -> bytes:
    """The ``.tiktoken`` text of ``ranks``, one ``base64 rank`` line per token in rank order."""
    by_rank = sorted(ranks.items(), key=lambda item: item[1])
    return b"".join(base64.b64encode(token) + b" %d\n" % rank for token, rank in by_rank)


def parse_ranks(data: bytes, name: str) -> dict[bytes, int]:
    """``.tiktoken`` text → ranks. Checks each line; ``name`` (the file) goes in the errors."""
    if not data:
        raise ValueError(f"{name}: the ranks file is empty; {_FIX_RANKS}")
    if not data.endswith(b"\n"):
        raise ValueError(f"{name}: the last line has no newline (truncated?); {_FIX_RANKS}")
    ranks: dict[bytes, int] = {}
    line_of_rank: dict[int, int] = {}
    for lineno, line in enumerate(data[:-1].split(b"\n"), start=1):
        field, space, number = line.partition(b" ")
        if not space or not number.isdigit():
            raise ValueError(
                f"{name}:{lineno}: expected '<base64 token> <rank>', got "
                f"{line[:60]!r}; {_FIX_RANKS}"
            )
        try:
            token = base64.b64decode(field, validate=True)
        except binascii.Error:
            token = b""
        if not token or base64.b64encode(token) != field:
            raise ValueError(
                f"{name}:{lineno}: {field[:60]!r} is not the base64 of a non-empty "
                f"token; {_FIX_RANKS}"
            )
        rank = int(number)
        if token in ranks:
            raise ValueError(
                f"{name}:{lineno}: token {token!r} is listed twice (also rank "
                f"{ranks[token]}); {_FIX_RANKS}"
            )
        if rank in line_of_rank:
            raise ValueError(
                f"{name}:{lineno}: rank {rank} is given twice (also line "
                f"{line_of_rank[rank]}); {_FIX_RANKS}"
            )
        ranks[token] = rank
        line_of_rank[rank] = lineno
    return ranks


def read_ranks(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[bytes, int]:
    """Ranks from a ``.tiktoken`` file, checked line by line and, if given, by sha256."""
    data = Path(path).read_bytes()
    if expected_sha256 is not None and (digest := _sha256(data)) != expected_sha256.lower():
        raise ValueError(
            f"{path}: sha256 is {digest}, expected {expected_sha256}; the file is "
            f"corrupt or a different vocabulary: re-download it"
        )
    return parse_ranks(data, str(path))


def save(
    path: str | os.PathLike, ranks: dict[bytes, int], pattern: str, special_tokens: dict[str, int]
) -> None:
    """Write the tokenizer directory ``path`` (created if missing; existing files replaced)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    data = format_ranks(ranks)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "pattern": pattern,
        "special_tokens": special_tokens,
        "ranks_sha256": _sha256(data),
    }
    write_atomic(path / RANKS_FILE, data)
    write_atomic(path / HEADER_FILE, (json.dumps(header, indent=2) + "\n").encode())


def load(path: str | os.PathLike) -> tuple[dict[bytes, int], str, dict[str, int]]:
    """Read a directory written by ``save`` → (ranks, pattern, special_tokens), all checked
    here except the vocabulary as a whole (contiguity, bytes, id clashes: the caller's)."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(
            f"{path}: not a tokenizer directory (expected {HEADER_FILE} and "
            f"{RANKS_FILE} inside, as written by Tokenizer.save); for a bare "
            f".tiktoken file use Tokenizer.from_tiktoken_file"
        )
    for name in (HEADER_FILE, RANKS_FILE):
        if not (path / name).is_file():
            raise ValueError(
                f"{path}: not a tokenizer directory ({name} is missing; Tokenizer.save writes "
                f"{HEADER_FILE} and {RANKS_FILE}, the header last)"
            )
    header = _read_header(path / HEADER_FILE)
    data = (path / RANKS_FILE).read_bytes()
    if _sha256(data) != header["ranks_sha256"]:
        raise ValueError(
            f"{path / RANKS_FILE}: sha256 does not match {HEADER_FILE} (the ranks "
            f"were edited, truncated or half-written); save the tokenizer again"
        )
    return parse_ranks(data, str(path / RANKS_FILE)), header["pattern"], header["special_tokens"]


def _read_header(path: Path) -> dict:
    fix = "re-save the tokenizer with Tokenizer.save"
    try:
        header = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); {fix}") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(
            f'{path}: not a jaxformer tokenizer header (no "format": "{FORMAT}"); {fix}'
        )
    if header.get("version") != VERSION:
        raise ValueError(
            f"{path}: unknown format version {header.get('version')!r}; this "
            f"jaxformer reads version {VERSION}: upgrade jaxformer or {fix}"
        )
    if set(header) != _HEADER_KEYS:
        raise ValueError(
            f"{path}: expected the keys {sorted(_HEADER_KEYS)}, got {sorted(header)}; {fix}"
        )
    specials = header["special_tokens"]
    if not isinstance(header["pattern"], str) or not isinstance(header["ranks_sha256"], str):
        raise ValueError(f'{path}: "pattern" and "ranks_sha256" must be strings; {fix}')
    if not isinstance(specials, dict) or not all(type(i) is int for i in specials.values()):
        raise ValueError(
            f'{path}: "special_tokens" must map strings to integer ids, got {specials!r}; {fix}'
        )
    return header


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
