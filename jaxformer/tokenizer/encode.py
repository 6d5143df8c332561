"""Byte-pair encoding by rank: the map str → V* applied between special tokens.

    τ_ord(s) = bpe(p_1) ‖ … ‖ bpe(p_n),   (p_1, …, p_n) = split_P(s),  bytes as UTF-8

    bpe(p) = [rank(p)]                         if p is itself a token,
           = repeat: merge the adjacent parts (a, b) of least rank(a ‖ b), leftmost on ties,
             until no adjacent pair is a token; then [rank(part) for each part].

Ranks are keyed by token bytes, exactly as tiktoken's ``CoreBPE``: the result equals
tiktoken's ids for the same ranks and pattern. Short pieces use a list scan (C-speed
``min``/``index``, quadratic but tiny); long pieces use a heap of candidate pairs over a
linked list of parts, O(n log n), so 1 MB of one letter encodes in seconds, not hours.
"""

import itertools
import operator
from heapq import heapify, heappop, heappush

import regex

from .unicode16 import differs, finditer_16

_NO_RANK = float("inf")  # compares above every rank, so min() never picks a non-token pair
_LONG_PIECE = 64  # bytes; measured: above this the heap's O(n log n) beats the scan's O(n^2)
_CACHE_PIECE = 256  # chars; longer pieces rarely repeat and would bloat the cache
_BYTES = [bytes([b]) for b in range(256)]


def bpe(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """bpe(piece) as ids; ``ranks`` must contain every single byte of ``piece``."""
    rank = ranks.get(piece)
    if rank is not None:
        return [rank]
    if len(piece) > _LONG_PIECE:
        return _bpe_long(piece, ranks)
    return _bpe_short(piece, ranks)


def _bpe_short(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    # pair[i] = rank(parts[i] ‖ parts[i+1]); after merging i, only pair[i-1] and pair[i] change.
    get = ranks.get
    parts = list(map(_BYTES.__getitem__, piece))
    pair = [get(a + b, _NO_RANK) for a, b in zip(parts, parts[1:])]
    while pair:
        best = min(pair)
        if best == _NO_RANK:
            break
        i = pair.index(best)  # the leftmost of the least-rank pairs, as tiktoken
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
        del pair[i]
        if i > 0:
            pair[i - 1] = get(parts[i - 1] + parts[i], _NO_RANK)
        if i < len(pair):
            pair[i] = get(parts[i] + parts[i + 1], _NO_RANK)
    return [ranks[p] for p in parts]


def _bpe_long(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    # Parts are byte spans [start, end[start]); a heap entry (rank, start, stop) proposes
    # merging the part at `start` with its right neighbour, which ends at `stop`. Ordering
    # by (rank, start) is tiktoken's "least rank, leftmost". Entries go stale when either
    # part merges elsewhere; they are skipped on pop (lazy deletion).
    n = len(piece)
    end = list(range(1, n + 1))
    prev = list(range(-1, n - 1))
    alive = [True] * n
    get = ranks.get
    heap = [(r, i, i + 2) for i in range(n - 1) if (r := get(piece[i : i + 2])) is not None]
    heapify(heap)
    while heap:
        _, i, stop = heappop(heap)
        j = end[i]
        if not alive[i] or j >= n or end[j] != stop:
            continue
        end[i] = stop
        alive[j] = False
        if stop < n:
            prev[stop] = i
            if (r := get(piece[i : end[stop]])) is not None:
                heappush(heap, (r, i, end[stop]))
        if (h := prev[i]) >= 0 and (r := get(piece[h:stop])) is not None:
            heappush(heap, (r, h, stop))
    ids, i = [], 0
    while i < n:
        ids.append(ranks[piece[i : end[i]]])
        i = end[i]
    return ids


def repair_surrogates(text: str) -> str:
    """Pair up surrogate halves and replace lone ones by U+FFFD, exactly as tiktoken does."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class OrdinaryEncoder:
    """τ_ord for fixed ranks and pattern, with a bounded cache piece → ids.

    The cache is a dict cleared when full: a hit costs one C-level lookup (an LRU's
    bookkeeping would cost more than most misses), and memory stays bounded. Only pieces
    checked against Unicode 16.0 (``unicode16.py``) enter it, so hits need no check.
    """

    def __init__(self, ranks: dict[bytes, int], pattern: regex.Pattern, cache_size: int = 1 << 16):
        self._ranks = ranks
        self._pattern = pattern
        self._cache: dict[str, tuple[int, ...]] = {}
        self._cache_size = cache_size

    def __call__(self, text: str) -> list[int]:
        """τ_ord(text). Raises UnicodeEncodeError on lone surrogates (the caller repairs)."""
        pieces = self._pattern.findall(text)
        found = list(map(self._cache.get, pieces))
        if None in found:  # C-level passes, and one bpe per distinct new piece
            missing = set(itertools.compress(pieces, map(operator.not_, found)))
            if any(map(differs, missing)):  # rare: Unicode newer than tiktoken's
                return self._encode_16(text)
            new = {piece: self._ids(piece) for piece in missing}
            found = map(new.get, pieces, found)
        return list(itertools.chain.from_iterable(found))

    def _encode_16(self, text: str) -> list[int]:
        ids = []
        for piece in finditer_16(self._pattern, text):
            ids += self._cache.get(piece) or self._ids(piece, cache=not differs(piece))
        return ids

    def _ids(self, piece: str, cache: bool = True) -> tuple[int, ...]:
        ids = tuple(bpe(piece.encode("utf-8"), self._ranks))
        if cache and len(piece) <= _CACHE_PIECE:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[piece] = ids
        return ids
