"""Sliding-window scoring: which window predicts which token (host code, numpy).

For ids x_0 … x_{N−1}, window length C and stride S (1 ≤ S ≤ C), window k = 0, 1, … is

    b_k = k·S,   e_k = min(b_k + C, N),   s_k = max(e_{k−1}, b_k + 1)   (e_{−1} = 0)

up to the first k with e_k = N. The model reads x_{b_k} … x_{e_k − 1} and window k scores
the targets t ∈ [s_k, e_k), each from its context x_{b_k} … x_{t−1}: every target is
scored once, by the first window that holds it and a token before it. This is the
sliding-window perplexity of HF's guide (``labels`` −100 on the tokens the previous window
scored, ``stride = C``: disjoint windows, whose first tokens are no one's target).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def check_window(context: int | None, stride: int | None, model_context: int | None) -> None:
    """Refuse, naming the flag and the fix, a window the model cannot read or the plan
    cannot cover: 2 ≤ context ≤ model_context and 1 ≤ stride ≤ context. None: not known
    yet (the model not read), checked as far as the others allow."""
    top = model_context if model_context is not None else float("inf")
    if context is not None and not 2 <= context <= top:
        raise ValueError(
            f"--context {context}: must lie in [2, {model_context}] (the model's context); "
            f"pass --context {model_context} or less (default: the model's context)"
            if context > top
            else f"--context {context}: must be at least 2 (a context and a target)"
        )
    if stride is not None and stride < 1:
        raise ValueError(
            f"--stride {stride}: must be at least 1 (and at most --context); pass --stride "
            "equal to --context for disjoint windows, or less for more context per token"
        )
    if stride is not None and context is not None and stride > context:
        raise ValueError(
            f"--stride {stride}: exceeds --context {context}, which would leave tokens "
            f"between windows unscored; pass --stride {context} or less"
        )


def plan(n: int, context: int, stride: int) -> np.ndarray:
    """The windows (b_k, s_k, e_k) of the module docstring, [K, 3] int64, for n ≥ 2 ids;
    windows that score no target (a last window of one token) are left out."""
    if n < 2:
        raise ValueError(f"{n} tokens: scoring needs at least 2 (a context and a target)")
    rows, prev_end = [], 0
    for begin in range(0, n, stride):
        end = min(begin + context, n)
        start = max(prev_end, begin + 1)
        if start < end:
            rows.append((begin, start, end))
        prev_end = end
        if end == n:
            break
    return np.asarray(rows, np.int64).reshape(-1, 3)


def batches(
    ids: np.ndarray, windows: np.ndarray, context: int, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The windows in batches of ``batch_size`` (the last padded with windows that score
    nothing): (tokens [B, C] int32, right-padded with 0; scored [B, C−1] float32, 1 where
    window k scores target b_k + j + 1, i.e. s_k ≤ b_k + j + 1 < e_k). Padding sits after
    every scored position, so a causal model's scores do not see it."""
    j = np.arange(1, context)
    for i in range(0, len(windows), batch_size):
        w = windows[i : i + batch_size]
        tokens = np.zeros((batch_size, context), np.int32)
        scored = np.zeros((batch_size, context - 1), np.float32)
        for r, (b, s, e) in enumerate(w):
            tokens[r, : e - b] = ids[b:e]
            scored[r] = (b + j >= s) & (b + j < e)
        yield tokens, scored


def scored_targets(windows: np.ndarray) -> np.ndarray:
    """The positions t the windows score, in order: ∪_k [s_k, e_k)."""
    return np.concatenate([np.arange(s, e) for _, s, e in windows]) if len(windows) else windows
