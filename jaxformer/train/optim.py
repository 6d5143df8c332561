"""The optimizer: global-norm clipping, then AdamW on a warmup-cosine schedule.

    g ← g · min(1, c / ‖g‖₂)
    θ ← θ − η_k (Adam(g) + λ θ ⊙ [θ is a matrix W_*])
    η_k = η · k / k_w                                        k < k_w  (linear warmup)
        = η_min + (η − η_min) · (1 + cos(π (k − k_w) / (K − k_w))) / 2     k < K
        = η_min                                                  after (a continued run)

with K = ``decay_steps`` or ``steps``.

Weight decay applies to the matrices only (every ``W_*``: W_E, W_pos, W_Q, …, as in
GPT-2 and nanoGPT) and never to gains and biases (γ, β, b_*), which set scales and
offsets rather than features. The mask goes by name, not by rank: stacked over layers
a bias [L, d] is 2-D too.
"""

from __future__ import annotations

import jax
import optax

from .config import TrainConfig


def schedule(cfg: TrainConfig) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.decay_steps or cfg.steps,  # then η_min: a continued run's tail
        end_value=cfg.min_lr,
    )


def decay_mask(params) -> dict:
    """True for the matrices W_*, False for gains and biases."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: str(getattr(path[-1], "key", "")).startswith("W_"), params
    )


def optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    adamw = optax.adamw(
        schedule(cfg), b1=cfg.beta1, b2=cfg.beta2, weight_decay=cfg.weight_decay, mask=decay_mask
    )
    if cfg.grad_clip == 0:
        return adamw
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw)
