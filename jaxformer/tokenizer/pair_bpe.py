"""Byte-pair encoding by pair priority: the merge rule of HF ``tokenizers``' BPE model.

    merges: (a, b) ↦ (π, c)    the k-th line "a b" of the merges list gives π(a, b) = k and
                               c = id(a ‖ b); a later line for the same pair overrides
    bpe_π(x_1 … x_n) = repeat: among adjacent symbols (x_i, x_{i+1}) with a merge, take the
                       one of least (π(x_i, x_{i+1}), i) and replace the two by c;
                       until no adjacent pair has a merge

The priority belongs to the *pair*, not to the token it makes: ``tiktoken`` (``encode.py``)
merges the pair whose concatenation has the least rank, and the two rules differ when a
token can be made from different pairs, or when the vocabulary ids are not in merge order.
This module is the ``tokenizers`` rule (``models/bpe/word.rs``, ``Word::merge_all``):
a heap of candidate merges keyed by (π, i) over a linked list of symbols, with entries
that went stale (a neighbour merged elsewhere) skipped when popped. O(n log n) per piece,
so a Llama-2-style text that is one piece (no pre-tokenizer) is fine at any length.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush

Merges = dict[tuple[int, int], tuple[int, int]]  # (a, b) ↦ (priority, id of a ‖ b)


def bpe_by_pair_priority(ids: list[int], merges: Merges) -> list[int]:
    """bpe_π(ids): the symbols left after every merge the rule allows (see the docstring)."""
    n = len(ids)
    if n < 2:
        return list(ids)
    sym: list[int | None] = list(ids)  # None: merged into its left neighbour
    nxt = list(range(1, n + 1))
    prv = list(range(-1, n - 1))
    get = merges.get
    heap = [(m[0], i, m[1]) for i in range(n - 1) if (m := get((ids[i], ids[i + 1])))]
    heapify(heap)
    while heap:
        priority, i, new = heappop(heap)
        j = nxt[i]
        if sym[i] is None or j >= n or get((sym[i], sym[j])) != (priority, new):
            continue  # stale: the pair at i is no longer this one
        sym[i], sym[j] = new, None
        nxt[i] = k = nxt[j]
        if k < n:
            prv[k] = i
            if m := get((new, sym[k])):
                heappush(heap, (m[0], i, m[1]))
        if (h := prv[i]) >= 0 and (m := get((sym[h], new))):
            heappush(heap, (m[0], h, m[1]))
    return [s for s in sym if s is not None]
