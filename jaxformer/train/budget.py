"""Sizing a run to its time budget: as many steps as fit in ``--max_minutes``."""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp

from ..parallel import from_lead
from . import optim
from .config import TrainConfig
from .sharded import stepper

# The default preset gets about 650 steps on an idle 2-core machine; far fewer is worth a note.
SLOW_STEPS = 500


def size_run(cfg: TrainConfig, model, params, x, evaluate, log, mesh=None) -> TrainConfig:
    """``cfg`` with as many steps as fit in ``max_minutes``, from a few timed steps and an eval
    batch (the steps run on a copy, with a throwaway schedule: only the time is kept).
    Every process takes process 0's count."""
    probe = optim.optimizer(cfg.replace(steps=10**9))
    train_step, init_opt = stepper(model, probe, cfg.compute_dtype, mesh)
    p = jax.tree.map(jnp.copy, params)  # the step donates its inputs
    p, s, m = train_step(p, init_opt(p), x)  # compiles
    float(m["loss"])
    times = []
    for _ in range(5):  # the median: one step slowed by a busy moment does not size the run
        t = time.perf_counter()
        p, s, m = train_step(p, s, x)
        float(m["loss"])
        times.append(time.perf_counter() - t)
    t_step = sorted(times)[2]
    evaluate(params, 1)  # compiles
    t = time.perf_counter()
    evaluate(params, 1)
    t_eval = (time.perf_counter() - t) * cfg.periodic_eval_batches / cfg.eval_every  # per step
    steps = from_lead(max(1, int(0.97 * 60 * cfg.max_minutes / (t_step + t_eval))))
    load = os.getloadavg()[0]
    log(
        f"sized  {steps} steps fit in --max_minutes {cfg.max_minutes:g} ({t_step:.2f} s a "
        f"step measured; load average {load:.1f} on {os.cpu_count()} cores)"
    )
    if steps < SLOW_STEPS:
        log(
            f"note   few steps fit: this machine is slow or busy now, so the model will be "
            f"weak; give it more time (--max_minutes {cfg.max_minutes * SLOW_STEPS / steps:.0f})"
            " or train when the machine is idle"
        )
    return cfg.replace(steps=steps, warmup_steps=min(cfg.warmup_steps, steps // 10))
