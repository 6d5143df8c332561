"""The optimizer: global-norm clipping, then AdamW (or Muon) on a learning-rate schedule.

    g ← g · min(1, c / ‖g‖₂)
    θ ← θ − η_k (Adam(g) + λ θ ⊙ [θ is a matrix W_*])

``--optimizer muon`` moves the blocks' matrices by Muon instead (``muon``: the orthogonal
factor of their Nesterov momentum, at the peak rate ``--muon_lr``) and the rest by AdamW
as above, both on the one schedule η_k.

``--schedule wsd`` (warmup-stable-decay, the default), with k the update's index (0, 1, …):

    η_k = η · k / k_w                                            k < k_w   (linear warmup)
        = η                                                      k < D     (stable)
        = η_min + (η − η_min) · (1 − √min(1, (k − D + 1) / N))   k ≥ D     (1 − sqrt decay)

so the last step of the decay, k = D + N − 1, and every step after it (a continued run)
are at η_min. A run of fixed length K (``decay_steps`` or ``steps``) decays over its last
share s (``decay_share``): N = max(1, round(s · K)), D = K − N, from the config alone. A
time-budgeted run (``steps`` 0) starts with D = NOT_YET (stable until the clock says) and
sets (D, N) once (1 − s) of its budget is spent (``budget.decay_plan``).

(D, N) live in the optimizer state beside the update count k: the jitted step reads them
as arrays (``with_decay`` sets them; nothing recompiles), and every checkpoint carries
them, so a resumed or continued run follows the schedule it started.

The decay is 1 − sqrt, not linear: Hägele et al. 2024 ("Scaling Laws and Compute-Optimal
Training Beyond Fixed Training Durations") find it consistently better than a linear
cooldown, and a constant rate with a cooldown of about a fifth of the run on a par with
a cosine fitted to the run's length, which a run sized by the clock cannot know.

``--schedule cosine`` (optax's; K as above):

    η_k = η · k / k_w                                                      k < k_w
        = η_min + (η − η_min) · (1 + cos(π (k − k_w) / (K − k_w))) / 2     k < K
        = η_min                                                            after

Weight decay applies to the matrices only (every ``W_*``: W_E, W_pos, W_Q, …, as in
GPT-2 and nanoGPT) and never to gains and biases (γ, β, b_*), which set scales and
offsets rather than features. The mask goes by name, not by rank: stacked over layers
a bias [L, d] is 2-D too.

``--freeze GLOB,…`` (``pretrained.py``): the matching params get ``set_to_zero`` instead of
all of the above, so they keep their values, hold no optimizer state, and the clipped norm
‖g‖ is that of the params that train; with ``--lora_rank`` every param but the adapters'.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax.contrib import MuonDimensionNumbers, scale_by_muon

from ..models.layout import BLOCKS
from ..models.lora import adapter_only
from . import pretrained
from .config import TrainConfig

NOT_YET = np.iinfo(np.int32).max  # D of a budgeted run before its clock sets it


class WSDState(NamedTuple):
    count: jax.Array  # int32: k, the updates so far
    decay_start: jax.Array  # int32: D
    decay_steps: jax.Array  # int32: N


def wsd(cfg: TrainConfig, k, D, N):
    """η_k of the warmup-stable-decay schedule (the formula above), in float32."""
    f = jnp.float32
    k, D, N = (jnp.asarray(a, jnp.int32) for a in (k, D, N))
    warm = f(cfg.lr) * k.astype(f) / f(max(cfg.warmup_steps, 1))
    # k − D + 1 in int32 before the division: D = NOT_YET must not overflow or round
    p = jnp.clip(k - D + 1, 0, N).astype(f) / N.astype(f)
    decay = f(cfg.min_lr) + f(cfg.lr - cfg.min_lr) * (1 - jnp.sqrt(p))
    return jnp.where(k < cfg.warmup_steps, warm, jnp.where(k < D, f(cfg.lr), decay))


def scale_by_wsd(cfg: TrainConfig, scale: float = 1.0) -> optax.GradientTransformation:
    """u ↦ −s · η_k · u, with (k, D, N) in the state (k counts the updates), s = ``scale``."""
    D, N = cfg.fixed_decay or (NOT_YET, 1)

    def init(params):
        del params
        return WSDState(*(jnp.asarray(v, jnp.int32) for v in (0, D, N)))

    def update(updates, state, params=None):
        del params
        lr = scale * wsd(cfg, state.count, state.decay_start, state.decay_steps)
        updates = jax.tree.map(lambda u: (-lr * u).astype(u.dtype), updates)
        return updates, state._replace(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def _is_wsd(x) -> bool:
    return isinstance(x, WSDState)


def decay_of(opt_state) -> tuple[int, int] | None:
    """(D, N) held in ``opt_state`` (a WSD run's), or None while D is NOT_YET or for cosine."""
    for s in jax.tree.leaves(opt_state, is_leaf=_is_wsd):
        if _is_wsd(s):
            # one device's copy: the values are replicated, also across processes
            D, N = (int(np.asarray(a.addressable_data(0))) for a in (s.decay_start, s.decay_steps))
            return None if D == NOT_YET else (D, N)
    return None


def with_decay(opt_state, start: int, steps: int):
    """``opt_state`` with the decay set to start at update ``start`` and last ``steps``: the
    same tree, shapes and shardings (the step does not recompile); it is donated."""

    def put(state, start, steps):
        return jax.tree.map(
            lambda s: s._replace(decay_start=start, decay_steps=steps) if _is_wsd(s) else s,
            state,
            is_leaf=_is_wsd,
        )

    # on a mesh the state is committed to its shardings, and stays so; on one device it is
    # not, and must stay not: the step's compiled program is keyed on both
    pinned = {}
    if any(a.committed for a in jax.tree.leaves(opt_state)):
        pinned = {"out_shardings": jax.tree.map(lambda a: a.sharding, opt_state)}
    f = jax.jit(put, donate_argnums=0, **pinned)
    return f(opt_state, np.int32(start), np.int32(steps))


def schedule(cfg: TrainConfig):
    """k ↦ η_k of a run of fixed length (a budgeted WSD run: stable until its decay is set);
    ``learning_rate(cfg, k, decay)`` gives any WSD run's rate."""
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            decay_steps=cfg.decay_steps or cfg.steps,  # then η_min: a continued run's tail
            end_value=cfg.min_lr,
        )
    return lambda k: learning_rate(cfg, k, cfg.fixed_decay)


def learning_rate(cfg: TrainConfig, k: int, decay: tuple[int, int] | None) -> float:
    """η_k as the step computes it, for the metrics: (D, N) = ``decay`` (None: not yet)."""
    if cfg.schedule == "cosine":
        return float(schedule(cfg)(k))
    D, N = decay or (NOT_YET, 1)
    return float(_wsd_jit(cfg, k, D, N))


_wsd_jit = jax.jit(wsd, static_argnums=0)


def decay_mask(params) -> dict:
    """True for the matrices W_*, False for gains and biases."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: str(getattr(path[-1], "key", "")).startswith("W_"), params
    )


def rate(cfg: TrainConfig, scale: float = 1.0) -> optax.GradientTransformation:
    """u ↦ −s · η_k · u on the run's schedule (WSD's k, D, N in the state)."""
    if cfg.schedule == "cosine":
        return optax.scale_by_learning_rate(lambda k: scale * schedule(cfg)(k))
    return scale_by_wsd(cfg, scale)


def adamw(cfg: TrainConfig) -> optax.GradientTransformation:
    if cfg.schedule == "cosine":
        return optax.adamw(
            schedule(cfg), b1=cfg.beta1, b2=cfg.beta2, weight_decay=cfg.weight_decay,
            mask=decay_mask,
        )  # fmt: skip
    # optax.adamw's chain (Adam, masked decay, the rate), the rate from the state
    return optax.chain(
        optax.scale_by_adam(b1=cfg.beta1, b2=cfg.beta2),
        optax.add_decayed_weights(cfg.weight_decay, decay_mask),
        rate(cfg),
    )


def muon_axes(path, x) -> MuonDimensionNumbers | None:
    """How Muon sees a parameter as a stack of matrices [fan_in, fan_out], or None (AdamW).

    The blocks' matrices W_* are Muon's; the embeddings, positions and unembedding are not
    (they map ids, not a space, Jordan et al.'s rule). Leading axes (the layers L, experts
    E) are a batch. Attention's are per head: W_Q, W_K, W_V [.., H, d, k] are the one map
    R^d → R^{H·k}, and W_O [.., H, k, d] the one map R^{H·k} → R^d.
    """
    keys = [str(getattr(k, "key", "")) for k in path]
    name = keys[-1]
    if BLOCKS not in keys or not name.startswith("W_") or x.ndim < 2:
        return None
    if name in ("W_Q", "W_K", "W_V"):
        return MuonDimensionNumbers(reduction_axis=-2, output_axis=(-3, -1))
    if name == "W_O":
        return MuonDimensionNumbers(reduction_axis=(-3, -2), output_axis=-1)
    return MuonDimensionNumbers(reduction_axis=-2, output_axis=-1)


def _muon_dims(tree):
    # Muon's axes for each leaf it sees: the partition hands it the tree with the AdamW
    # leaves masked out (optax's MaskedNode, which tree_map keeps as it is)
    return jax.tree_util.tree_map_with_path(muon_axes, tree)


def _by_fan(updates, params=None):
    """O ↦ √max(1, fan_out/fan_in) O: an orthogonal O of a wide matrix has RMS √(1/fan_out);
    this gives every shape the same RMS per fan-in (Jordan et al.'s scaling)."""
    del params

    def scaled(path, u):
        axes = muon_axes(path, u)
        fan = [math.prod(u.shape[a] for a in np.atleast_1d(ax)) for ax in axes]
        return u * math.sqrt(max(1.0, fan[1] / fan[0]))

    return jax.tree_util.tree_map_with_path(scaled, updates)


def muon(cfg: TrainConfig) -> optax.GradientTransformation:
    """Muon (Jordan et al. 2024) on the blocks' matrices, AdamW on the rest (``muon_axes``):

        M ← β M + (1 − β) g,   N = β M̂ + (1 − β) ĝ   (Nesterov; ^: bias-corrected, β 0.95)
        O = NS₅(N / ‖N‖_F) ≈ U Vᵀ   (N = U Σ Vᵀ; five quintic Newton–Schulz steps)
        W ← W − η_k (r/η) √max(1, fan_out/fan_in) O − η_k λ W

    with r = ``muon_lr`` and η = ``lr``: one schedule, Muon's peak r. The decay is
    η_k λ W, as AdamW's, whichever optimizer moves W. (tests/train/test_muon.py writes
    these lines again in numpy.)
    """
    s = cfg.muon_lr / cfg.lr
    matrices = optax.chain(
        scale_by_muon(beta=0.95, weight_dimension_numbers=_muon_dims),
        optax.stateless(_by_fan),
        optax.add_decayed_weights(cfg.weight_decay / s),  # × s η_k below: η_k λ
        rate(cfg, s),
    )

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda p, x: "adamw" if muon_axes(p, x) is None else "muon", params
        )

    return optax.multi_transform({"muon": matrices, "adamw": adamw(cfg)}, labels)


def optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    update = muon(cfg) if cfg.optimizer == "muon" else adamw(cfg)
    opt = (
        update
        if cfg.grad_clip == 0
        else optax.chain(optax.clip_by_global_norm(cfg.grad_clip), update)
    )
    trained = labels(cfg)
    if trained is None:
        return opt
    # the frozen params get no update and no state; the clip's norm is the trained ones'
    return optax.multi_transform({"trained": opt, "frozen": optax.set_to_zero()}, trained)


def labels(cfg: TrainConfig):
    """θ ↦ "trained" | "frozen" per parameter (``--freeze``, or LoRA's adapters alone), or None
    when everything trains. The step takes the gradient of the trained alone."""
    if cfg.lora_rank:
        return adapter_only
    if cfg.freeze:
        return functools.partial(pretrained.frozen, freeze=cfg.freeze)
    return None
