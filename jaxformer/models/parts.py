"""The common parts families compose, each a map named as ``layout.py`` says.

    stem(c)    P ∘ E              V^T → R^{T×d}      (P: learned or sinusoidal, if any)
    layers(c)  B^L                R^{T×d} → R^{T×d}  (the family's block, repeated)
    head(c)    U ∘ N_f            R^{T×d} → R^{T×V}
    pre_norm(c, attn, mlp, norm)  B = (id + M ∘ N_2) ∘ (id + A ∘ N_1)
    moe(c)     M = Σ_{e ∈ top-k} g_e E_e   a mixture of experts (``c.n_experts``)

and the layers read off the config: ``attention``, ``mlp``, ``swiglu``, ``norm``
(``c.norm``: "layernorm" or "rmsnorm").
Initial scale: N(0, init_std²), and the writes into the residual stream (W_O, W_out)
N(0, (init_std / √(2L))²), GPT-2's scaling.
"""

from __future__ import annotations

import math

from ..core import Map, compose, parallel, repeat, residual, tokenwise
from ..layers import (
    MLP,
    Attention,
    Embedding,
    LayerNorm,
    LearnedPositions,
    MoE,
    RMSNorm,
    SinusoidalPositions,
    SwiGLU,
    Unembedding,
)
from . import layout as N
from .config import Config


def out_std(c: Config) -> float:
    return c.init_std / math.sqrt(2 * c.n_layers)


def attention(c: Config, **changes) -> Attention:
    """Causal multi-head (grouped-query) attention, RoPE when ``c.positional == "rope"``."""
    rope = c.positional == "rope"
    kw = dict(
        d=c.d_model, H=c.n_heads, k=c.d_head, G=c.n_kv_heads, causal=True, bias=c.bias,
        rope_theta=c.rope_theta if rope else None, std=c.init_std, out_std=out_std(c),
        name=N.ATTN, out_bias=c.out_bias, qk_norm=c.qk_norm, qk_norm_eps=c.norm_eps,
        rotary_dim=c.rotary_dim if rope else None, window=c.sliding_window, impl=c.attention,
    )  # fmt: skip
    return Attention(**(kw | changes))


def mlp(c: Config, activation: str | None = None) -> MLP:
    """φ(x W_in + b_in) W_out + b_out, φ = ``c.activation``."""
    act = activation or c.activation
    return MLP(c.d_model, c.d_mlp, act, c.bias, c.init_std, out_std(c), name=N.MLP)


def swiglu(c: Config) -> SwiGLU:
    return SwiGLU(c.d_model, c.d_mlp, c.init_std, out_std(c), name=N.MLP)


def moe(c: Config) -> MoE:
    """A mixture of ``c.n_experts`` SwiGLU experts of width ``c.d_mlp``, ``c.top_k`` per token."""
    return MoE(
        c.d_model, c.d_mlp, c.n_experts, c.top_k, renormalize=c.norm_topk, std=c.init_std,
        out_std=out_std(c), balance_weight=c.balance_weight, z_weight=c.z_weight,
        capacity=c.capacity_factor, name=N.MLP,
    )  # fmt: skip


NORMS = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}


def norm(c: Config, name: str) -> Map:
    """The config's norm (``c.norm``) named ``name``, lifted to the sequence."""
    return tokenwise(NORMS[c.norm](c.d_model, c.norm_eps, name=name))


def pre_norm(c: Config, attn: Map, token_mlp: Map) -> Map:
    """(id + M ∘ N_2) ∘ (id + A ∘ N_1), or with ``c.parallel_residual`` id + A ∘ N_1 + M ∘ N_2
    (GPT-NeoX, GPT-J: both read the block's input); without an MLP (``c.attn_only``)
    id + A ∘ N_1. ``token_mlp`` acts on one token (R^d → R^d)."""
    attn_read = compose(attn, norm(c, N.LN1))
    if c.attn_only:
        return residual(attn_read, name=N.RESID_MID)
    mlp_read = compose(lift(token_mlp), norm(c, N.LN2))
    if c.parallel_residual:
        return residual(parallel(attn_read, mlp_read), name=N.RESID_POST)
    mlp_branch = residual(mlp_read, name=N.RESID_POST)
    return compose(mlp_branch, residual(attn_read, name=N.RESID_MID), name="block")


def lift(m: Map) -> Map:
    """A map of one token lifted to the sequence (``tokenwise``); a map of the sequence
    (a mixture of experts, which routes the tokens together) as it is."""
    return tokenwise(m) if len(m.domain.shape) == 1 else m


def stem(c: Config) -> Map:
    """E, then the positions added to the stream (learned, sinusoidal; none with RoPE)."""
    embed = Embedding(c.vocab_size, c.d_model, c.context, std=c.init_std, name=N.EMBED)
    if c.positional == "learned":
        return compose(LearnedPositions(c.context, c.d_model, std=c.init_std, name=N.POS), embed)
    if c.positional == "sinusoidal":
        return compose(SinusoidalPositions(c.context, c.d_model, name=N.POS), embed)
    return embed


def layers(c: Config, block: Map, remat=None) -> Map:
    return repeat(block, c.n_layers, name=N.BLOCKS, remat=remat)


def head(c: Config) -> Map:
    """U ∘ N_f (or U alone without ``c.final_norm``)."""
    unembed = Unembedding(c.d_model, c.vocab_size, std=c.init_std, name=N.UNEMBED)
    return compose(unembed, norm(c, N.LN_F)) if c.final_norm else unembed
