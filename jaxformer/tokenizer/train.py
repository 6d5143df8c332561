"""BPE training: pre-token counts → merges, each the most frequent adjacent pair.

    words: each counted piece w as a sequence of symbols, first its bytes (symbol = byte);
    step k = 0, 1, …, n_merges - 1:
        (a, b) = argmax over adjacent pairs of  Σ_w count(w) · #{i : w_i = a, w_{i+1} = b}
                 ties → the least (bytes(a), bytes(b)), compared as byte strings;
        z = 256 + k,  bytes(z) = bytes(a) ‖ bytes(b);
        in every word, replace each (a, b) by z, left to right.

The tie rule makes the merges a function of the counts alone: independent of dict order,
corpus order and process count. A pair whose bytes are already a token (reachable by two
different splits) is skipped, never merged: ranks are keyed by bytes, so a duplicate
could not be written down.

Incremental, never recounting the corpus: ``pairs`` holds the current pair counts and
``where`` the words each pair occurs in. A merge rewrites only the words in ``where[(a, b)]``
and adjusts ``pairs`` by their before/after difference. The best pair comes from a max-heap
with lazy deletion: counts of existing pairs only fall (a merge creates pairs only with the
new symbol z), so a popped entry whose count is stale is re-pushed with the current count,
and a popped entry whose count is current is the true maximum.
"""

from collections import defaultdict
from collections.abc import Mapping
from heapq import heapify, heappop, heappush

from tqdm import tqdm


def learn_merges(counts: Mapping[bytes, int], n_merges: int, progress: bool = False) -> list[bytes]:
    """The bytes of the first ``n_merges`` new tokens, in rank order (rank 256 + index).

    Stops early, returning fewer, when no adjacent pair is left to merge.
    """
    words = [list(piece) for piece in counts]  # symbols: 0..255 the bytes, 256 + k merge k
    freq = list(counts.values())
    token = [bytes([i]) for i in range(256)]
    known = set(token)
    pairs: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, word in enumerate(words):
        for pair in zip(word, word[1:]):
            pairs[pair] += freq[wi]
            where[pair].add(wi)
    heap = [(-c, token[a], token[b], a, b) for (a, b), c in pairs.items()]
    heapify(heap)
    merged: list[bytes] = []
    with tqdm(total=n_merges, desc="merge pairs", unit="merge", disable=not progress) as bar:
        while len(merged) < n_merges and heap:
            neg_count, left, right, a, b = heappop(heap)
            count = pairs[a, b]
            if count != -neg_count:
                if count > 0:
                    heappush(heap, (-count, left, right, a, b))
                continue
            if left + right in known:
                continue  # dropped for good: no other merge can raise its count again
            z = len(token)
            token.append(left + right)
            known.add(left + right)
            merged.append(left + right)
            born = set()
            for wi in where.pop((a, b)):
                old = words[wi]
                new = _replace(old, a, b, z)
                if len(new) == len(old):
                    continue  # (a, b) left this word through an earlier merge
                f = freq[wi]
                for pair in zip(old, old[1:]):
                    pairs[pair] -= f
                for pair in zip(new, new[1:]):
                    pairs[pair] += f
                    if z in pair:
                        where[pair].add(wi)
                        born.add(pair)
                words[wi] = new
            for pair in born:
                heappush(heap, (-pairs[pair], token[pair[0]], token[pair[1]], *pair))
            bar.update()
    return merged


def _replace(word: list[int], a: int, b: int, z: int) -> list[int]:
    """``word`` with each (a, b) replaced by z, scanning left to right."""
    out, i, n = [], 0, len(word)
    while i < n:
        if word[i] == a and i + 1 < n and word[i + 1] == b:
            out.append(z)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out
