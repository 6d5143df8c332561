"""The end of a training run, once its steps are done (``loop.train`` calls ``finish``).

    the full val set → checkpoints closed → adapter/ (a LoRA run) → loss.png → sample.txt
    → the summary, and the lines that close the run's log

Process 0 alone writes the files and draws the sample; on a mesh the params it samples
from are gathered whole first.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import jax
import numpy as np
from jax.experimental import multihost_utils

from ..atomic import atomic_open
from ..generate import generate
from ..interop.adapters import save_adapters
from ..models import build
from ..models.lora import merge
from . import report
from .config import TrainConfig
from .progress import Progress

if TYPE_CHECKING:
    from .loop import _Run


def finish(run: _Run, progress: Progress, k: int, stopped: bool, tok_s, train_s, t_start):
    """The end of a run that stopped at step ``k`` (``stopped``: by its time budget): the
    final eval over all of val, its checkpoints closed, a LoRA run's ``adapter/``, loss.png,
    sample.txt and the closing lines; returns the run's summary (``train``'s result)."""
    cfg, corpus, params = run.cfg, run.corpus, progress.params
    steps = run.schedule.length or run.schedule.planned
    final = progress.evaluate(params, k, full=True)
    progress.metrics.close()
    run.ckpt.wait()
    run.ckpt.close()
    if run.mesh.size > 1 and cfg.sample_tokens:  # the whole params, for process 0's sample
        params = multihost_utils.process_allgather(params, tiled=True)
    if cfg.lora_rank:  # the adapters alone, then the model they make, for the sample
        if run.lead:
            save_adapters(cfg.run_dir / "adapter", run.model, params)
        params = merge(run.model, params)[1]
    text = ""
    if run.lead:
        bytes_per_token = len(corpus.val_text.encode()) / corpus.val.size
        metrics = cfg.run_dir / "metrics.jsonl"
        report.plot_loss(metrics, cfg.run_dir / "loss.png", corpus.bzip2_bpb, bytes_per_token)
        prompt = cfg.prompt or corpus.val_text.lstrip().split("\n")[0]
        text = sample(cfg, run.mcfg, params, corpus.tokenizer, prompt)
        with atomic_open(cfg.run_dir / "sample.txt", "w") as f:
            f.write(text + "\n")
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    summary = {
        "step": k, "steps": steps, "stopped_early": stopped,
        "val_bpb": final["val_bpb"], "val_loss": final["val_loss"], "bzip2_bpb": corpus.bzip2_bpb,
        "tokens_per_s": tok_s, "mfu": progress.mfu(tok_s),
        "train_s": train_s, "total_s": time.time() - t_start, "n_params": n_params,
        "run_dir": str(cfg.run_dir), "sample": text,
    }  # fmt: skip
    verdict = "below" if final["val_bpb"] < corpus.bzip2_bpb else "NOT below"
    run.log(
        f"done   step {k}/{steps} in {train_s / 60:.1f} min of training "
        f"({summary['total_s'] / 60:.1f} min in all), {tok_s:,.0f} tok/s, "
        f"MFU {summary['mfu']:.1%}\n"
        f"val    {final['val_bpb']:.4f} bits/byte, {verdict} bzip2 -9's "
        f"{corpus.bzip2_bpb:.4f} on the same text\n"
        f"saved  checkpoint {run.ckpt.dir / str(k)}\n"
        f"       loss curve {cfg.run_dir / 'loss.png'}, metrics {cfg.run_dir / 'metrics.jsonl'}\n"
        f"sample (temperature {cfg.temperature:g}):\n\n{text}\n"
    )
    return summary


def sample(cfg: TrainConfig, mcfg, params, tok, prompt: str) -> str:
    """The text of ``prompt`` and up to ``cfg.sample_tokens`` more drawn from the model
    ``(mcfg, params)`` at ``cfg.temperature``, keyed by the seed (as many as the context
    leaves room for; the prompt alone when none fits)."""
    ids = tok.encode_ordinary(prompt)[-(mcfg.context // 2) :]
    n = min(cfg.sample_tokens, mcfg.context - len(ids))
    if not ids or n < 1:
        return prompt
    key = jax.random.key(cfg.seed)
    new = generate(build(mcfg), params, ids, n, key=key, temperature=cfg.temperature)
    # an id beyond the tokenizer's (a pretrained model's padded rows) is no text, as in
    # ``tokenizers``' decode and ``jaxformer sample``
    return tok.decode(ids + [int(t) for t in new if t < tok.n_vocab])
