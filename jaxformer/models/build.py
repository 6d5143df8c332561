"""Models as composites: tokens V^T → logits R^{T×V}, for one sequence.

    gpt2:  U ∘ N_f ∘ B^L ∘ P ∘ E            B = (id + M ∘ N_2) ∘ (id + A ∘ N_1)
    llama: U ∘ N_f ∘ B^L ∘ E                (RoPE inside A; N = RMSNorm; M = SwiGLU)

Batch with ``jax.vmap(model, in_axes=(None, 0))``, or call ``logits``, which
also validates the token ids on the host first.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from ..core import Map, compose, repeat, residual, tie, tokenwise
from ..layers import (
    MLP,
    Attention,
    Embedding,
    LayerNorm,
    LearnedPositions,
    RMSNorm,
    SinusoidalPositions,
    SwiGLU,
    Unembedding,
)
from .config import Config


def _norm(c: Config, name: str) -> Map:
    cls = LayerNorm if c.family == "gpt2" else RMSNorm
    return tokenwise(cls(c.d_model, c.norm_eps, name=name))


def block(c: Config, remat=None) -> Map:
    """One transformer block B: R^{T×d} → R^{T×d}, pre-norm."""
    out_std = c.init_std / math.sqrt(2 * c.n_layers)  # GPT-2: residual writes scaled by 1/√(2L)
    attn = Attention(
        c.d_model, c.n_heads, c.d_head, c.n_kv_heads, causal=True, bias=c.bias,
        rope_theta=c.rope_theta if c.positional == "rope" else None,
        std=c.init_std, out_std=out_std,
    )  # fmt: skip
    attn_branch = residual(compose(attn, _norm(c, "ln1")), name="resid_mid")
    if c.attn_only:
        return attn_branch
    if c.family == "gpt2":
        mlp = MLP(c.d_model, c.d_mlp, c.activation, c.bias, c.init_std, out_std)
    else:
        mlp = SwiGLU(c.d_model, c.d_mlp, c.init_std, out_std)
    mlp_branch = residual(compose(tokenwise(mlp), _norm(c, "ln2")), name="resid_post")
    return compose(mlp_branch, attn_branch, name="block")


def build(c: Config, remat=None) -> Map:
    """The model of config ``c``: V^T → R^{T×V} (T ≤ c.context)."""
    maps: list[Map] = [Unembedding(c.d_model, c.vocab_size, std=c.init_std)]
    if c.final_norm:
        maps.append(_norm(c, "ln_f"))
    maps.append(repeat(block(c), c.n_layers, name="blocks", remat=remat))
    if c.positional == "learned":
        maps.append(LearnedPositions(c.context, c.d_model, std=c.init_std))
    elif c.positional == "sinusoidal":
        maps.append(SinusoidalPositions(c.context, c.d_model))
    maps.append(Embedding(c.vocab_size, c.d_model, c.context, std=c.init_std))
    model = compose(*maps, name=c.family)
    if c.tied:
        model = tie(model, dst=("unembed", "W_U"), src=("embed", "W_E"), fn=jnp.transpose)
    return model
