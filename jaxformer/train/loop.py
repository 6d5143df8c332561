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
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

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
    global_rows,
    init_params,
    make_mesh,
    make_sharded_step,
    parse_mesh,
    pin_for_mesh,
)
from ..parallel.batch import check_batch
from . import checkpoint as C
from . import data, optim, report, sampler, step
from .atomic import atomic_open
from .config import RESUMABLE, ConfigError, TrainConfig
from .loss import bits_per_byte
from .remat import build_model

# The default preset gets about 650 steps on an idle 2-core machine; far fewer is worth a note.
SLOW_STEPS = 500


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


def train(cfg: TrainConfig, resume: bool = False, log=_print) -> dict:
    """Train as ``cfg`` says, into ``cfg.run_dir``; returns a summary of the run."""
    t_start = time.time()
    mesh = _mesh(cfg.mesh, resume)  # first: a mesh that does not fit fails before any data is read
    one, lead = mesh.size == 1, jax.process_index() == 0
    log = log if lead else _silent
    run_dir = cfg.run_dir
    corpus = data.prepare(cfg, log=log)
    check_same(corpus.dir.name, "corpus or tokenizer (the cache key differs)")
    tok = corpus.tokenizer
    mcfg = cfg.model_config(tok.n_vocab)
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
    evaluate = _evaluator(step.make_eval_step(eval_model, cfg.compute_dtype), corpus, T, b, mesh)
    ckpt = C.Checkpoints(run_dir, keep=cfg.keep_checkpoints)
    start = 0
    if resume:
        start = ckpt.latest()
        if start is None:
            raise C.CheckpointError(f"--resume: {run_dir} holds no complete checkpoint yet")
        opt = optim.optimizer(cfg)
        opt_targets = abstract_opt_state(opt, targets)
        params, opt_state, meta = ckpt.restore(start, targets, opt_targets)  # onto this mesh
        if meta["sampler"] != {"seed": cfg.seed, "step": start}:
            raise C.CheckpointError(f"{run_dir}: checkpoint {start} has a foreign sampler state")
        if meta["tokenizer_sha256"] != data.tokenizer_sha256(tok):
            raise C.CheckpointError(
                f"--resume: the corpus or tokenizer changed since {run_dir} was trained "
                f"(the tokenizer's hash differs); train a new run with --out DIR"
            )
        train_step, _ = _stepper(model, opt, cfg.compute_dtype, mesh)
    else:
        key = jax.random.key(cfg.seed)
        params = model.init(key) if one else init_params(model, key, mesh)
        if cfg.steps == 0:
            cfg = _size_run(cfg, model, params, batch(0), evaluate, log, mesh)
        opt = optim.optimizer(cfg)
        train_step, init_opt = _stepper(model, opt, cfg.compute_dtype, mesh)
        opt_state = init_opt(params)
        if lead:
            C.save_run_files(run_dir, cfg, mcfg, tok)
    keep = start if resume else None
    metrics = report.Metrics(run_dir / "metrics.jsonl", keep) if lead else _NoMetrics()

    n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    log(
        f"model  {mcfg.family} L={mcfg.n_layers} d={mcfg.d_model} H={mcfg.n_heads} T={T} "
        f"V={mcfg.vocab_size}: {n_params / 1e6:.2f}M params\n"
        f"data   {corpus.source}: {corpus.train.size:,} train / {corpus.val.size:,} val tokens "
        f"({len(corpus.val_text.encode()) / corpus.val.size:.2f} bytes/token), "
        f"{batches.n_windows:,} windows of {T} per epoch\n"
        f"train  {cfg.steps} steps × {cfg.batch_size} sequences"
        + (f" ({M} micro-batches of {b})" if M > 1 else "")
        + f", lr {cfg.lr:g} → {cfg.min_lr:g}, {cfg.compute_dtype}, remat={cfg.remat}"
        + (f", {cfg.max_minutes:g} min budget" if cfg.max_minutes else "")
        + ("" if one else f"\nmesh   {_show(mesh)}")
        + f"\nout    {run_dir}"
        + (f"  (resuming at step {start})" if resume else "")
    )

    # The peak is re-measured at every eval and kept at its best: on a shared machine one
    # measurement can land in a busy moment, which would overstate the MFU. It is one
    # device's, times the devices (CPU devices forced by XLA_FLAGS share their process's cores).
    peak = [report.measure_peak_flops()]
    chips = jax.process_count() if jax.default_backend() == "cpu" else mesh.size
    mfu = lambda tok_s: tok_s * report.flops_per_token(mcfg, n_params) / (peak[0] * chips)
    lr = optim.schedule(cfg)
    show = cfg.progress and lead
    bar = tqdm(total=cfg.steps, initial=start, unit="step", disable=not show, leave=False)
    say = lambda s: bar.write(s) if show else log(s)

    def do_eval(k: int, full: bool) -> dict:
        peak[0] = max(peak[0], report.measure_peak_flops())
        nll, n_tok, n_bytes = evaluate(params, None if full else cfg.eval_batches)
        r = {
            "step": k, "val_loss": nll / n_tok, "val_ppl": math.exp(min(nll / n_tok, 50)),
            "val_bpb": bits_per_byte(nll, n_bytes), "bzip2_bpb": corpus.bzip2_bpb,
            "val_tokens": n_tok,
        }  # fmt: skip
        metrics.write(r)
        say(
            f"eval   step {k:>6}: val loss {r['val_loss']:.4f}  ppl {r['val_ppl']:.2f}  "
            f"bits/byte {r['val_bpb']:.4f} (bzip2 -9: {corpus.bzip2_bpb:.4f})"
            + ("  [all of val]" if full else f"  [{n_tok:,} val tokens]")
        )
        return r

    saved = [start] if resume else []

    tok_hash = data.tokenizer_sha256(tok)

    def save(k: int) -> None:
        meta = {"sampler": {"seed": cfg.seed, "step": k}, "tokenizer_sha256": tok_hash}
        ckpt.save(k, params, opt_state, meta | {"train": cfg.to_dict(), "model": mcfg.to_dict()})
        saved.append(k)

    k, stopped_early = start, False
    t_loop, t_mark, k_mark = time.time(), None, start
    try:
        while k < cfg.steps:
            params, opt_state, m = train_step(params, opt_state, batch(k))
            loss, gnorm = float(m["loss"]), float(m["grad_norm"])
            if not (math.isfinite(loss) and math.isfinite(gnorm)):
                ckpt.wait()
                good = ckpt.latest()
                raise Diverged(
                    f"step {k + 1}: the loss is {loss} and the gradient norm {gnorm}; training "
                    f"stopped. The last good checkpoint is "
                    + (f"step {good} in {ckpt.dir}" if good is not None else "none (no save yet)")
                    + ": lower --lr or raise --warmup_steps, then start again"
                    + (" (or --resume)" if good is not None else "")
                )
            k += 1
            metrics.write(
                {"step": k, "loss": loss, "grad_norm": gnorm, "lr": float(lr(k - 1))}
                | {"time": round(time.time() - t_loop, 3)}
            )
            bar.update(1)
            if t_mark is None:  # the first step compiled: time (and the budget) from here
                t_mark, k_mark = time.time(), k
            elif k % cfg.log_every == 0 or k == cfg.steps:
                tok_s = (k - k_mark) * cfg.batch_size * T / (time.time() - t_mark)
                bar.set_postfix_str(f"loss {loss:.3f}  {tok_s:,.0f} tok/s  MFU {mfu(tok_s):.1%}")
            if k % cfg.eval_every == 0 and k < cfg.steps:
                do_eval(k, full=False)
            if k % cfg.checkpoint_every == 0 and k < cfg.steps:
                save(k)
            if cfg.max_minutes and k < cfg.steps and _spent(t_mark, cfg.max_minutes):
                stopped_early = True
                say(f"stop   step {k}: --max_minutes {cfg.max_minutes:g} reached")
                break
    finally:
        bar.close()
    train_s = time.time() - t_loop
    tok_s = 0.0
    if t_mark is not None and k > k_mark:
        tok_s = (k - k_mark) * cfg.batch_size * T / (time.time() - t_mark)
    if not saved or saved[-1] != k:
        save(k)
    final = do_eval(k, full=True)
    metrics.close()
    ckpt.wait()
    ckpt.close()
    if not one and cfg.sample_tokens:  # the whole params, for process 0's sample
        params = multihost_utils.process_allgather(params, tiled=True)
    text = ""
    if lead:
        bytes_per_token = len(corpus.val_text.encode()) / corpus.val.size
        report.plot_loss(
            run_dir / "metrics.jsonl", run_dir / "loss.png", corpus.bzip2_bpb, bytes_per_token
        )
        prompt = cfg.prompt or corpus.val_text.lstrip().split("\n")[0]
        text = _sample(cfg, mcfg, params, tok, prompt)
        with atomic_open(run_dir / "sample.txt", "w") as f:
            f.write(text + "\n")
    summary = {
        "step": k, "steps": cfg.steps, "stopped_early": stopped_early,
        "val_bpb": final["val_bpb"], "val_loss": final["val_loss"], "bzip2_bpb": corpus.bzip2_bpb,
        "tokens_per_s": tok_s, "mfu": mfu(tok_s),
        "train_s": train_s, "total_s": time.time() - t_start, "n_params": n_params,
        "run_dir": str(run_dir), "sample": text,
    }  # fmt: skip
    verdict = "below" if final["val_bpb"] < corpus.bzip2_bpb else "NOT below"
    log(
        f"done   step {k}/{cfg.steps} in {train_s / 60:.1f} min of training "
        f"({summary['total_s'] / 60:.1f} min in all), {tok_s:,.0f} tok/s, "
        f"MFU {summary['mfu']:.1%}\n"
        f"val    {final['val_bpb']:.4f} bits/byte, {verdict} bzip2 -9's "
        f"{corpus.bzip2_bpb:.4f} on the same text\n"
        f"saved  checkpoint {ckpt.dir / str(k)}\n"
        f"       loss curve {run_dir / 'loss.png'}, metrics {run_dir / 'metrics.jsonl'}\n"
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


def _stepper(model, opt, compute_dtype: str, mesh=None):
    """(train_step, init_opt): the library's jitted step on one device, the sharded one
    (with the optimizer state initialised sharded like it) on a mesh."""
    if mesh is None or mesh.size == 1:
        return step.make_train_step(model, opt, compute_dtype), opt.init
    sharded = make_sharded_step(model, opt, mesh, compute_dtype=compute_dtype)
    return sharded, jax.jit(opt.init, out_shardings=sharded.opt_state)


def _spent(t0: float, minutes: float) -> bool:
    """Whether the time budget is spent, by process 0's clock: every process stops at once."""
    return from_lead(time.time() - t0 > 60 * minutes)


def _show(mesh) -> str:
    sizes = " × ".join(f"{a}={k}" for a, k in mesh.shape.items())
    P = jax.process_count()
    return f"{sizes}: {mesh.size} devices, {P} process{'es' if P > 1 else ''}"


def _size_run(cfg: TrainConfig, model, params, x, evaluate, log, mesh=None) -> TrainConfig:
    """``cfg`` with as many steps as fit in ``max_minutes``, from a few timed steps and an eval
    batch (the steps run on a copy, with a throwaway schedule: only the time is kept).
    Every process takes process 0's count."""
    probe = optim.optimizer(cfg.replace(steps=10**9))
    train_step, init_opt = _stepper(model, probe, cfg.compute_dtype, mesh)
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
    t_eval = (time.perf_counter() - t) * cfg.eval_batches / cfg.eval_every  # per step
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


def _evaluator(eval_step, corpus: data.Corpus, T: int, b: int, mesh):
    """evaluate(params, n_batches) → (Σ nll, #tokens, #bytes) over the val windows: all of
    them, or ``n_batches`` batches of b windows spread evenly over the val set. Each batch
    is split over the mesh's data × fsdp devices, as the train batches are."""
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

    return evaluate
