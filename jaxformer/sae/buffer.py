"""A shuffled buffer of activations: a fixed capacity, refilled by halves, served in
random minibatches, deterministic from a seed.

    store ∈ R^{C×d}        C = capacity rows; the first half is served, the second waits
    fill:    store ← chunks 0, 1, … (C rows), then permuted by π_0
    draw:    rows [i, i+b) of the first half (i advances by b)
    refill:  once the first half is served: it is overwritten by the next C/2 rows of
             chunks, and the whole store permuted by π_r (r the refill's index)

``produce(c)`` gives chunk c (the activations of one model batch, say), a pure function of
c; π_r is drawn from (seed, r). So each row produced is served exactly once, at most C
rows are held, every minibatch mixes rows of the last ⌈C / chunk⌉ chunks, and the state
(store, drawn, chunks made, refills) is all a resumed run needs to continue exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class Buffer:
    """``Buffer(produce, capacity, batch, seed)``; ``next()`` → [batch, d] float32 rows."""

    def __init__(self, produce: Callable[[int], np.ndarray], capacity: int, batch: int,
                 seed: int = 0):  # fmt: skip
        if batch < 1 or capacity < 2 * batch or (capacity // 2) % batch:
            fit = 2 * batch * max(1, -(-capacity // (2 * batch)))
            raise ValueError(
                f"buffer capacity {capacity} must be an even multiple of the batch {batch} "
                f"(at least 2 batches); use --buffer {fit}"
            )
        self.produce, self.capacity, self.batch, self.seed = produce, capacity, batch, seed
        self.store: np.ndarray | None = None
        self.drawn = 0  # rows of the first half served since the last refill
        self.chunks = 0  # chunks produced so far
        self.refills = 0
        self._spare: np.ndarray | None = None  # the rows of the last chunk not yet stored

    @property
    def half(self) -> int:
        return self.capacity // 2

    def _rows(self, n: int) -> np.ndarray:
        """The next n produced rows (chunk boundaries need not meet n's)."""
        parts, have = [], 0
        if self._spare is not None:
            parts, have, self._spare = [self._spare], len(self._spare), None
        while have < n:
            c = np.asarray(self.produce(self.chunks), np.float32)
            self.chunks += 1
            parts.append(c)
            have += len(c)
        rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if len(rows) > n:
            self._spare = rows[n:]
        return rows[:n]

    def _shuffle(self) -> None:
        perm = np.random.default_rng((self.seed, self.refills)).permutation(self.capacity)
        self.store = self.store[perm]
        self.refills += 1

    def next(self) -> np.ndarray:
        """The next minibatch: [batch, d]."""
        if self.store is None:
            self.store = self._rows(self.capacity)
            self._shuffle()
        elif self.drawn == self.half:
            self.store[: self.half] = self._rows(self.half)
            self._shuffle()
            self.drawn = 0
        out = self.store[self.drawn : self.drawn + self.batch]
        self.drawn += self.batch
        return out.copy()

    # -- state, for checkpoints --------------------------------------------------------------
    def state(self) -> tuple[np.ndarray, dict]:
        """(the store [C, d], the counters): what ``restore`` needs to continue exactly. Only
        between whole chunks (C/2 a multiple of the chunk's rows), so nothing else is held."""
        if self.store is None or self._spare is not None:
            raise ValueError("the buffer's state is defined once filled, on chunk boundaries")
        counters = {"drawn": self.drawn, "chunks": self.chunks, "refills": self.refills}
        return self.store.copy(), counters  # a copy: an async save may still read it at a refill

    def restore(self, store: np.ndarray, counters: dict) -> None:
        if store.shape[0] != self.capacity:
            raise ValueError(f"a stored buffer of {store.shape[0]} rows, not {self.capacity}")
        self.store, self._spare = np.array(store, np.float32), None
        self.drawn, self.chunks = int(counters["drawn"]), int(counters["chunks"])
        self.refills = int(counters["refills"])
