"""Validation: the summed next-token NLL and the bytes it covers, over the val windows."""

from __future__ import annotations

import jax
import numpy as np

from ..parallel import global_rows
from . import data, sampler


def make_evaluator(eval_step, corpus: data.Corpus, T: int, b: int, mesh, packed=None):
    """evaluate(params, n_batches) → (Σ nll, #tokens, #bytes) over the val windows: all of
    them, or ``n_batches`` batches of b windows spread evenly over the val set. Each batch
    is split over the mesh's data × fsdp × expert devices, as the train batches are.
    ``packed``: the val documents' ``packing.Windows``, scored on the targets they train."""
    if packed is not None:
        return _packed_evaluator(eval_step, corpus, packed, b, mesh)
    starts, mask = sampler.eval_windows(corpus.val.size, T)
    offsets = np.arange(T + 1)
    rows = (lambda a: a) if mesh.size == 1 else (lambda a: global_rows(a, mesh))

    def evaluate(params, n_batches: int | None):
        idx = np.arange(len(starts))
        if n_batches is not None and n_batches * b < len(starts):
            idx = np.linspace(0, len(starts) - 1, n_batches * b).round().astype(np.int64)
        nll, n_tok, n_bytes = 0.0, 0, 0
        for i in range(0, len(idx), b):
            sel = idx[i : i + b]
            pad = b - len(sel)  # a fixed batch shape compiles once: pad with masked windows
            x = np.asarray(corpus.val[starts[sel][:, None] + offsets], np.int32)
            msk = mask[sel]
            x, msk = np.pad(x, ((0, pad), (0, 0))), np.pad(msk, ((0, pad), (0, 0)))
            nll += float(eval_step(params, rows(x), rows(msk)))
            n_tok += int(msk.sum())
            n_bytes += int(corpus.token_bytes[x[:, 1:]][msk].sum())
        return nll, n_tok, n_bytes

    evaluate.windows = len(starts)  # all of val, in windows
    return evaluate


def _packed_evaluator(eval_step, corpus: data.Corpus, val, b: int, mesh):
    rows = (lambda a: a) if mesh.size == 1 else (lambda a: global_rows(a, mesh))
    W = len(val.tokens)

    def evaluate(params, n_batches: int | None):
        idx = np.arange(W)
        if n_batches is not None and n_batches * b < W:
            idx = np.linspace(0, W - 1, n_batches * b).round().astype(np.int64)
        nll, n_tok, n_bytes = 0.0, 0, 0
        for i in range(0, len(idx), b):
            sel = idx[i : i + b]
            pad = ((0, b - len(sel)), (0, 0))  # a fixed batch shape compiles once
            win = type(val)(*(np.pad(a[sel], pad) for a in val))
            nll += float(eval_step(params, jax.tree.map(rows, win), rows(win.trained)))
            n_tok += int(win.trained.sum())
            n_bytes += int(corpus.token_bytes[win.tokens[:, 1:]][win.trained].sum())
        return nll, n_tok, n_bytes

    evaluate.windows = W
    return evaluate
