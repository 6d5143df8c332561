"""Training an SAE on a model's activations, streamed through a shuffled buffer.

    windows of the train tokens ─model.trace─▶ x at the point ─·s─▶ Buffer ─▶ minibatch
    ─▶ Adam step on the variant's objective ─▶ W_dec ← unit_rows(W_dec) ─▶ …

- The activations are scaled by s = √d / E‖x‖ (sae-lens' "expected_average_only_in"), so
  that coefficients (--l1, --l0) mean the same at every point; s is estimated once from
  windows of its own seed, and folded out of the saved SAE (b_enc/s, b_dec/s, θ/s: the
  latents scale by 1/s, the decoder stays unit-norm), which then reads raw activations.
- b_dec starts at the mean of that sample, the decoder at the encoder's transpose.
- The learning rate warms up linearly over --warmup steps, then holds, then decays
  linearly to 0 over the last --decay_share of the run: of --steps, or of --minutes when
  that ends first.
- Dead latents (not fired on the last --dead_tokens tokens) are fitted to the residual by
  aux-k (topk), or, with --resample_every N, resampled every N steps (any variant): a dead
  latent's decoder row becomes the unit direction of an input drawn with probability ∝
  its squared error, its encoder column that direction times 0.2 × the mean live column
  norm, its encoder bias 0, and its Adam moments 0 (Bricken et al. 2023).
- A checkpoint (orbax, ``rundir.Checkpoints``) holds the SAE, the Adam state, the steps
  since each latent fired and the buffer (its store and counters): a resumed run is the
  uninterrupted one bit for bit (given --steps and no --minutes, which reads the clock).

``train(cfg, model, params, train_tokens, val_tokens, out)`` writes ``out/sae`` (files.py),
``out/metrics.jsonl`` (step lines and evals) and ``out/checkpoints``.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from ..atomic import atomic_open
from ..core import Map
from ..rundir import CheckpointError, Checkpoints, complete_steps
from ..train.report import Metrics
from . import files
from .buffer import Buffer
from .losses import objective
from .maps import SAE, VARIANTS, unit_rows
from .source import activations, ce_recovered, site


@dataclass(frozen=True)
class SAETrainConfig:
    """The settings of an SAE run (each is a ``jaxformer sae train`` flag)."""

    at: str  # the point, e.g. "blocks.1.resid_post"
    latents: int  # n
    variant: str = "topk"
    k: int = 32  # topk: latents per token
    l1: float = 2.0  # relu: the L1 coefficient (on scaled activations; 5 collapsed here)
    l0: float = 0.05  # jumprelu: the L0 coefficient
    steps: int = 2000
    minutes: float = 0.0  # a time budget (0 = none); the run ends at --steps or here
    batch: int = 4096  # activations per step
    lr: float = 2e-3
    warmup: int = 50
    decay_share: float = 0.2
    buffer: int = 65536  # rows the buffer holds
    model_batch: int = 32  # sequences per trace (a buffer chunk is model_batch × T rows)
    seed: int = 0
    aux: float = 1 / 32  # topk: the aux-k coefficient
    k_aux: int = 0  # topk: latents aux-k uses (0 = d/2)
    dead_tokens: int = 1_000_000
    resample_every: int = 0  # steps between resamplings of dead latents (0 = off)
    # jumprelu: ε and θ at init, for pre-activations of order 1 (the scaled activations).
    # Not sae-lens' 0.001: Adam moves log θ by about --lr a step, so a θ that starts at
    # 0.001 cannot reach the order-1 values a small L0 needs in a few hundred steps.
    bandwidth: float = 0.05
    threshold: float = 1.0
    eval_sequences: int = 64  # val windows for the evals
    eval_every: int = 0  # steps between evals (0 = at the end only)
    checkpoint_every: int = 500
    log_every: int = 50
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# what a resumed run may change: how far and how it is shown, not what it computes
RESUMABLE = ("steps", "minutes", "eval_every", "checkpoint_every", "log_every", "progress")


def validate(cfg: SAETrainConfig, model: Map, context: int) -> int:
    """Refuse a setting that cannot run, one line naming it and the fix; the point's width."""
    _, _, d = site(model, cfg.at)

    def need(ok: bool, message: str):
        if not ok:
            raise ValueError(message)

    need(cfg.variant in VARIANTS, f"--variant {cfg.variant!r}: choose one of {', '.join(VARIANTS)}")
    need(cfg.latents >= 1, f"--latents {cfg.latents}: choose at least 1 (e.g. {8 * d}, 8 × d)")
    if cfg.variant == "topk":
        need(1 <= cfg.k <= cfg.latents, f"--k {cfg.k}: choose 1 ≤ k ≤ --latents {cfg.latents}")
    need(cfg.steps >= 0 and cfg.minutes >= 0, "--steps and --minutes must be ≥ 0")
    need(cfg.steps > 0 or cfg.minutes > 0, "--steps 0 needs a --minutes budget; set either")
    need(cfg.batch >= 1, f"--batch {cfg.batch}: choose at least 1 (e.g. 4096)")
    need(cfg.lr > 0 and math.isfinite(cfg.lr), f"--lr {cfg.lr}: choose a positive rate")
    need(cfg.l1 >= 0 and cfg.l0 >= 0 and cfg.aux >= 0, "--l1, --l0 and --aux must be ≥ 0")
    need(0 <= cfg.decay_share < 1, f"--decay_share {cfg.decay_share}: choose it in [0, 1)")
    need(cfg.warmup >= 0 and cfg.dead_tokens >= 1, "--warmup must be ≥ 0, --dead_tokens ≥ 1")
    need(cfg.model_batch >= 1, f"--model_batch {cfg.model_batch}: choose at least 1")
    need(cfg.bandwidth > 0 and cfg.threshold > 0, "--bandwidth and --threshold must be > 0")
    need(cfg.eval_sequences >= 1, f"--eval_sequences {cfg.eval_sequences}: choose at least 1")
    need(min(cfg.log_every, cfg.checkpoint_every) >= 1, "--log_every, --checkpoint_every ≥ 1")
    need(0 <= cfg.seed < 2**32, f"--seed {cfg.seed}: choose it in [0, 2**32)")
    chunk = cfg.model_batch * context
    unit = math.lcm(2 * cfg.batch, 2 * chunk)
    need(
        cfg.buffer >= unit and cfg.buffer % unit == 0,
        f"--buffer {cfg.buffer}: each half must hold whole --batch minibatches ({cfg.batch}) and "
        f"whole chunks of --model_batch × T = {chunk} rows; use --buffer "
        f"{max(1, round(cfg.buffer / unit)) * unit}",
    )
    return d


def learning_rate(cfg: SAETrainConfig, k: int, f: float) -> float:
    """η_k: linear warmup over --warmup steps, then η, then linear decay to 0 over the last
    --decay_share of the run, f ∈ [0, 1] being the share of it done."""
    warm = min(1.0, (k + 1) / cfg.warmup) if cfg.warmup else 1.0
    left = 1.0 - f
    decay = min(1.0, left / cfg.decay_share) if cfg.decay_share else 1.0
    return cfg.lr * warm * max(decay, 0.0)


def eval_windows(tokens: np.ndarray, T: int, m: int) -> np.ndarray:
    """The first m disjoint windows of T+1 ids of ``tokens`` (fewer if it is short).  [m, T+1]."""
    m = min(m, (len(tokens) - 1) // T)
    if m < 1:
        raise ValueError(f"{len(tokens)} val tokens do not fill one window of {T + 1}")
    idx = np.arange(m)[:, None] * T + np.arange(T + 1)
    return np.asarray(tokens[idx], np.int32)


def evaluate(model: Map, params, sae: SAE, sae_params, at: str, windows, batch: int = 32) -> dict:
    """{l0, fve, dead, ce_clean, ce_sae, ce_zero, ce_recovered} of the SAE on ``windows``
    [M, T+1]: L0 and FVE over all their tokens (FVE about their mean), dead = the share of
    latents that fire on none of them."""
    err = sq = 0.0
    total, n_tok, active = None, 0, np.zeros(sae.n, bool)
    l0_sum = 0.0
    for i in range(0, len(windows), batch):
        x = np.asarray(activations(model, params, windows[i : i + batch, :-1], at), np.float64)
        z = np.asarray(sae.encode(sae_params, jnp.asarray(x, jnp.float32)))
        xhat = np.asarray(sae.decode_latents(sae_params, jnp.asarray(z)), np.float64)
        err += float(np.sum((x - xhat) ** 2))
        sq += float(np.sum(x**2))
        total = x.sum(0) if total is None else total + x.sum(0)
        n_tok += len(x)
        active |= np.any(z != 0, axis=0)
        l0_sum += float(np.sum(z != 0))
    var = sq - float(np.sum(total**2)) / n_tok  # Σ‖x − x̄‖²
    out = {"l0": l0_sum / n_tok, "fve": 1.0 - err / var, "dead": 1.0 - active.mean()}
    return out | ce_recovered(model, params, sae, sae_params, windows, at, batch)


def fold_scale(sae: SAE, params: dict, s: float) -> dict:
    """The params of the same SAE on raw activations x, from those on s·x."""
    p = {**params, "b_enc": params["b_enc"] / s, "b_dec": params["b_dec"] / s}
    if sae.variant == "jumprelu":
        p["log_threshold"] = params["log_threshold"] - math.log(s)
    return p


def _mask_latents(tree, keep):
    """Zero each latent's entries where ``keep`` is False, in any params-shaped tree."""
    axis = {"W_enc": 1, "b_enc": 0, "W_dec": 0, "log_threshold": 0}

    def one(path, leaf):
        name = getattr(path[-1], "key", None) if path else None
        if name not in axis or leaf.ndim == 0:
            return leaf
        shape = [1] * leaf.ndim
        shape[axis[name]] = -1
        return leaf * keep.reshape(shape).astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(one, tree)


class _Run:
    """The jitted pieces of one configuration."""

    def __init__(self, cfg: SAETrainConfig, sae: SAE):
        self.cfg, self.sae = cfg, sae
        self.opt = optax.scale_by_adam()
        self.dead_steps = max(1, -(-cfg.dead_tokens // cfg.batch))
        self.coeffs = {"l1": cfg.l1, "l0": cfg.l0, "aux": cfg.aux, "k_aux": cfg.k_aux or sae.d // 2}
        self.step = jax.jit(self._step, donate_argnums=(0, 1, 2))
        self.resample = jax.jit(self._resample, donate_argnums=(0, 1, 2))

    def _step(self, params, opt_state, since, x, lr):
        dead = since >= self.dead_steps
        grad = jax.value_and_grad(
            lambda p: objective(self.sae, p, x, dead, self.coeffs), has_aux=True
        )
        (loss, parts), g = grad(params)
        updates, opt_state = self.opt.update(g, opt_state, params)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        params = {**params, "W_dec": unit_rows(params["W_dec"])}  # unit-norm after each step
        since = jnp.where(parts.pop("fired"), 0, since + 1)
        return params, opt_state, since, {"loss": loss, **parts, "dead": jnp.mean(dead)}

    def _resample(self, params, opt_state, since, x, key):
        sae = self.sae
        dead = since >= self.dead_steps
        err = jnp.sum((x - sae.apply(params, x)) ** 2, axis=-1)
        j = jax.random.categorical(key, jnp.log(err + 1e-12), shape=(sae.n,))
        u = unit_rows(x[j] - params["b_dec"])  # [n, d]: one drawn input's direction per latent
        live = jnp.linalg.norm(params["W_enc"], axis=0)
        scale = 0.2 * jnp.sum(live * ~dead) / jnp.maximum(jnp.sum(~dead), 1)
        new = {**params, "W_dec": jnp.where(dead[:, None], u, params["W_dec"]),
               "W_enc": jnp.where(dead[None, :], u.T * scale, params["W_enc"]),
               "b_enc": jnp.where(dead, 0.0, params["b_enc"])}  # fmt: skip
        return new, _mask_latents(opt_state, ~dead), jnp.where(dead, 0, since)


def train(
    cfg: SAETrainConfig, model: Map, params, train_tokens: np.ndarray, val_tokens: np.ndarray,
    out: str | Path, resume: bool = False, stop=None, log=print, source: dict | None = None,
) -> dict:  # fmt: skip
    """Train an SAE at ``cfg.at`` of ``model`` (with ``params``) on windows of
    ``train_tokens``; evaluate on ``val_tokens``; write ``out``. ``stop.requested`` (e.g.
    ``train.preempt.Preemption``) ends it at a step boundary with a checkpoint. Returns
    the final eval (or {"stopped": step})."""
    begin = time.perf_counter()  # the budget counts everything: scale, buffer fills, compiles
    T = dict(model.domain.limits).get("T") or 128
    d = validate(cfg, model, T)
    train_tokens = np.asarray(train_tokens)
    if len(train_tokens) < T + 1:
        raise ValueError(f"{len(train_tokens)} train tokens do not fill one window of {T}")
    out = Path(out)
    sae = SAE(d, cfg.latents, cfg.variant, cfg.k, True, cfg.bandwidth, cfg.threshold)
    windows = eval_windows(val_tokens, T, cfg.eval_sequences)
    run = _Run(cfg, sae)

    def chunk(seed_stream: int, c: int) -> np.ndarray:
        rng = np.random.default_rng((cfg.seed, seed_stream, c))
        starts = rng.integers(0, len(train_tokens) - T + 1, cfg.model_batch)
        ids = np.asarray(train_tokens[starts[:, None] + np.arange(T)], np.int32)
        return np.asarray(activations(model, params, ids, cfg.at))

    ckpt = Checkpoints(out, keep=1)
    try:
        start, state = 0, None
        steps = complete_steps(out) if resume else []
        if steps:
            start, state = _restore(ckpt, steps[-1], cfg, sae, run)
        scale, sample_mean = _scale(chunk) if state is None else (state["scale"], None)
        buffer = Buffer(lambda c: scale * chunk(1, c), cfg.buffer, cfg.batch, cfg.seed)
        if state is None:
            sp = sae.init(jax.random.key(cfg.seed))
            sp = {**sp, "b_dec": jnp.asarray(scale * sample_mean, jnp.float32)}
            opt_state, since, elapsed = run.opt.init(sp), jnp.zeros(sae.n, jnp.int32), 0.0
            _write_config(out, cfg, source)
        else:
            sp, opt_state, since = state["params"], state["opt"], state["since"]
            buffer.restore(state["store"], state["counters"])
            elapsed = state["elapsed"]
        metrics = Metrics(out / "metrics.jsonl", start if state is not None else None)
        t0, budget = begin - elapsed, cfg.minutes * 60
        clock = lambda: time.perf_counter() - t0
        # a budget is a ceiling: no step starts that would end past it if it took as long as
        # the slowest of the last 16 (a buffer refill included)
        recent = collections.deque([0.0], maxlen=16)
        done = lambda k: (
            (cfg.steps and k >= cfg.steps) or (budget and clock() + max(recent) >= budget)
        )
        bar = tqdm(total=cfg.steps or None, initial=start, unit="step", leave=False,
                   disable=not cfg.progress)  # fmt: skip
        k = start

        def save():
            store, counters = buffer.state()
            meta = {
                "counters": counters,
                "scale": scale,
                "elapsed": clock(),
                "config": cfg.to_dict(),
            }
            ckpt.save(k, sp, {"opt": opt_state, "since": since, "store": store}, meta)

        while not done(k):
            if stop is not None and stop.requested:
                if k > start:  # (before the first step there is nothing new to keep)
                    save()
                    ckpt.wait()
                bar.close()
                log(f"sae    stopped at step {k}: continue with the same command and --resume")
                return {"stopped": k}
            t = clock()
            f = max(k / cfg.steps if cfg.steps else 0.0, t / budget if budget else 0.0)
            x = jnp.asarray(buffer.next())
            if cfg.resample_every and k and k % cfg.resample_every == 0:
                key = jax.random.fold_in(jax.random.key(cfg.seed), k)
                sp, opt_state, since = run.resample(sp, opt_state, since, x, key)
            sp, opt_state, since, m = run.step(sp, opt_state, since, x, learning_rate(cfg, k, f))
            k += 1
            bar.update(1)
            recent.append(clock() - t)
            if k % cfg.log_every == 0:
                line = {"step": k, **{n: float(v) for n, v in m.items()}}
                metrics.write(line)
                bar.set_postfix_str(
                    f"mse {line['mse']:.3f}  L0 {line['l0']:.1f}  FVE {line['fve']:.3f}  "
                    f"dead {line['dead']:.1%}"
                )
            if cfg.eval_every and k % cfg.eval_every == 0 and not done(k):
                r = evaluate(model, params, sae, fold_scale(sae, sp, scale), cfg.at, windows)
                metrics.write({"step": k, **{f"eval_{n}": v for n, v in r.items()}})
                say = bar.write if cfg.progress else log
                say(f"eval   step {k}: {_summary(r)}")
            if k % cfg.checkpoint_every == 0 and not done(k):
                save()
        jax.block_until_ready(sp)
        train_s = clock()
        bar.close()
        if k > start:
            save()
            ckpt.wait()
    finally:
        ckpt.close()
    raw = fold_scale(sae, sp, scale)
    r = evaluate(model, params, sae, raw, cfg.at, windows)
    meta = {"steps": k, "train_seconds": round(train_s, 1), "tokens": k * cfg.batch,
            "scale": scale, "eval": r, "config": cfg.to_dict(), "source": source or {}}  # fmt: skip
    files.save(out / "sae", sae, jax.device_get(raw), cfg.at, meta)
    metrics.write({"step": k, **{f"eval_{n}": v for n, v in r.items()}, "train_seconds": train_s})
    metrics.close()
    log(
        f"sae    {cfg.at}: {_summary(r)}  [{k} steps, {k * cfg.batch:,} tokens, "
        f"{train_s / 60:.1f} min]"
    )
    log(f"saved  {out / 'sae'}")
    return {"steps": k, "train_seconds": train_s, **r}


def _summary(r: dict) -> str:
    return (
        f"L0 {r['l0']:.1f}  FVE {r['fve']:.3f}  CE recovered {r['ce_recovered']:.3f} "
        f"(CE clean {r['ce_clean']:.3f}, SAE {r['ce_sae']:.3f}, zero {r['ce_zero']:.3f})  "
        f"dead {r['dead']:.1%}"
    )


def _scale(chunk) -> tuple[float, np.ndarray]:
    """(s = √d / E‖x‖, E x) from 4 chunks of their own seed stream."""
    x = np.concatenate([chunk(2, c) for c in range(4)]).astype(np.float64)
    return float(math.sqrt(x.shape[1]) / np.mean(np.linalg.norm(x, axis=1))), x.mean(0)


def _write_config(out: Path, cfg: SAETrainConfig, source: dict | None) -> None:
    with atomic_open(out / "config.json", "w") as f:
        json.dump({"sae": cfg.to_dict(), "source": source or {}}, f, indent=1)


def _restore(ckpt: Checkpoints, step: int, cfg: SAETrainConfig, sae: SAE, run: _Run):
    """(step, state) of checkpoint ``step``, refused if another configuration saved it."""
    meta = ckpt.meta(step)
    saved = meta.get("config", {})
    diff = [f"{k} {saved.get(k)!r} (saved) vs {v!r}" for k, v in cfg.to_dict().items()
            if k not in RESUMABLE and saved.get(k) != v]  # fmt: skip
    if diff:
        raise CheckpointError(
            f"{ckpt.run_dir}: checkpoint {step} was saved with other settings "
            f"({'; '.join(diff[:3])}); resume with those, or pass --overwrite to start over"
        )
    sp = jax.eval_shape(sae.init, jax.random.key(0))
    store = jax.ShapeDtypeStruct((cfg.buffer, sae.d), jnp.float32)
    since = jax.ShapeDtypeStruct((sae.n,), jnp.int32)
    like = {"opt": jax.eval_shape(run.opt.init, sp), "since": since, "store": store}
    params, rest, meta = ckpt.restore(step, sp, like)
    state = {"params": params, "opt": rest["opt"], "since": rest["since"],
             "store": np.asarray(rest["store"]), "counters": meta["counters"],
             "scale": float(meta["scale"]), "elapsed": float(meta["elapsed"])}  # fmt: skip
    return step, state
