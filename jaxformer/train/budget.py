"""A run's time budget, ``--max_minutes``: sizing it, charging it, and when a WSD run decays.

``size_run`` estimates the steps that fit from a few timed steps: a cosine run's length,
and for a WSD run only the progress bar's and the log's (and a cap on the warmup).

``Spent`` charges the budget: the seconds from the end of a run's first step (which
compiles) to the end of each later one, evals and checkpoints included. A resumed run
carries the seconds its checkpoint saved, and charges its own first step (which
compiles again) the mean of the charged steps before it: with a clock that runs the
same, it charges what the uninterrupted run would.

``decay_plan``: a budgeted WSD run (``--steps 0``) decays once (1 − s) of its budget B
is spent, s = ``decay_share``. At step k, having spent t ≥ (1 − s)·B on the k − 1 charged
steps, it fixes

    D = max(k, k_w),    N = max(1, round(r · (B − t)) − (D − k)),    r = (k − 1) / t

so that, at the rate measured so far, η reaches η_min as the budget ends (``optim.py``).
"""

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
    train_step, init_opt = stepper(model, probe, cfg.compute_dtype, mesh, optim.labels(cfg))
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
    wsd = cfg.schedule == "wsd"
    log(
        f"sized  {'about ' if wsd else ''}{steps} steps fit in --max_minutes "
        f"{cfg.max_minutes:g} ({t_step:.2f} s a step measured; load average {load:.1f} on "
        f"{os.cpu_count()} cores)"
        + (f"; the lr decays once {1 - cfg.decay_share:.0%} of the time is spent" if wsd else "")
    )
    if steps < SLOW_STEPS:
        log(
            f"note   few steps fit: this machine is slow or busy now, so the model will be "
            f"weak; give it more time (--max_minutes {cfg.max_minutes * SLOW_STEPS / steps:.0f})"
            " or train when the machine is idle"
        )
    warmup = min(cfg.warmup_steps, steps // 10)  # the warmup fits well inside the run
    if cfg.schedule == "wsd":  # and ends before a decay of this length would start
        warmup = min(warmup, steps - max(1, round(cfg.decay_share * steps)))
    return cfg.replace(steps=steps, warmup_steps=warmup)


def decay_plan(cfg: TrainConfig, k: int, spent: float) -> tuple[int, int] | None:
    """(D, N) of a budgeted WSD run after step ``k`` with ``spent`` seconds charged, once
    (1 − decay_share) of the budget is spent (the formula above); else None."""
    budget = 60 * cfg.max_minutes
    if k < 2 or spent < (1 - cfg.decay_share) * budget:
        return None
    rate = (k - 1) / spent  # steps a second, over the charged steps 2 … k
    start = max(k, cfg.warmup_steps)  # the warmup ends before the decay starts
    return start, max(1, round(rate * (budget - spent)) - (start - k))


class Spent:
    """Seconds charged to the budget (above), read from ``clock`` at each ``charge(k)``."""

    def __init__(self, clock, seconds: float = 0.0, start: int = 0):
        self.clock, self.seconds, self.start = clock, seconds, start
        self.mark = None

    def charge(self) -> float:
        """Charge the time since the last call (the first: the mean step); the total."""
        now = self.clock()
        if self.mark is None and self.start >= 2:  # a resumed run: its first step compiled
            self.seconds += self.seconds / (self.start - 1)
        elif self.mark is not None:
            self.seconds += now - self.mark
        self.mark = now
        return self.seconds


def planned_steps(cfg: TrainConfig, k: int, spent: float) -> int:
    """A budgeted run's length as estimated at step ``k``, ``spent`` seconds in (the bar's)."""
    if k < 2 or spent <= 0:
        return k + 1
    return k + max(1, round((k - 1) / spent * max(0.0, 60 * cfg.max_minutes - spent)))
