"""The training loop: data → steps → evals → checkpoints → loss curve → a sample.

    for k in start … K-1:
        θ, s = train_step(θ, s, sampler.batch(k))        loss and ‖g‖ must be finite
        every eval_every:        val loss, perplexity, bits per byte (vs bzip2)
        every checkpoint_every:  checkpoint (params, optimizer, step, sampler state)
    then: checkpoint, the full val set, loss.png, a sample (``finish.py``).

The run is a function of its config: batch k is a function of (seed, k), and the
initial params of the seed (or, with ``--init-from DIR``, DIR's weights: ``pretrained.py``),
so a run resumed from the checkpoint at step k repeats the uninterrupted run's steps bit
for bit (on one machine).

Stopping and starting again (``resolve.py``, ``resumed.py``):
  * SIGTERM saves a checkpoint at the next step boundary and returns, preempted;
    Ctrl-C (KeyboardInterrupt) leaves the last complete checkpoint;
  * resuming starts from the newest checkpoint whose files verify; newer damaged ones
    are set aside in ``damaged/``, with a note, never deleted;
  * a run directory without a complete checkpoint starts again, with a note, when its
    command is run again (with or without --resume); one with a checkpoint is never
    trained over without --overwrite;
  * a finished run continues with ``--resume --steps N``: its schedule keeps its length
    (``decay_steps``), then stays at min_lr.

The schedule (``optim.py``): a run of fixed ``--steps`` decays from a step its config
fixes. A time-budgeted WSD run (``--steps 0``) runs at η until (1 − decay_share) of
``--max_minutes`` is spent, then fixes its decay (``budget.decay_plan``) and ends with it,
at η_min; the decay is in the optimizer state and the budget's seconds in each
checkpoint, so a resumed run continues the same schedule and the same clock. (A run
that slows down in its decay may run over, up to (1 + decay_share) of the budget.)

On one device the step is the library's jitted step. On a mesh of many devices
(``--mesh``; across processes with ``--coordinator``) the same init and the same step
run sharded (``jaxformer.parallel``) on global arrays: each process reads its own part
of every batch and of the val windows, all processes save and restore the checkpoints
together (onto any mesh), and process 0 alone writes the run's files and prints.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax

from ..core import require
from ..models.lora import ADAPTER
from ..parallel import (
    MeshError,
    abstract_opt_state,
    abstract_params,
    check_same,
    data_shard,
    from_lead,
    global_batch,
    init_params,
    make_mesh,
    parse_mesh,
    pin_for_mesh,
)
from ..parallel.batch import check_batch
from . import checkpoint as C
from . import data, length, optim, packing, pretrained, sampler, step
from .announce import announce
from .budget import Spent, size_run
from .config import TrainConfig
from .evaluate import make_evaluator
from .finish import finish
from .preempt import Preemption
from .process import keep_freed_memory
from .progress import Progress, expert_metrics
from .remat import build_model
from .resolve import say, silent
from .resumed import check_saved_with, intact_start
from .sharded import stepper

# Fault injection for tests: the process signals itself right after this step: "N" is
# SIGKILL after step N, "N:TERM" SIGTERM, "N:INT" SIGINT (Ctrl-C).
FAULT = "JAXFORMER_FAULT_AT_STEP"


def _fault() -> tuple[int, int]:
    at, _, name = os.environ.get(FAULT, "0").partition(":")
    return int(at), getattr(signal, f"SIG{name or 'KILL'}")


class Diverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class _Run:
    """What a run is made of, set up once by ``_setup`` and read by the steps below."""

    cfg: TrainConfig
    mesh: object
    corpus: data.Corpus
    mcfg: object  # the models.Config trained
    model: object
    batch: Callable  # k ↦ batch k, [M, b, T+1] on the mesh
    n_windows: int
    evaluate: Callable  # (params, n_batches | None) ↦ (Σ nll, #tokens, #bytes)
    ckpt: C.Checkpoints
    targets: object  # abstract params with the mesh's shardings
    lead: bool
    log: Callable
    clock: Callable = time.monotonic  # the budget's seconds (a test's fake clock)
    schedule: length.Schedule | None = None  # set by ``_start``
    efficiency: float | None = None  # packed documents: the fraction of slots holding tokens


def train(
    cfg: TrainConfig,
    resume: bool = False,
    log=say,
    stop: Preemption | None = None,
    clock: Callable = time.monotonic,
):
    """Train as ``cfg`` says, into ``cfg.run_dir``; returns a summary of the run. SIGTERM
    stops it at the next step boundary with a checkpoint (``summary["preempted"]``);
    ``stop``: a ``Preemption`` already entered (by the command, before its imports);
    ``clock``: the seconds charged to ``--max_minutes`` (process 0's counts)."""
    keep_freed_memory()
    t_start = time.time()
    with stop or Preemption() as stop:
        run = _setup(cfg, resume, log)
        run.clock = clock
        start, params, opt_state, train_step = _start(run, resume)
        cfg = run.cfg  # sized to the time budget on a new run
        run.log(announce(run, params, start, resume))
        view = dataclasses.replace(run, cfg=length.Planned(cfg, run.schedule.planned))
        progress = Progress(view, start, resume)
        k, why, tok_s, train_s = _loop(run, progress, params, opt_state, train_step, start,
                                       resume, stop)  # fmt: skip
    if why == "preempted":
        return _preempted(run, progress, k)
    return finish(run, progress, k, why == "budget", tok_s, train_s, t_start)


def _setup(cfg: TrainConfig, resume: bool, log) -> _Run:
    """Every check that can fail before training: the mesh, the data, the model's faces."""
    mesh = _mesh(cfg.mesh, resume)  # first: a mesh that does not fit fails before any data is read
    one, lead = mesh.size == 1, jax.process_index() == 0
    log = log if lead else silent
    faces = build_model(cfg.model_config(cfg.vocab_size), cfg.remat)  # before any work
    require(faces, "term", "train (its FLOPs, for the MFU)")
    if cfg.sample_tokens:
        require(faces, "decode", "train (its final sample)")
    # a resumed run from a pretrained model reads the tokenizer it saved, not the source's
    saved = data.load_tokenizer(cfg.run_dir) if resume and cfg.init_from else None
    corpus = data.prepare(cfg, log=log, tokenizer=saved)
    check_same(corpus.dir.name, "corpus or tokenizer (the cache key differs)")
    mcfg = cfg.model_config(cfg.vocab_size if cfg.init_from else corpus.tokenizer.n_vocab)
    if corpus.tokenizer.n_vocab > mcfg.vocab_size:
        raise data.DataError(
            f"--init-from {cfg.init_from}: its tokenizer has {corpus.tokenizer.n_vocab} ids, "
            f"its model only {mcfg.vocab_size} rows; the tokenizer belongs to another model"
        )
    model = pretrained.adapted(cfg, build_model(mcfg, cfg.remat), mesh)
    M, T = cfg.micro_batches, cfg.context
    b = cfg.batch_size // M
    try:  # the mesh must split the model's axes and the batch evenly
        targets = abstract_params(model, mesh)
        check_batch((M, b, T + 1), mesh)
    except MeshError as e:
        raise MeshError(f"--mesh {cfg.mesh or 'data=-1'!r}: {e}") from None
    if cfg.freeze:
        pretrained.check_freeze(cfg.freeze, targets)
    i, n = data_shard(mesh)  # this process reads part i of n of every batch
    put = (lambda x: x) if one else (lambda x: jax.tree.map(lambda a: global_batch(a, mesh), x))
    val, efficiency = None, None
    if corpus.train_docs is not None:  # documents, packed into windows once
        windows, efficiency = packing.pack(corpus.train_docs, T)
        val = packing.pack(corpus.val_docs, T)[0]
        batches = sampler.WindowSampler(len(windows.tokens), cfg.batch_size, cfg.seed, i, n)
        batch = lambda k: put(batches.batch(windows, k).reshape(M, b // n))
    else:
        batches = sampler.BatchSampler(corpus.train.size, T, cfg.batch_size, cfg.seed, i, n)
        batch = lambda k: put(batches.batch(corpus.train, k).reshape(M, b // n, T + 1))
    eval_model = model if one else pin_for_mesh(model, mesh)
    evaluate = make_evaluator(
        step.make_eval_step(eval_model, cfg.compute_dtype), corpus, T, b, mesh, val
    )
    ckpt = C.Checkpoints(cfg.run_dir, keep=cfg.keep_checkpoints)
    return _Run(cfg, mesh, corpus, mcfg, model, batch, batches.n_windows, evaluate, ckpt,
                targets, lead, log, efficiency=efficiency)  # fmt: skip


def _start(run: _Run, resume: bool):
    """(start step, params, opt_state, train_step): restored from the newest intact
    checkpoint on resume, else drawn from the seed (and the run sized to its time budget
    when ``--steps 0``)."""
    cfg, mesh = run.cfg, run.mesh
    if resume:
        start = intact_start(run)
        meta = run.ckpt.meta(start)
        check_saved_with(run, start, meta)
        opt = optim.optimizer(cfg)
        opt_targets = abstract_opt_state(opt, run.targets)
        params, opt_state, _ = run.ckpt.restore(start, run.targets, opt_targets, verified=True)
        run.schedule = length.resumed(cfg, start, meta, optim.decay_of(opt_state))
        if run.lead:  # a run continued for more steps records its new length
            saved, _ = C.read_run_config(cfg.run_dir)
            if (saved.steps, saved.decay_steps) != (cfg.steps, cfg.decay_steps):
                longer = saved.replace(steps=cfg.steps, decay_steps=cfg.decay_steps)
                C.save_run_config(cfg.run_dir, longer, run.mcfg)
        step_fn = stepper(run.model, opt, cfg.compute_dtype, mesh, optim.labels(cfg))[0]
        return start, params, opt_state, step_fn
    key = jax.random.key(cfg.seed)
    if cfg.init_from:
        params = pretrained.initial_params(cfg, run.mcfg, run.targets)
        if cfg.lora_rank:  # the adapters as lora draws them: B = 0, the pretrained map
            params |= {ADAPTER: run.model.init(key)[ADAPTER]}
    else:
        params = run.model.init(key) if mesh.size == 1 else init_params(run.model, key, mesh)
    budgeted = cfg.steps == 0 and cfg.schedule == "wsd"
    if cfg.steps == 0:  # a WSD run keeps --steps 0 (the clock decides), with the warmup capped
        sized = size_run(cfg, run.model, params, run.batch(0), run.evaluate, run.log, mesh)
        run.cfg = cfg = sized.replace(steps=0) if budgeted else sized
        planned = sized.steps
    else:
        planned = cfg.steps
    decay = cfg.fixed_decay if cfg.schedule == "wsd" else None
    run.schedule = length.Schedule(budgeted, None if budgeted else cfg.steps, planned, decay)
    opt = optim.optimizer(cfg)
    train_step, init_opt = stepper(run.model, opt, cfg.compute_dtype, mesh, optim.labels(cfg))
    if run.lead:
        C.save_run_files(cfg.run_dir, cfg, run.mcfg, run.corpus.tokenizer)
    return 0, params, init_opt(params), train_step


def _save(run: _Run, k: int, params, opt_state, spent: float) -> None:
    meta = {"sampler": {"seed": run.cfg.seed, "step": k}}
    meta |= {"tokenizer_sha256": run.corpus.tokenizer_sha256}
    meta |= {"train": run.cfg.to_dict(), "model": run.mcfg.to_dict()}
    if run.cfg.schedule == "wsd":  # also in opt_state; here to be read without restoring it
        D, N = run.schedule.decay or (None, None)
        meta |= {"schedule": {"decay_start": D, "decay_steps": N, "budget_seconds": spent}}
    run.ckpt.save(k, params, opt_state, meta)


def _loop(run: _Run, progress: Progress, params, opt_state, train_step, start, resume, stop):
    """The steps from ``start`` to the end, the time budget or a SIGTERM, saving as they
    go; the last params are saved and left in ``progress.params``. (last step, why it
    stopped: "end" | "budget" | "preempted", tokens/s over the training steps, seconds)."""
    cfg, sched = run.cfg, run.schedule
    k, why, saved = start, "end", start if resume else None
    fault, fault_signal = _fault()
    if start == 0 and cfg.init_from:  # the pretrained model's own val loss: the baseline
        progress.evaluate(params, 0, full=False)
    t_loop = time.time()
    # a budgeted run's clock goes on from its checkpoint; a fixed run's budget is per command
    spent = Spent(run.clock, sched.spent, start) if sched.budgeted else Spent(run.clock)
    try:
        while sched.length is None or k < sched.length:
            t0 = time.perf_counter()
            params, opt_state, m = train_step(params, opt_state, run.batch(k))
            loss, gnorm = float(m["loss"]), float(m["grad_norm"])
            seconds = time.perf_counter() - t0
            if not (math.isfinite(loss) and math.isfinite(gnorm)):
                raise _diverged(run, k, loss, gnorm)
            k += 1
            experts = expert_metrics(m)
            lr = optim.learning_rate(cfg, k - 1, sched.decay)
            progress.metrics.write(
                {"step": k, "loss": loss, "grad_norm": gnorm, "lr": lr}
                | experts
                | {"time": round(time.time() - t_loop, 3)}
            )
            if k == fault:  # a test's signal at a known step, once its metrics line is out
                os.kill(os.getpid(), fault_signal)
            progress.step(k, seconds, loss, experts)
            more = sched.length is None or k < sched.length  # the last step's come after
            if k % cfg.eval_every == 0 and more:
                progress.evaluate(params, k, full=False)
            t = spent.charge()  # after the eval: the budget counts what evals cost
            if sched.budgeted and sched.decay is None and (plan := length.plan_by_lead(cfg, k, t)):
                opt_state = optim.with_decay(opt_state, *plan)
                _decided(run, progress, plan, k, t)
            if k % cfg.checkpoint_every == 0 and more:
                _save(run, k, params, opt_state, spent.seconds)
                saved = k
            if more and (why := _stop_reason(length.limit(cfg, sched), t, stop)) != "end":
                if why == "budget":
                    progress.say(length.over_budget(cfg, sched, k, lr))
                break
    finally:
        progress.close()
    train_s = time.time() - t_loop
    if saved != k:
        _save(run, k, params, opt_state, spent.seconds)
    progress.params = params
    return k, why, progress.tokens_per_s(), train_s


def _decided(run: _Run, progress: Progress, plan: tuple[int, int], k: int, t: float) -> None:
    """The decay is set: the run's length is known now; say so, and show it on the bar."""
    run.schedule.decided(plan)
    D, N = plan
    progress.run.cfg.steps = D + N
    if progress.bar is not None:
        progress.bar.total = D + N
        progress.bar.refresh()
    progress.say(
        f"decay  step {k}: {t / 60:.2f} of {run.cfg.max_minutes:g} min spent; the lr decays "
        f"to {run.cfg.min_lr:g} over steps {D + 1}–{D + N} ({N} steps at the "
        f"{(k - 1) / t:.2f} steps/s so far)"
    )


def _stop_reason(limit: float, spent: float, stop: Preemption) -> str:
    """Why to stop after this step: "preempted" (SIGTERM), "budget" (``limit`` seconds
    spent, 0: none) or "end" (go on), by process 0's signal and clock: every process
    stops at once."""
    over = limit and spent > limit
    return ("end", "budget", "preempted")[from_lead(2 if stop.requested else int(bool(over)))]


def _preempted(run: _Run, progress: Progress, k: int) -> dict:
    """After a SIGTERM: the checkpoint of step ``k`` is written; say how to go on."""
    progress.metrics.close()
    run.ckpt.wait()
    run.ckpt.close()
    run.log(
        f"stop   step {k} of {length.steps_text(run.schedule)}: SIGTERM; checkpoint {k} "
        f"saved. Resume with: jaxformer train --out {run.cfg.run_dir} --resume"
    )
    steps = run.schedule.length or run.schedule.planned
    return {"step": k, "steps": steps, "preempted": True, "run_dir": str(run.cfg.run_dir)}


def _diverged(run: _Run, k: int, loss: float, gnorm: float) -> Diverged:
    run.ckpt.wait()
    good = run.ckpt.latest()
    return Diverged(
        f"step {k + 1}: the loss is {loss} and the gradient norm {gnorm}; training "
        f"stopped. The last good checkpoint is "
        + (f"step {good} in {run.ckpt.dir}" if good is not None else "none (no save yet)")
        + ": lower --lr or raise --warmup_steps, then run the command again"
        + (" with --overwrite (resuming would repeat the same steps)" if good is not None else "")
    )


def _mesh(text: str, resume: bool):
    """The mesh ``--mesh`` names over all devices of all processes ("" = all on data)."""
    try:
        return make_mesh(**parse_mesh(text or "data=-1"))
    except MeshError as e:
        hint = " (a resumed run keeps its saved --mesh unless given another)" if resume else ""
        raise MeshError(f"--mesh {text!r}: {e}{hint}") from None
