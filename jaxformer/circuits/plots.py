"""Attention patterns and per-head scores as matplotlib figures.

Each function draws on the axes it is given (or a new figure) and returns them,
so notebooks can compose panels; nothing is shown or saved here.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np


def attention_pattern(A_TT, tokens: Sequence[str] | None = None, ax=None, title: str = ""):
    """One head's pattern: row = query position, column = key position, colour = A[t, s]."""
    A = np.asarray(A_TT, np.float32)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"an attention pattern is [T, T], got shape {A.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(A, cmap="Blues", vmin=0.0, vmax=1.0)
    if tokens is not None:
        if len(tokens) != A.shape[0]:
            raise ValueError(
                f"{len(tokens)} token labels for a pattern over {A.shape[0]} positions"
            )
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    ax.set_title(title)
    return ax


def attention_patterns(A_HTT, tokens: Sequence[str] | None = None, layer: int | None = None):
    """Every head of one layer side by side.   [H, T, T] → a figure with H panels."""
    A = np.asarray(A_HTT, np.float32)
    H = A.shape[0]
    fig, axes = plt.subplots(1, H, figsize=(3 * H, 3.2), squeeze=False)
    prefix = "" if layer is None else f"L{layer}"
    for h, ax in enumerate(axes[0]):
        attention_pattern(A[h], tokens, ax, f"{prefix}H{h}")
    fig.tight_layout()
    return fig


def head_scores(S_LH, title: str = "", ax=None, fmt: str = "{:.2f}", cmap: str = "viridis"):
    """A per-head statistic as an [L, H] grid, each cell labelled with its value."""
    S = np.asarray(S_LH, np.float32)
    if S.ndim != 2:
        raise ValueError(f"head scores are [L, H], got shape {S.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.7 * S.shape[1] + 1.5, 0.6 * S.shape[0] + 1))
    im = ax.imshow(S, cmap=cmap)
    for (l, h), v in np.ndenumerate(S):
        ax.text(h, l, fmt.format(v), ha="center", va="center", fontsize=8, color="w")
    ax.set_xticks(range(S.shape[1]))
    ax.set_yticks(range(S.shape[0]))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax)
    return ax
