"""Pre-token counting: corpus → multiset of pieces, the one pass over the text in training.

    count(D) = Σ_{d ∈ D} Σ_{s ∈ segments(d)} Σ_{p ∈ split_P(s)} [utf8(p)]   ∈ ℕ^(bytes)

where segments(d) are the stretches of document d between special tokens, so that no
piece, hence no merge, ever spans a special token. Documents are never split into pieces
across each other. The pieces must cover each segment: a pattern that drops characters
(``[a-z]+`` drops the spaces) would train a tokenizer that loses text, and is refused.

For parallel counting, long segments are cut into chunks of about ``CHUNK_CHARS`` at a
newline between two non-space characters. For the named patterns every such newline ends a
piece and no lookahead crosses it, so the counts equal those of the uncut text (for a custom
pattern a cut acts as a document boundary). The cuts depend only on the text, never on the
number of processes, so the counts, and the merges learned from them, do too.
"""

import functools
import multiprocessing
import re
from collections import Counter
from collections.abc import Iterable, Iterator

import regex
from tqdm import tqdm

from .encode import repair_surrogates
from .patterns import compile_pattern
from .unicode16 import differs, finditer_16

CHUNK_CHARS = 1 << 20
_CUT = regex.compile(r"(?<=\S)\n(?=\S)")


def chunks(text: str, size: int = CHUNK_CHARS) -> Iterator[str]:
    """Cut ``text`` at the first safe newline after every ``size`` chars (see module doc)."""
    start = 0
    while len(text) - start > size and (cut := _CUT.search(text, start + size)) is not None:
        yield text[start : cut.end()]
        start = cut.end()
    yield text[start:]


def count_pretokens(
    texts: Iterable[str],
    pattern: str,
    special_tokens: Iterable[str] = (),
    processes: int = 1,
    progress: bool = False,
) -> Counter[bytes]:
    """count(texts) for a regex ``pattern`` string; ``processes`` > 1 counts chunks in parallel."""
    batches = _batches(texts, tuple(special_tokens))
    count = functools.partial(_count, pattern)
    bar = _bar(progress)
    total: Counter[str] = Counter()
    if processes == 1:
        results = map(count, batches)
        pool = None
    else:
        # fork, not spawn: a spawned worker would re-import jaxformer (and with it jax) only
        # to run a regex; the workers touch nothing but regex and Counter.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        pool = context.Pool(processes)
        results = pool.imap_unordered(count, batches)
    try:
        for n_chars, counts in results:
            total.update(counts)
            bar.update(n_chars)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    return Counter({piece.encode("utf-8"): n for piece, n in total.items()})


def _batches(texts: Iterable[str], special_tokens: tuple[str, ...]) -> Iterator[list[str]]:
    # Groups of chunks of about CHUNK_CHARS: one task per MiB keeps inter-process traffic small.
    if special_tokens:
        alternatives = sorted(special_tokens, key=lambda s: (-len(s), s))
        split = re.compile("|".join(map(re.escape, alternatives))).split
    else:
        split = lambda doc: [doc]
    batch, size = [], 0
    for doc in texts:
        if not isinstance(doc, str):
            raise TypeError(f"training texts must be str, got {type(doc).__name__}")
        try:
            doc.encode("utf-8")
        except UnicodeEncodeError:
            doc = repair_surrogates(doc)  # as encode does, so training sees what encode sees
        for segment in split(doc):
            for chunk in chunks(segment, CHUNK_CHARS):
                batch.append(chunk)
                size += len(chunk)
                if size >= CHUNK_CHARS:
                    yield batch
                    batch, size = [], 0
    if batch:
        yield batch


def _count(pattern: str, batch: list[str]) -> tuple[int, Counter[str]]:
    compiled = compile_pattern(pattern)
    counts: Counter[str] = Counter()
    for chunk in batch:
        pieces = Counter(compiled.findall(chunk))
        if not chunk.isascii() and any(map(differs, pieces)):  # split as tiktoken would
            pieces = Counter(finditer_16(compiled, chunk))
        if sum(len(p) * n for p, n in pieces.items()) != len(chunk):
            _refuse_lossy(pattern, compiled, chunk)
        counts.update(pieces)
    return sum(map(len, batch)), counts


def _refuse_lossy(pattern: str, compiled, chunk: str):
    """A pattern whose pieces miss characters of the text would make decode(encode(s)) ≠ s:
    refused, naming the first character it misses."""
    at = 0
    for m in compiled.finditer(chunk):
        if m.start() != at:
            break
        at = m.end()
    c = chunk[at] if at < len(chunk) else ""
    raise ValueError(
        f"pattern {pattern!r} drops text: {c!r} (U+{ord(c or ' '):04X}) in "
        f"{chunk[max(0, at - 10) : at + 10]!r} lies in no piece, so decode(encode(text)) would "
        "lose it; use a pattern whose pieces cover every character (e.g. add |\\s+|. at its end)"
    )


def _bar(progress: bool) -> tqdm:
    return tqdm(desc="count pre-tokens", unit="char", unit_scale=True, disable=not progress)
