"""The lines a run opens with (process 0 prints them). ``run`` is the loop's ``_Run``."""

from __future__ import annotations

import jax
import numpy as np

from . import data, length, report


def announce(run, params, start: int, resume: bool) -> str:
    """The lines a run opens with: its model, data, training, mesh, MFU's definition, out."""
    cfg, mcfg, corpus, T, M = run.cfg, run.mcfg, run.corpus, run.cfg.context, run.cfg.micro_batches
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    return (
        f"model  {mcfg.family} L={mcfg.n_layers} d={mcfg.d_model} H={mcfg.n_heads} T={T} "
        f"V={mcfg.vocab_size}: {n_params / 1e6:.2f}M params\n"
        f"data   {corpus.source}: {corpus.train.size:,} train / {corpus.val.size:,} val tokens "
        f"({len(corpus.val_text.encode()) / corpus.val.size:.2f} bytes/token), "
        f"{run.n_windows:,} windows of {T} per epoch"
        + ("" if run.efficiency is None else _packed(corpus, run.efficiency))
        + "\n"
        f"train  {length.steps_text(run.schedule)} steps × {cfg.batch_size} sequences"
        + (f" ({M} micro-batches of {cfg.batch_size // M})" if M > 1 else "")
        + f", lr {cfg.lr:g} → {cfg.min_lr:g} ({length.describe(cfg, run.schedule)}), "
        f"{cfg.compute_dtype}, remat={cfg.remat}"
        + (f", {cfg.max_minutes:g} min budget" if cfg.max_minutes else "")
        + ("" if run.mesh.size == 1 else f"\nmesh   {_show(run.mesh)}")
        + f"\nmfu    {report.MFU}"
        + f"\nout    {cfg.run_dir}"
        + (f"  (resuming at step {start})" if resume else "")
    )


def _packed(corpus: data.Corpus, efficiency: float) -> str:
    n = len(corpus.train_docs.table)
    return f", {n:,} documents packed ({efficiency:.1%} of the slots hold tokens)"


def _show(mesh) -> str:
    sizes = " × ".join(f"{a}={k}" for a, k in mesh.shape.items())
    P = jax.process_count()
    return f"{sizes}: {mesh.size} devices, {P} process{'es' if P > 1 else ''}"
