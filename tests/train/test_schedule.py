"""The learning-rate schedule: the WSD formula against plain Python, the budgeted run's
decay set by the clock (a fake one: the tests time nothing) and ending at --min_lr with
the budget, the same schedule after a resume, a fixed --steps run that ignores the clock,
and bad values refused with one line."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformer.cli import main
from jaxformer.rundir import Checkpoints
from jaxformer.train import ConfigError, TrainConfig, loop, optim, report
from jaxformer.train import step as step_module
from jaxformer.train.budget import Spent, decay_plan
from jaxformer.train.data import bundled_corpus
from jaxformer.train.report import read_metrics
from jaxformer.train.resolve import resolve

pytestmark = pytest.mark.slow  # several short training runs, a minute or more

FAULT = "JAXFORMER_FAULT_AT_STEP"  # "N:TERM": the loop sends itself SIGTERM after step N


def wsd_reference(k, lr, lo, warmup, D, N):
    """The formula of optim.py's docstring, term by term, in float64."""
    if k < warmup:
        return lr * k / warmup
    if k < D:
        return lr
    return lo + (lr - lo) * (1 - math.sqrt(min(1.0, (k - D + 1) / N)))


def fixed_reference(K, share):
    """(D, N) of a run of K steps: its last max(1, round(share · K)) steps."""
    N = max(1, int(np.round(share * K)))  # numpy rounds half to even, as Python does
    return K - N, N


@pytest.mark.parametrize(
    "steps, warmup, share", [(100, 10, 0.2), (37, 0, 0.3), (7, 2, 0.5), (1000, 100, 0.1)]
)
def test_wsd_schedule_is_the_formula(steps, warmup, share):
    cfg = TrainConfig(steps=steps, warmup_steps=warmup, decay_share=share, lr=1e-3, min_lr=1e-4)
    D, N = fixed_reference(steps, share)
    lr = optim.schedule(cfg)
    for k in range(steps + 5):  # and after the end: a continued run stays at min_lr
        want = wsd_reference(k, 1e-3, 1e-4, warmup, D, N)
        assert lr(k) == pytest.approx(want, rel=1e-6, abs=1e-12), k
    assert lr(steps - 1) == pytest.approx(1e-4, rel=1e-6)  # the last step is at min_lr
    assert lr(D - 1) == pytest.approx(1e-3) and lr(D) < 1e-3  # stable until D


def test_the_step_applies_the_rate_of_its_state_and_compiles_once():
    """The optimizer's own update: u = -η_k · Adam(g); a budgeted run's state holds
    D = NOT_YET (stable) until ``with_decay`` sets it, with no new compile."""
    cfg = TrainConfig(steps=0, max_minutes=1.0, warmup_steps=3, lr=1e-2, min_lr=1e-3)
    cfg = cfg.replace(beta1=0.0, beta2=0.0, weight_decay=0.0, grad_clip=0.0)  # Adam(g) = ±1
    opt = optim.optimizer(cfg)
    params = {"b_x": jnp.zeros(3)}
    g = {"b_x": jnp.array([1.0, -2.0, 4.0])}
    update = jax.jit(opt.update)
    state = opt.init(params)
    seen = []
    for k in range(30):
        if k == 12:
            assert optim.decay_of(state) is None
            state = optim.with_decay(state, 12, 8)
            assert optim.decay_of(state) == (12, 8)
        u, state = update(g, state, params)
        seen.append(-float(u["b_x"][0]))
    want = [wsd_reference(k, 1e-2, 1e-3, 3, 12 if k >= 12 else 2**31 - 1, 8) for k in range(30)]
    np.testing.assert_allclose(seen, want, rtol=2e-6)
    assert update._cache_size() == 1  # the decay came in as data, not as a new program


def test_decay_plan_and_spent_follow_the_stated_rule():
    cfg = TrainConfig(steps=0, max_minutes=1.0, decay_share=0.25, warmup_steps=10)
    # 60 s budget: the decay starts once 45 s are spent; rate (k-1)/t, length r·(60-t)
    assert decay_plan(cfg, 40, 44.9) is None
    assert decay_plan(cfg, 40, 46.8) == (40, round(39 / 46.8 * 13.2))
    assert decay_plan(cfg, 5, 50.0) == (10, max(1, round(4 / 50 * 10) - 5))  # after the warmup
    t = [100.0]
    spent = Spent(lambda: t[0])
    assert spent.charge() == 0  # a run's first step compiles: the budget starts at its end
    t[0] += 2.5
    assert spent.charge() == 2.5
    resumed = Spent(lambda: t[0], seconds=12.0, start=7)  # 12 s over steps 2 … 7
    assert resumed.charge() == 12.0 + 12.0 / 6  # its first step is charged the mean
    t[0] += 1.0
    assert resumed.charge() == 15.0


# -- runs of the tiny model under a fake clock --------------------------------------------

PER_STEP = 1.0  # fake seconds a train step takes
BUDGET_MIN = 0.5  # 30 fake seconds
KW = 5  # the tiny preset's warmup


def planned_reference(share=0.2, per_step=PER_STEP, budget=60 * BUDGET_MIN):
    """(D, N) by the rule in budget.py, for a clock at ``per_step`` seconds a step: after
    step k, (k - 1) steps are charged."""
    k = 2
    while (k - 1) * per_step < (1 - share) * budget:
        k += 1
    t = (k - 1) * per_step
    D = max(k, KW)
    return D, max(1, round((k - 1) / t * (budget - t)) - (D - k))


class _FakeTime:
    """A clock that moves only when a train step runs: ``per_step`` seconds for each, or
    ``then`` seconds for each after the first ``slow_after`` steps."""

    def __init__(self, per_step, slow_after=None, then=None):
        self.t, self.n, self.per_step, self.slow_after, self.then = (
            0.0,
            0,
            per_step,
            slow_after,
            then,
        )

    def __call__(self):
        return self.t

    def tick(self):
        self.n += 1
        slow = self.slow_after is not None and self.n > self.slow_after
        self.t += self.then if slow else self.per_step


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    (d / "plays.txt").write_text(bundled_corpus().read_text()[:30_000])
    return d


def _train(mp, corpus, out, clock, resume=False, fault=None, sized=False, **overrides):
    """A run of the tiny model (one layer) under ``clock``; ``sized``: a fake ``size_run``
    estimates 1000 steps (the real one times steps: a compile, a second or so)."""
    if sized:  # the estimate is the bar's alone; the warmup (5) fits under either
        mp.setattr(loop, "size_run", lambda cfg, *a, **k: cfg.replace(steps=1000))
    mp.setattr(report, "plot_loss", lambda *a, **k: None)  # matplotlib: seconds
    if fault is None:
        mp.delenv(FAULT, raising=False)
    else:
        mp.setenv(FAULT, fault)
    real = step_module.make_train_step

    def timed(*args):
        step = real(*args)

        def run(*a):
            clock.tick()
            return step(*a)

        return run

    mp.setattr(step_module, "make_train_step", timed)
    over = dict(data=str(corpus / "plays.txt"), cache=str(corpus / "cache"), out=str(out))
    over |= dict(steps=0, max_minutes=BUDGET_MIN, progress=False, sample_tokens=0)
    over |= dict(checkpoint_every=10, eval_every=20, keep_checkpoints=5, n_layers=1) | overrides
    cfg, mode = resolve("tiny", over, resume=resume, log=lambda _: None)
    lines = []
    summary = loop.train(cfg, resume=mode == "resume", log=lines.append, clock=clock)
    mp.undo()
    return summary, "\n".join(lines)


def _lrs(run):
    return [(r["step"], r["lr"]) for r in read_metrics(run / "metrics.jsonl") if "lr" in r]


def _losses(run):
    return [(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl") if "loss" in r]


def _meta(run, step):
    ck = Checkpoints(run, read_only=True)
    try:
        return ck.meta(step)
    finally:
        ck.close()


@pytest.fixture(scope="module")
def budgeted(corpus, tmp_path_factory):
    """A budgeted run, and one stopped by SIGTERM before its decay and after it, each time
    resumed; what the first resume said."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("budgeted")
    whole, cut = root / "whole", root / "cut"
    out = {"root": root, "whole": _train(mp, corpus, whole, _FakeTime(PER_STEP))}
    stops = []
    for at in (EARLY, planned_reference()[0] + 2):
        stopped, _ = _train(mp, corpus, cut, _FakeTime(PER_STEP), resume=bool(stops),
                            fault=f"{at}:TERM", sized=True)  # fmt: skip
        stops.append((stopped["preempted"], stopped["step"]))
        if at == EARLY:  # before its decay, a budgeted run has no length to extend
            with pytest.raises(ConfigError, match="has not started its decay"):
                resolve("tiny", {"out": str(cut), "steps": 100}, resume=True)
            out["early_meta"] = _meta(cut, EARLY)["schedule"]
    out["stops"] = stops
    out["cut"] = _train(mp, corpus, cut, _FakeTime(PER_STEP), resume=True)
    return out


EARLY = 13  # a SIGTERM before the decay starts (planned_reference: step 25)


def test_a_budgeted_run_decays_to_min_lr_as_the_budget_ends(budgeted):
    summary, said = budgeted["whole"]
    run = budgeted["root"] / "whole"
    D, N = planned_reference()
    lrs = _lrs(run)
    assert [s for s, _ in lrs] == list(range(1, D + N + 1))  # it ends with its decay
    assert summary["step"] == D + N and not summary["stopped_early"]
    for step, lr in lrs:  # metrics step s is update k = s - 1
        assert lr == pytest.approx(wsd_reference(step - 1, 3e-3, 3e-4, KW, D, N), rel=1e-6)
    assert lrs[-1][1] == pytest.approx(3e-4, rel=1e-6)
    meta = _meta(run, D + N)["schedule"]
    assert (meta["decay_start"], meta["decay_steps"]) == (D, N)
    assert meta["budget_seconds"] == pytest.approx(60 * BUDGET_MIN)  # it used the budget
    assert _meta(run, 10)["schedule"]["decay_start"] is None  # not set yet at step 10
    assert f"decay  step {D}:" in said and f"over steps {D + 1}–{D + N}" in said
    # the run's files keep --steps 0: a resume goes on by the clock and its checkpoint
    assert TrainConfig.from_dict(_config(run)).steps == 0


def _config(run):
    import json

    return json.loads((run / "config.json").read_text())["train"]


def test_a_resumed_budgeted_run_continues_the_same_schedule(budgeted):
    """Stopped before its decay (the clock carried over) and after it (the decay in the
    optimizer state), then resumed: the uninterrupted run's schedule and steps, bit for bit."""
    whole, cut = budgeted["root"] / "whole", budgeted["root"] / "cut"
    D, N = planned_reference()
    assert budgeted["stops"] == [(True, EARLY), (True, D + 2)]
    assert budgeted["early_meta"] == {
        "decay_start": None, "decay_steps": None, "budget_seconds": (EARLY - 1) * PER_STEP
    }  # fmt: skip
    assert not budgeted["cut"][0].get("preempted")
    assert _lrs(cut) == _lrs(whole)
    assert _losses(cut) == _losses(whole)  # bit for bit
    assert _meta(cut, D + N)["schedule"] == _meta(whole, D + N)["schedule"]


def test_a_finished_budgeted_run_is_done_and_extends_from_its_decay(budgeted):
    run = budgeted["root"] / "whole"
    D, N = planned_reference()
    cfg, mode = resolve("tiny", {"out": str(run)}, resume=True, log=lambda _: None)
    assert mode == "done" and cfg.steps == 0
    with pytest.raises(ConfigError, match=f"is {D + N} steps long"):
        resolve("tiny", {"out": str(run), "steps": D + N - 1}, resume=True)
    cfg, mode = resolve("tiny", {"out": str(run), "steps": D + N + 3}, resume=True)
    assert mode == "resume" and (cfg.steps, cfg.decay_steps) == (D + N + 3, D + N)


def test_a_machine_that_slows_in_the_decay_still_ends_it_at_min_lr(corpus, tmp_path):
    """The issue's failure: a budget that stops the run before its decay has ended. The
    steps after the decay is set (step 25) take 1.5 s instead of 1 s: the run still takes
    all N steps, to min_lr, over its budget by the slowdown (within the decay's share)."""
    D, N = planned_reference()
    mp = pytest.MonkeyPatch()
    clock = _FakeTime(PER_STEP, slow_after=D, then=1.5 * PER_STEP)
    summary, _ = _train(mp, corpus, tmp_path / "r", clock, sized=True)
    lrs = _lrs(tmp_path / "r")
    assert summary["step"] == D + N and not summary["stopped_early"]
    assert lrs[-1] == (D + N, pytest.approx(3e-4, rel=1e-6))
    spent = _meta(tmp_path / "r", D + N)["schedule"]["budget_seconds"]
    assert spent == (D - 1) * PER_STEP + N * 1.5 * PER_STEP > 60 * BUDGET_MIN


def test_a_fixed_run_ignores_the_clock(corpus, tmp_path):
    """--steps 20 with a clock 25 times slower than the budgeted runs': the decay starts
    at the step the config gives (16), as the formula says."""
    mp = pytest.MonkeyPatch()
    _train(mp, corpus, tmp_path / "a", _FakeTime(25.0), steps=20, max_minutes=10.0)
    D, N = fixed_reference(20, 0.2)
    want = [wsd_reference(s - 1, 3e-3, 3e-4, KW, D, N) for s in range(1, 21)]
    lrs = _lrs(tmp_path / "a")
    assert [s for s, _ in lrs] == list(range(1, 21))
    np.testing.assert_allclose([lr for _, lr in lrs], want, rtol=1e-6)
    assert _meta(tmp_path / "a", 20)["schedule"]["decay_start"] == D == 16


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--schedule", "linear"], ["--schedule 'linear'", "wsd", "cosine"]),
        (["--decay_share", "0"], ["--decay_share 0.0", "(0, 1)"]),
        (["--decay_share", "1.5"], ["--decay_share 1.5", "(0, 1)"]),
        (["--steps", "20", "--warmup_steps", "18"], ["--warmup_steps 18", "at most 16"]),
        (
            ["--steps", "0", "--max_minutes", "5", "--decay_steps", "100"],
            ["--decay_steps 100", "--steps 0", "drop --decay_steps"],
        ),
    ],
)
def test_bad_schedule_flags_fail_with_one_line(flags, words, tmp_path, capsys):
    argv = ["train", "--preset", "tiny", "--out", str(tmp_path / "r"), *flags]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and out == "", err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "r").exists()


def test_a_run_saved_before_the_schedule_flag_reads_as_the_cosine_it_ran():
    old = TrainConfig.preset("tiny").to_dict()
    del old["schedule"], old["decay_share"]
    cfg = TrainConfig.from_dict(old)
    assert cfg.schedule == "cosine"  # its checkpoints hold optax's cosine state
    assert TrainConfig.from_dict(TrainConfig.preset("tiny").to_dict()).schedule == "wsd"
