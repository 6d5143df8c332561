"""What a resumed run checks before it restores: the newest intact checkpoint (damaged and
unsealed newer ones set aside, never deleted), and that the checkpoint was saved by this
run, its configuration and its tokenizer. ``run`` is the loop's ``_Run``."""

from __future__ import annotations

from ..parallel import barrier, from_lead
from . import checkpoint as C
from .config import RESUMABLE, upgrade


def intact_start(run) -> int:
    """The newest checkpoint whose files verify (process 0 checks, every process takes its
    answer). Newer ones that are damaged or were never sealed are set aside, never deleted,
    each with a note."""
    ck, lead = run.ckpt, run.lead
    step, damaged = ck.newest_intact() if lead else (None, [])
    step = from_lead(-1 if step is None else step)
    if step < 0:
        first = damaged[0][1] if damaged else "none is complete"
        raise C.CheckpointError(
            f"--resume: no checkpoint of {run.cfg.run_dir} is intact ({first}); nothing was "
            "changed: pass --overwrite to start the run again"
        )
    if lead:
        for s, why in damaged:
            run.log(f"note   {why}; set aside, kept, as {ck.set_aside(s)}")
        for s in ck.unsealed(after=step):
            run.log(f"note   checkpoint {s} was never sealed; set aside as {ck.set_aside(s)}")
        if damaged:
            run.log(f"note   resuming from checkpoint {step}, the newest intact one")
    barrier("train: checkpoints checked")
    ck.reload()
    return step


# What a checkpoint must agree on with the run it resumes: all but the loop's settings and
# where things are (the run's length may grow; the tokenizer is compared by its hash).
WHERE = {"out", "name", "cache", "data", "tokenizer", "init_from", "steps", "decay_steps"}


def check_saved_with(run, step: int, meta: dict) -> None:
    """Refuse a checkpoint saved by another run, configuration, corpus or tokenizer."""
    cfg = run.cfg
    if meta.get("sampler") != {"seed": cfg.seed, "step": step}:
        raise C.CheckpointError(
            f"{cfg.run_dir}: checkpoint {step} has a foreign sampler state "
            f"{meta.get('sampler')!r}; it belongs to another run"
        )
    ours = cfg.to_dict()
    keys = sorted(set(ours) - RESUMABLE - WHERE)
    diff = C.config_differences(upgrade(meta.get("train", ours)), ours, keys)
    diff += C.config_differences(meta.get("model", run.mcfg.to_dict()), run.mcfg.to_dict())
    if diff:
        raise C.CheckpointError(
            f"--resume: checkpoint {step} of {cfg.run_dir} was saved by another configuration "
            f"than the run's config.json ({'; '.join(diff[:4])}, checkpoint vs config.json); "
            "it is refused: start a new run with --out DIR"
        )
    if meta.get("tokenizer_sha256") != run.corpus.tokenizer_sha256:
        raise C.CheckpointError(
            f"--resume: the corpus or tokenizer changed since {cfg.run_dir} was trained "
            f"(the tokenizer's hash differs); train a new run with --out DIR"
        )
