"""The run's length as the host knows it: fixed by ``--steps``, or set by the clock.

A run of fixed ``--steps`` knows its length, and a WSD run its decay (D, N), from the
config. A time-budgeted WSD run (``--steps 0``) knows only an estimate (for the bar and
the log) until (1 − decay_share) of ``--max_minutes`` is spent; then process 0's clock
fixes (D, N) (``budget.decay_plan``) and the run ends at D + N. A budgeted run's decay
may run over the budget by its own planned share, when the machine slows down.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax

from ..parallel import from_lead
from .budget import decay_plan, planned_steps
from .config import TrainConfig


@dataclass
class Schedule:
    """What the host knows of the schedule: the run's length and a WSD run's decay."""

    budgeted: bool  # a WSD run of --steps 0: the clock starts its decay
    length: int | None  # the last step: --steps, or D + N; None before a budgeted run's decay
    planned: int  # the length as best known: an estimate before (the bar and the log)
    decay: tuple[int, int] | None  # (D, N) as in the optimizer state; None: not yet, or cosine
    spent: float = 0.0  # the budget's seconds at the start (a resumed budgeted run's)

    def decided(self, decay: tuple[int, int]) -> None:
        self.decay = decay
        self.length = self.planned = sum(decay)


class Planned:
    """``cfg`` with the run's length as best known as ``steps``: what ``Progress`` reads."""

    def __init__(self, cfg: TrainConfig, steps: int):
        self._cfg, self.steps = cfg, steps

    def __getattr__(self, name):
        return getattr(self._cfg, name)


def resumed(cfg: TrainConfig, start: int, meta: dict, decay) -> Schedule:
    """The schedule of a run resumed at ``start``: ``decay`` from the optimizer state; a
    budgeted run's seconds from the checkpoint's meta (a continued run's clock is new)."""
    if cfg.steps:
        return Schedule(False, cfg.steps, cfg.steps, decay)
    spent = float((meta.get("schedule") or {}).get("budget_seconds") or 0.0)
    if decay:
        return Schedule(True, sum(decay), sum(decay), decay, spent)
    return Schedule(True, None, planned_steps(cfg, start, spent), None, spent)


def steps_text(sched: Schedule) -> str:
    return str(sched.length) if sched.length is not None else f"about {sched.planned}"


def describe(cfg: TrainConfig, sched: Schedule) -> str:
    if cfg.schedule == "cosine":
        return f"warmup {cfg.warmup_steps}, cosine"
    if sched.decay:
        D, N = sched.decay
        return f"wsd: warmup {cfg.warmup_steps}, decay over steps {D + 1}–{D + N}"
    return (
        f"wsd: warmup {cfg.warmup_steps}, decay once {1 - cfg.decay_share:.0%} of the time "
        "budget is spent"
    )


def plan_by_lead(cfg: TrainConfig, k: int, spent: float) -> tuple[int, int] | None:
    """``budget.decay_plan`` by process 0's clock: every process decays at once."""
    plan = decay_plan(cfg, k, spent) if jax.process_index() == 0 else None
    D = from_lead(plan[0] if plan else -1)
    return None if D < 0 else (D, from_lead(plan[1] if plan else 0))


def limit(cfg: TrainConfig, sched: Schedule) -> float:
    """The budget's seconds: --max_minutes (0: none); a budgeted run's decay may run over
    by its own planned share, when the machine slows down, before it is cut."""
    return 60 * cfg.max_minutes * ((1 + cfg.decay_share) if sched.budgeted else 1)


def over_budget(cfg: TrainConfig, sched: Schedule, k: int, lr: float) -> str:
    if not sched.budgeted:
        return f"stop   step {k}: --max_minutes {cfg.max_minutes:g} reached"
    return (
        f"stop   step {k} of {sched.length}: the decay ran past --max_minutes "
        f"{cfg.max_minutes:g} by {cfg.decay_share:.0%} (the machine slowed down), so the lr "
        f"stopped at {lr:.3g}, not {cfg.min_lr:g}; `--resume --max_minutes "
        f"{2 * cfg.max_minutes:g}` finishes the decay"
    )
