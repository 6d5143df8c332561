"""Which token windows each step reads: a pure function of (seed, step).

The train tokens are cut into E windows of T+1 tokens, w_j = x[s_e + jT : s_e + (j+1)T + 1]
(consecutive windows share one token: the last target of one is the first input of the
next). Epoch e visits all E windows once, in the order of a permutation π_e drawn from
(seed, e), with the grid shifted by s_e ∈ [0, T), also drawn from (seed, e), so that
later epochs see different cuts. The global sample stream is the concatenation of the
epochs; step k takes samples [kB, (k+1)B), and process p of P takes the p-th of P
equal slices of them. Hence:

- the state is (seed, step): resuming at step k reads exactly what step k would have;
- within an epoch no window repeats and none is skipped;
- processes read disjoint samples.

Packed documents (``packing.py``) come as W fixed windows: ``WindowSampler`` visits them in
the order π_e per epoch, with the same stream of samples and the same three properties.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchSampler:
    n_tokens: int  # N, the length of the token array
    T: int  # sequence length: windows hold T + 1 tokens
    batch_size: int  # B, global sequences per step
    seed: int = 0
    process_index: int = 0
    process_count: int = 1

    def __post_init__(self):
        if not 0 <= self.process_index < self.process_count:
            raise ValueError(
                f"process_index={self.process_index} is outside [0, {self.process_count})"
            )
        if self.batch_size % self.process_count:
            raise ValueError(
                f"batch_size={self.batch_size} is not divisible by the {self.process_count} "
                "processes; choose a multiple of the process count"
            )
        if self.n_windows < 1:
            raise ValueError(
                f"{self.n_tokens} tokens do not fill two windows of T+1={self.T + 1}; "
                "use more data or a shorter context"
            )

    @property
    def n_windows(self) -> int:
        """E: windows per epoch (one fewer than fit, so that any shift s_e < T fits)."""
        return (self.n_tokens - 1) // self.T - 1

    def indices(self, step: int) -> np.ndarray:
        """This process's global sample indices at ``step``: [B/P] int64."""
        return _indices(step, self.batch_size, self.process_index, self.process_count)

    def starts(self, step: int) -> np.ndarray:
        """Start offsets of this process's windows at ``step``: [B/P] int64."""
        i = self.indices(step)
        epoch, j = np.divmod(i, self.n_windows)
        out = np.empty_like(i)
        for e in np.unique(epoch):
            perm, shift = _epoch(self.seed, self.n_windows, self.T, int(e))
            sel = epoch == e
            out[sel] = shift + perm[j[sel]] * self.T
        return out

    def batch(self, tokens: np.ndarray, step: int) -> np.ndarray:
        """The windows of ``step``: [B/P, T+1] int32."""
        offsets = self.starts(step)[:, None] + np.arange(self.T + 1)
        return np.asarray(tokens[offsets], np.int32)


@dataclass(frozen=True)
class WindowSampler:
    """W fixed windows (packed documents): epoch e visits each once, in the order π_e."""

    n_windows: int  # W
    batch_size: int
    seed: int = 0
    process_index: int = 0
    process_count: int = 1

    def __post_init__(self):
        _indices(0, self.batch_size, self.process_index, self.process_count)  # its checks
        if self.n_windows < 1:
            raise ValueError("no windows to sample: the documents are empty")

    def rows(self, step: int) -> np.ndarray:
        """The windows this process reads at ``step``: [B/P] int64."""
        i = _indices(step, self.batch_size, self.process_index, self.process_count)
        epoch, j = np.divmod(i, self.n_windows)
        out = np.empty_like(i)
        for e in np.unique(epoch):
            sel = epoch == e
            out[sel] = _epoch(self.seed, self.n_windows, 1, int(e))[0][j[sel]]
        return out

    def batch(self, windows, step: int):
        """The windows of ``step`` (a ``packing.Windows`` of [B/P, …] rows)."""
        r = self.rows(step)
        return type(windows)(*(a[r] for a in windows))


def _indices(step: int, batch_size: int, p: int, P: int) -> np.ndarray:
    if not 0 <= p < P:
        raise ValueError(f"process_index={p} is outside [0, {P})")
    if batch_size % P:
        raise ValueError(
            f"batch_size={batch_size} is not divisible by the {P} processes; choose a multiple "
            "of the process count"
        )
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    b = batch_size // P
    first = step * batch_size + p * b
    return np.arange(first, first + b, dtype=np.int64)


@functools.lru_cache(maxsize=4)
def _epoch(seed: int, n_windows: int, T: int, epoch: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng([seed, epoch])
    return rng.permutation(n_windows), int(rng.integers(T))


def eval_windows(n_tokens: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Cover tokens 1 … N-1 as targets exactly once: starts [W] and target masks [W, T].

    Windows start at 0, T, 2T, …; the last one is shifted back to end at N-1 and its
    targets already covered by the previous window are masked out.
    """
    W = -(-(n_tokens - 1) // T)
    starts = np.arange(W, dtype=np.int64) * T
    mask = np.ones((W, T), bool)
    last = n_tokens - 1 - T  # the last window ends exactly at token N-1
    if starts[-1] > last:
        mask[-1, : starts[-1] - last] = False
        starts[-1] = last
    return starts, mask
