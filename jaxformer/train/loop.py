"""The training loop: data → steps → evals → checkpoints → loss curve → a sample.

    for k in start … K-1:
        θ, s = train_step(θ, s, sampler.batch(k))        loss and ‖g‖ must be finite
        every eval_every:        val loss, perplexity, bits per byte (vs bzip2)
        every checkpoint_every:  checkpoint (params, optimizer, step, sampler state)
    then: checkpoint, the full val set, loss.png, a sample.

The run is a function of its config: batch k is a function of (seed, k), and the
initial params of the seed, so a run resumed from the checkpoint at step k repeats
the uninterrupted run's steps bit for bit (on one machine).

On one device the step is the library's jitted step. On a mesh of many devices
(``--mesh``; across processes with ``--coordinator``) the same init and the same step
run sharded (``jaxformer.parallel``) on global arrays: each process reads its own part
of every batch and of the val windows, all processes save and restore the checkpoints
together (onto any mesh), and process 0 alone writes the run's files and prints.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from ..atomic import atomic_open
from ..core import require
from ..generate import generate
from ..models import build
from ..parallel import (
    MeshError,
    abstract_opt_state,
    abstract_params,
    barrier,
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
from . import data, optim, report, sampler, step
from .budget import size_run
from .config import RESUMABLE, ConfigError, TrainConfig
from .evaluate import make_evaluator
from .loss import bits_per_byte
from .process import keep_freed_memory
from .remat import build_model
from .sharded import stepper

# Fault injection for tests: the process kills itself (SIGKILL) right after this step.
FAULT = "JAXFORMER_FAULT_AT_STEP"


class Diverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; the last good checkpoint is kept."""


def resolve(cfg: TrainConfig, resume: bool, overwrite: bool, explicit: set[str]) -> TrainConfig:
    """The config to run: ``cfg`` for a new run, the saved one (with loop-only changes) on
    resume. Refuses to train over an existing run unless asked to."""
    run_dir = cfg.run_dir
    exists = (run_dir / "config.json").exists()
    if resume:
        if not exists:
            raise ConfigError(f"--resume: {run_dir} holds no run to resume; drop --resume")
        saved, _ = C.read_run_config(run_dir)
        changed = {k for k in explicit if getattr(cfg, k) != getattr(saved, k)} - {"out", "name"}
        if changed - RESUMABLE:
            raise ConfigError(
                f"--resume: {sorted(changed - RESUMABLE)} differ from the saved run; a resumed "
                f"run keeps its settings except {sorted(RESUMABLE)}"
            )
        return saved.replace(out=str(run_dir), **{k: getattr(cfg, k) for k in changed})
    if exists or (run_dir / "checkpoints").exists():
        if not overwrite:
            raise ConfigError(
                f"{run_dir} already holds a run: pass --resume to continue it, --overwrite "
                "to start it again, or --out DIR for a new one"
            )
        if jax.process_index() == 0:
            shutil.rmtree(run_dir)
    barrier("train: run directory checked")  # no process writes before all looked
    return cfg


def _print(line: str) -> None:
    print(line, flush=True)  # promptly, also into a pipe or a log file


def _silent(line: str) -> None:
    pass


class _NoMetrics:  # what processes other than 0 write
    def write(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


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


def train(cfg: TrainConfig, resume: bool = False, log=_print) -> dict:
    """Train as ``cfg`` says, into ``cfg.run_dir``; returns a summary of the run."""
    keep_freed_memory()
    t_start = time.time()
    run = _setup(cfg, resume, log)
    start, params, opt_state, train_step = _start(run, resume)
    cfg = run.cfg  # sized to the time budget on a new run
    run.log(_announce(run, params, start, resume))
    progress = _Progress(run, start, resume)
    k, stopped, tok_s, train_s = _loop(run, progress, params, opt_state, train_step, start, resume)
    return _finish(run, progress, k, stopped, tok_s, train_s, t_start)


def _setup(cfg: TrainConfig, resume: bool, log) -> _Run:
    """Every check that can fail before training: the mesh, the data, the model's faces."""
    mesh = _mesh(cfg.mesh, resume)  # first: a mesh that does not fit fails before any data is read
    one, lead = mesh.size == 1, jax.process_index() == 0
    log = log if lead else _silent
    faces = build_model(cfg.model_config(cfg.vocab_size), cfg.remat)  # before any work
    require(faces, "term", "train (its FLOPs, for the MFU)")
    if cfg.sample_tokens:
        require(faces, "decode", "train (its final sample)")
    corpus = data.prepare(cfg, log=log)
    check_same(corpus.dir.name, "corpus or tokenizer (the cache key differs)")
    mcfg = cfg.model_config(corpus.tokenizer.n_vocab)
    model = build_model(mcfg, cfg.remat)
    M, T = cfg.micro_batches, cfg.context
    b = cfg.batch_size // M
    try:  # the mesh must split the model's axes and the batch evenly
        targets = abstract_params(model, mesh)
        check_batch((M, b, T + 1), mesh)
    except MeshError as e:
        raise MeshError(f"--mesh {cfg.mesh or 'data=-1'!r}: {e}") from None
    i, n = data_shard(mesh)  # this process reads part i of n of every batch
    batches = sampler.BatchSampler(corpus.train.size, T, cfg.batch_size, cfg.seed, i, n)
    put = (lambda x: x) if one else (lambda x: global_batch(x, mesh))  # one device: from host
    batch = lambda k: put(batches.batch(corpus.train, k).reshape(M, b // n, T + 1))
    eval_model = model if one else pin_for_mesh(model, mesh)
    evaluate = make_evaluator(
        step.make_eval_step(eval_model, cfg.compute_dtype), corpus, T, b, mesh
    )
    ckpt = C.Checkpoints(cfg.run_dir, keep=cfg.keep_checkpoints)
    return _Run(cfg, mesh, corpus, mcfg, model, batch, batches.n_windows, evaluate, ckpt,
                targets, lead, log)  # fmt: skip


def _start(run: _Run, resume: bool):
    """(start step, params, opt_state, train_step): restored on resume, else drawn from the
    seed (and the run sized to its time budget when ``--steps 0``)."""
    cfg, mesh = run.cfg, run.mesh
    if resume:
        start = run.ckpt.latest()
        if start is None:
            raise C.CheckpointError(f"--resume: {cfg.run_dir} holds no complete checkpoint yet")
        opt = optim.optimizer(cfg)
        opt_targets = abstract_opt_state(opt, run.targets)
        params, opt_state, meta = run.ckpt.restore(start, run.targets, opt_targets)
        if meta["sampler"] != {"seed": cfg.seed, "step": start}:
            raise C.CheckpointError(
                f"{cfg.run_dir}: checkpoint {start} has a foreign sampler state"
            )
        if meta["tokenizer_sha256"] != run.corpus.tokenizer_sha256:
            raise C.CheckpointError(
                f"--resume: the corpus or tokenizer changed since {cfg.run_dir} was trained "
                f"(the tokenizer's hash differs); train a new run with --out DIR"
            )
        return start, params, opt_state, stepper(run.model, opt, cfg.compute_dtype, mesh)[0]
    key = jax.random.key(cfg.seed)
    params = run.model.init(key) if mesh.size == 1 else init_params(run.model, key, mesh)
    if cfg.steps == 0:
        run.cfg = cfg = size_run(cfg, run.model, params, run.batch(0), run.evaluate, run.log, mesh)
    opt = optim.optimizer(cfg)
    train_step, init_opt = stepper(run.model, opt, cfg.compute_dtype, mesh)
    if run.lead:
        C.save_run_files(cfg.run_dir, cfg, run.mcfg, run.corpus.tokenizer)
    return 0, params, init_opt(params), train_step


def _announce(run: _Run, params, start: int, resume: bool) -> str:
    cfg, mcfg, corpus, T, M = run.cfg, run.mcfg, run.corpus, run.cfg.context, run.cfg.micro_batches
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    return (
        f"model  {mcfg.family} L={mcfg.n_layers} d={mcfg.d_model} H={mcfg.n_heads} T={T} "
        f"V={mcfg.vocab_size}: {n_params / 1e6:.2f}M params\n"
        f"data   {corpus.source}: {corpus.train.size:,} train / {corpus.val.size:,} val tokens "
        f"({len(corpus.val_text.encode()) / corpus.val.size:.2f} bytes/token), "
        f"{run.n_windows:,} windows of {T} per epoch\n"
        f"train  {cfg.steps} steps × {cfg.batch_size} sequences"
        + (f" ({M} micro-batches of {cfg.batch_size // M})" if M > 1 else "")
        + f", lr {cfg.lr:g} → {cfg.min_lr:g}, {cfg.compute_dtype}, remat={cfg.remat}"
        + (f", {cfg.max_minutes:g} min budget" if cfg.max_minutes else "")
        + ("" if run.mesh.size == 1 else f"\nmesh   {_show(run.mesh)}")
        + f"\nout    {cfg.run_dir}"
        + (f"  (resuming at step {start})" if resume else "")
    )


class _Progress:
    """The bar, the metrics file, the evals and the MFU of a run (process 0 writes)."""

    def __init__(self, run: _Run, start: int, resume: bool):
        cfg = run.cfg
        self.run, self.show = run, cfg.progress and run.lead
        self.metrics = report.Metrics(cfg.run_dir / "metrics.jsonl", start if resume else None)
        self.metrics = self.metrics if run.lead else _NoMetrics()
        self.bar = tqdm(total=cfg.steps, initial=start, unit="step", disable=not self.show,
                        leave=False)  # fmt: skip
        # The peak is re-measured at every eval and kept at its best: on a shared machine one
        # measurement can land in a busy moment, which would overstate the MFU. It is one
        # device's, times the devices (CPU devices forced by XLA_FLAGS share their cores).
        self.peak = report.measure_peak_flops()
        cpu = jax.default_backend() == "cpu"
        self.chips = jax.process_count() if cpu else run.mesh.size
        self.flops = report.flops_per_token(run.model, cfg.context)
        self.params = None  # the final params, once the loop has run

    def say(self, line: str) -> None:
        self.bar.write(line) if self.show else self.run.log(line)

    def mfu(self, tok_s: float) -> float:
        return tok_s * self.flops / (self.peak * self.chips)

    def evaluate(self, params, k: int, full: bool) -> dict:
        corpus = self.run.corpus
        self.peak = max(self.peak, report.measure_peak_flops())
        nll, n_tok, n_bytes = self.run.evaluate(params, None if full else self.run.cfg.eval_batches)
        r = {
            "step": k, "val_loss": nll / n_tok, "val_ppl": math.exp(min(nll / n_tok, 50)),
            "val_bpb": bits_per_byte(nll, n_bytes), "bzip2_bpb": corpus.bzip2_bpb,
            "val_tokens": n_tok,
        }  # fmt: skip
        self.metrics.write(r)
        self.say(
            f"eval   step {k:>6}: val loss {r['val_loss']:.4f}  ppl {r['val_ppl']:.2f}  "
            f"bits/byte {r['val_bpb']:.4f} (bzip2 -9: {corpus.bzip2_bpb:.4f})"
            + ("  [all of val]" if full else f"  [{n_tok:,} val tokens]")
        )
        return r


def _save(run: _Run, k: int, params, opt_state) -> None:
    meta = {"sampler": {"seed": run.cfg.seed, "step": k}}
    meta |= {"tokenizer_sha256": run.corpus.tokenizer_sha256}
    meta |= {"train": run.cfg.to_dict(), "model": run.mcfg.to_dict()}
    run.ckpt.save(k, params, opt_state, meta)


def _loop(run: _Run, progress: _Progress, params, opt_state, train_step, start, resume):
    """The steps from ``start`` to the end (or the time budget), saving as they go; the
    final params are saved and left in ``progress.params``. (last step, stopped early,
    tokens/s over the steps after the first, seconds of training)."""
    cfg, T, lr = run.cfg, run.cfg.context, optim.schedule(run.cfg)
    k, stopped, saved = start, False, start if resume else None
    fault = int(os.environ.get(FAULT, 0))
    t_loop, t_mark, k_mark = time.time(), None, start
    try:
        while k < cfg.steps:
            params, opt_state, m = train_step(params, opt_state, run.batch(k))
            loss, gnorm = float(m["loss"]), float(m["grad_norm"])
            if not (math.isfinite(loss) and math.isfinite(gnorm)):
                raise _diverged(run, k, loss, gnorm)
            k += 1
            progress.metrics.write(
                {"step": k, "loss": loss, "grad_norm": gnorm, "lr": float(lr(k - 1))}
                | {"time": round(time.time() - t_loop, 3)}
            )
            if k == fault:  # a test's kill -9 at a known step, once its metrics line is out
                os.kill(os.getpid(), signal.SIGKILL)
            progress.bar.update(1)
            if t_mark is None:  # the first step compiled: time (and the budget) from here
                t_mark, k_mark = time.time(), k
            elif k % cfg.log_every == 0 or k == cfg.steps:
                tok_s = (k - k_mark) * cfg.batch_size * T / (time.time() - t_mark)
                progress.bar.set_postfix_str(
                    f"loss {loss:.3f}  {tok_s:,.0f} tok/s  MFU {progress.mfu(tok_s):.1%}"
                )
            if k % cfg.eval_every == 0 and k < cfg.steps:
                progress.evaluate(params, k, full=False)
            if k % cfg.checkpoint_every == 0 and k < cfg.steps:
                _save(run, k, params, opt_state)
                saved = k
            if cfg.max_minutes and k < cfg.steps and _spent(t_mark, cfg.max_minutes):
                stopped = True
                progress.say(f"stop   step {k}: --max_minutes {cfg.max_minutes:g} reached")
                break
    finally:
        progress.bar.close()
    train_s = time.time() - t_loop
    tok_s = 0.0
    if t_mark is not None and k > k_mark:
        tok_s = (k - k_mark) * cfg.batch_size * T / (time.time() - t_mark)
    if saved != k:
        _save(run, k, params, opt_state)
    progress.params = params
    return k, stopped, tok_s, train_s


def _diverged(run: _Run, k: int, loss: float, gnorm: float) -> Diverged:
    run.ckpt.wait()
    good = run.ckpt.latest()
    return Diverged(
        f"step {k + 1}: the loss is {loss} and the gradient norm {gnorm}; training "
        f"stopped. The last good checkpoint is "
        + (f"step {good} in {run.ckpt.dir}" if good is not None else "none (no save yet)")
        + ": lower --lr or raise --warmup_steps, then start again"
        + (" (or --resume)" if good is not None else "")
    )


def _finish(run: _Run, progress: _Progress, k: int, stopped: bool, tok_s, train_s, t_start):
    """The final eval over all of val, the loss curve, a sample and the summary."""
    cfg, corpus, params = run.cfg, run.corpus, progress.params
    final = progress.evaluate(params, k, full=True)
    progress.metrics.close()
    run.ckpt.wait()
    run.ckpt.close()
    if run.mesh.size > 1 and cfg.sample_tokens:  # the whole params, for process 0's sample
        params = multihost_utils.process_allgather(params, tiled=True)
    text = ""
    if run.lead:
        bytes_per_token = len(corpus.val_text.encode()) / corpus.val.size
        metrics = cfg.run_dir / "metrics.jsonl"
        report.plot_loss(metrics, cfg.run_dir / "loss.png", corpus.bzip2_bpb, bytes_per_token)
        prompt = cfg.prompt or corpus.val_text.lstrip().split("\n")[0]
        text = _sample(cfg, run.mcfg, params, corpus.tokenizer, prompt)
        with atomic_open(cfg.run_dir / "sample.txt", "w") as f:
            f.write(text + "\n")
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    summary = {
        "step": k, "steps": cfg.steps, "stopped_early": stopped,
        "val_bpb": final["val_bpb"], "val_loss": final["val_loss"], "bzip2_bpb": corpus.bzip2_bpb,
        "tokens_per_s": tok_s, "mfu": progress.mfu(tok_s),
        "train_s": train_s, "total_s": time.time() - t_start, "n_params": n_params,
        "run_dir": str(cfg.run_dir), "sample": text,
    }  # fmt: skip
    verdict = "below" if final["val_bpb"] < corpus.bzip2_bpb else "NOT below"
    run.log(
        f"done   step {k}/{cfg.steps} in {train_s / 60:.1f} min of training "
        f"({summary['total_s'] / 60:.1f} min in all), {tok_s:,.0f} tok/s, "
        f"MFU {summary['mfu']:.1%}\n"
        f"val    {final['val_bpb']:.4f} bits/byte, {verdict} bzip2 -9's "
        f"{corpus.bzip2_bpb:.4f} on the same text\n"
        f"saved  checkpoint {run.ckpt.dir / str(k)}\n"
        f"       loss curve {cfg.run_dir / 'loss.png'}, metrics {cfg.run_dir / 'metrics.jsonl'}\n"
        f"sample (temperature {cfg.temperature:g}):\n\n{text}\n"
    )
    return summary


def _sample(cfg: TrainConfig, mcfg, params, tok, prompt: str) -> str:
    """``prompt`` and up to ``sample_tokens`` more (as many as the context leaves room for)."""
    ids = tok.encode_ordinary(prompt)[-(mcfg.context // 2) :]
    n = min(cfg.sample_tokens, mcfg.context - len(ids))
    if not ids or n < 1:
        return prompt
    key = jax.random.key(cfg.seed)
    new = generate(build(mcfg), params, ids, n, key=key, temperature=cfg.temperature)
    return tok.decode(ids + [int(t) for t in new])


def _mesh(text: str, resume: bool):
    """The mesh ``--mesh`` names over all devices of all processes ("" = all on data)."""
    try:
        return make_mesh(**parse_mesh(text or "data=-1"))
    except MeshError as e:
        hint = " (a resumed run keeps its saved --mesh unless given another)" if resume else ""
        raise MeshError(f"--mesh {text!r}: {e}{hint}") from None


def _spent(t0: float, minutes: float) -> bool:
    """Whether the time budget is spent, by process 0's clock: every process stops at once."""
    return from_lead(time.time() - t0 > 60 * minutes)


def _show(mesh) -> str:
    sizes = " × ".join(f"{a}={k}" for a, k in mesh.shape.items())
    P = jax.process_count()
    return f"{sizes}: {mesh.size} devices, {P} process{'es' if P > 1 else ''}"
