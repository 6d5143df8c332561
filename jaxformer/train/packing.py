"""Documents → packed windows: each window holds whole documents, each seen as if alone.

    documents (prompt_i, response_i) ─τ─▶ d_i = τ(prompt_i) ‖ τ(response_i) ‖ eos ∈ V^{n_i}
    pieces    a d_i longer than a window (T+1) is cut into pieces of T+1 (each its own document)
    windows   best-fit decreasing: the longest piece first, into the window it fills most
              tightly; a window's documents are numbered s = 1, 2, … and its tail padded (s = 0)

Targets: token t + 1 is trained (predicted from token t) when both lie in one document and
t + 1 is not in its prompt: the loss of a chat- or instruction-style record covers its
response (and the eos after it), that of a plain document all of it but its first token.
The model sees each window through ``core.documents``: attention stays inside each document
and positions restart, so a packed window's losses are each document's own. The efficiency
is the fraction of window slots that hold a token rather than padding.

Documents come from JSONL (one object per line: ``{"text": …}`` or ``{"prompt": …,
"response": …}``), or, with ``--pack``, from a folder of text files (one document each).
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

# the end-of-document token, by the names tokenizers give it (tried in this order)
EOS_NAMES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|im_end|>")


class DocumentError(ValueError):
    """A documents file cannot be read; the message names the line and the fix."""


class Windows(NamedTuple):
    """Packed windows (a pytree: leading axes are the batch's).

    tokens [..., T+1] int32; segments [..., T+1] int32 (the document of each slot, 1, 2, …
    per window; 0 padding); trained [..., T] bool (target t + 1 counts in the loss)."""

    tokens: np.ndarray
    segments: np.ndarray
    trained: np.ndarray

    def reshape(self, *shape):
        """Each leaf's leading axes reshaped (the last, the window's own, kept)."""
        return Windows(*(a.reshape(*shape, a.shape[-1]) for a in self))


@dataclass(frozen=True)
class Tokenized:
    """Tokenized documents: ids [N] concatenated, and per document (length, prompt length)."""

    ids: np.ndarray  # [N] int
    table: np.ndarray  # [n_docs, 2] int64: (n_i, its prompt's n)

    def __post_init__(self):
        t = self.table
        if t.ndim != 2 or t.shape[1] != 2 or t[:, 0].sum() != len(self.ids):
            raise DocumentError("documents: the table does not describe the ids; rebuild the cache")


# -- reading ------------------------------------------------------------------------------------
def is_jsonl(path: str | Path) -> bool:
    return Path(path).suffix.lower() in (".jsonl", ".ndjson")


def read_jsonl(path: str | Path) -> list[tuple[str, str]]:
    """(prompt, response) per line: ``{"prompt": p, "response": r}`` or ``{"text": t}`` (the
    prompt empty). Blank lines are skipped; anything else is refused, naming the line."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DocumentError(f"--data {path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"--data {path}, line {n}"
        try:
            r = json.loads(line)
        except ValueError as e:
            raise DocumentError(f"{where}: not JSON ({e.msg}); write one object per line") from None
        if not isinstance(r, dict):
            raise DocumentError(f"{where}: a {type(r).__name__}, not an object {{...}}")
        keys = set(r)
        if keys == {"text"} and isinstance(r["text"], str):
            records.append(("", r["text"]))
        elif keys == {"prompt", "response"} and all(isinstance(r[k], str) for k in keys):
            records.append((r["prompt"], r["response"]))
        else:
            raise DocumentError(
                f'{where}: keys {sorted(keys)}; a record is {{"text": str}} or '
                '{"prompt": str, "response": str}'
            )
        if not records[-1][1]:
            what = "text" if "text" in r else "response"
            raise DocumentError(f"{where}: the {what} is empty; drop the record")
    if not records:
        raise DocumentError(f"--data {path}: holds no records")
    return records


def split_documents(records: list, val_fraction: float) -> tuple[list, list]:
    """(train, val): val the last ⌈fraction · n⌉ records (at least one, and one to train)."""
    if len(records) < 2:
        raise DocumentError(
            f"--data: {len(records)} document; a run needs at least two (train and val)"
        )
    n_val = min(len(records) - 1, max(1, round(val_fraction * len(records))))
    return records[:-n_val], records[-n_val:]


def eos_id(tok) -> int:
    """The id that ends each document: the tokenizer's end-of-text token (``EOS_NAMES``)."""
    special = tok.special_tokens
    for name in EOS_NAMES:
        if name in special:
            return special[name]
    raise DocumentError(
        f"packing needs an end-of-text token to end each document; the tokenizer's special "
        f"tokens are {sorted(special)}, none of {list(EOS_NAMES)}"
    )


def tokenize(records: list[tuple[str, str]], encode, eos: int) -> Tokenized:
    """d_i = encode(prompt_i) ‖ encode(response_i) ‖ eos, with its prompt's length."""
    ids, table = [], []
    for prompt, response in records:
        p = encode(prompt) if prompt else []
        d = [*p, *encode(response), eos]
        ids.extend(d)
        table.append((len(d), len(p)))
    return Tokenized(np.asarray(ids, np.int64), np.asarray(table, np.int64).reshape(-1, 2))


# -- packing ------------------------------------------------------------------------------------
def pieces(table: np.ndarray, T1: int) -> list[tuple[int, int, int]]:
    """(start in the ids, length ≤ T1, prompt tokens in it) of each piece, in document order."""
    out, start = [], 0
    for n, n_prompt in table.tolist():
        for a in range(0, n, T1):
            m = min(T1, n - a)
            out.append((start + a, m, int(np.clip(n_prompt - a, 0, m))))
        start += n
    return out


def best_fit(lengths: list[int], T1: int) -> list[list[int]]:
    """Bins of capacity T1 holding the items (their indices), by best-fit decreasing: the
    longest first, each into the open bin with the least room that still fits it (ties: the
    oldest bin), else a new one. Deterministic in the lengths."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[int] = []  # the distinct free room of open bins, sorted
    by_free: dict[int, list[int]] = {}  # free room → the bins with it, oldest first
    for i in order:
        n = lengths[i]
        at = bisect.bisect_left(free, n)
        if at < len(free):
            room = free[at]
            b = by_free[room].pop(0)
            if not by_free[room]:
                del by_free[room]
                free.pop(at)
        else:
            room, b = T1, len(bins)
            bins.append([])
        bins[b].append(i)
        left = room - n
        if left > 0:
            if left not in by_free:
                bisect.insort(free, left)
                by_free[left] = []
            bisect.insort(by_free[left], b)
    return bins


def pack(docs: Tokenized, T: int) -> tuple[Windows, float]:
    """(the windows of T+1 slots holding every document, the efficiency: tokens / slots)."""
    T1 = T + 1
    parts = pieces(docs.table, T1)
    bins = best_fit([m for _, m, _ in parts], T1)
    W = len(bins)
    tokens = np.zeros((W, T1), np.int32)
    segments = np.zeros((W, T1), np.int32)
    response = np.zeros((W, T1), bool)  # the slot holds a token that is not its prompt's
    for w, members in enumerate(bins):
        at = 0
        for s, i in enumerate(sorted(members), 1):  # the window's documents in corpus order
            start, m, n_prompt = parts[i]
            tokens[w, at : at + m] = docs.ids[start : start + m]
            segments[w, at : at + m] = s
            response[w, at + n_prompt : at + m] = True
            at += m
    same = (segments[:, 1:] == segments[:, :-1]) & (segments[:, 1:] > 0)
    efficiency = float((segments > 0).mean()) if W else 0.0
    return Windows(tokens, segments, same & response[:, 1:]), efficiency
