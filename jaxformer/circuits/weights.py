"""Per-head circuits as factored matrices, and their token-level forms.

For head h of layer l (row vectors, x ∈ R^d):

    W_QK^h = W_Q^h W_K^hᵀ    [d, d]   score(x_q, x_k) = x_q W_QK^h x_kᵀ / √k   (+ biases, RoPE)
    W_OV^h = W_V^h W_O^h     [d, d]   what the head writes for a vector it attends to

and through the embedding and unembedding, on tokens:

    QK^h_tok = W_E W_QK^h W_Eᵀ    [V, V]   how much a query token attends to a key token
    OV^h_tok = W_E W_OV^h W_U     [V, V]   which logits a head raises for a token it attends to

All are ``FactoredMatrix`` [L, H, ·, ·]; index ``[l, h]`` for one head. The token and
position circuits skip the norms: they describe a model whose norms are folded
(``processing.fold_ln``), where a norm only rescales each token; they need the stream to
be the sum of the writes (refused for a post-norm block, ``structure.py``).

RoPE rotates q at position i and k at j, so the score is x_i W_Q R_(j−i) W_Kᵀ x_jᵀ: W_QK is
its form at offset 0 (a token with itself); over the coordinates RoPE leaves alone (a
partial rotary: ``coords="pass"``, the last k − r of each head) it is the form at every
offset, and ``coords="rotary"`` is the rest (the two sum to W_QK). With QK-norm q and k
are normalised first: the scores have no such form, and W_QK refuses.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..core import Map, Params
from ..models import layout as N
from .anatomy import Anatomy, positions, untied
from .factored import FactoredMatrix

COORDS = ("all", "rotary", "pass")


def _kv(a: Anatomy, W_LG: jnp.ndarray) -> jnp.ndarray:
    """[L, G, …] key/value weights repeated to one per query head, [L, H, …]."""
    return jnp.repeat(W_LG, a.attn.H // a.attn.kv_heads, axis=1)


def W_QK(model: Map, params: Params, coords: str = "all") -> FactoredMatrix:
    """W_Q^h W_K^hᵀ for every head, over the head coordinates ``coords``: "all", or with
    RoPE "rotary" (the first r, rotated) or "pass" (the rest).   [L, H, d, d], rank ≤ k."""
    a, p = Anatomy.of(model), params[N.BLOCKS][N.ATTN]
    if coords not in COORDS:
        raise ValueError(f"W_QK: coords must be one of {COORDS}, got {coords!r}")
    if a.attn.qk_norm is not None:
        raise ValueError(
            f"W_QK: {model.name} normalises q and k (qk_norm={a.attn.qk_norm!r}), so its scores "
            "are no bilinear form x W_QK yᵀ of the stream; W_QK does not exist"
        )
    r = a.attn.rotary if a.attn.rope_theta is not None else a.attn.k
    if coords != "all" and a.attn.rope_theta is None:
        raise ValueError(f"W_QK: coords={coords!r} needs RoPE; {model.name} has none")
    keep = {"all": slice(None), "rotary": slice(0, r), "pass": slice(r, None)}[coords]
    return FactoredMatrix(p["W_Q"][..., keep], jnp.swapaxes(_kv(a, p["W_K"]), -1, -2)[..., keep, :])


def W_OV(model: Map, params: Params) -> FactoredMatrix:
    """W_V^h W_O^h for every head.   [L, H, d, d], rank ≤ k."""
    a, p = Anatomy.of(model), params[N.BLOCKS][N.ATTN]
    return FactoredMatrix(_kv(a, p["W_V"]), p["W_O"])


def W_E(params: Params, model: Map | None = None) -> jnp.ndarray:
    """The token embedding as it enters the stream, scale · W_E (Gemma's √d) given the model."""
    E = params[N.EMBED]["W_E"]
    scale = None if model is None else Anatomy.of(model).embed.scale
    return E if scale is None else E * jnp.asarray(scale, E.dtype)


def W_U(model: Map, params: Params) -> jnp.ndarray:
    """The unembedding [d, V] (W_Eᵀ for a tied model)."""
    return untied(model, params)[N.UNEMBED]["W_U"]


def token_QK(model: Map, params: Params) -> FactoredMatrix:
    """W_E W_QK^h W_Eᵀ.   [L, H, V, V]: row = query token, column = key token."""
    Anatomy.of(model).require("token_QK", "stream")
    E = W_E(params, model)
    return E @ W_QK(model, params) @ E.T


def token_OV(model: Map, params: Params) -> FactoredMatrix:
    """W_E W_OV^h W_U.   [L, H, V, V]: row = attended token, column = logit raised."""
    Anatomy.of(model).require("token_OV", "stream")
    return W_E(params, model) @ W_OV(model, params) @ W_U(model, params)


def position_QK(model: Map, params: Params, T: int) -> FactoredMatrix:
    """W_pos W_QK^h W_posᵀ.   [L, H, T, T]: row = query position, column = key position.
    Needs added positions (learned or sinusoidal)."""
    a = Anatomy.of(model)
    a.require("position_QK", "stream")
    P = positions(a, params, T)
    if P is None:
        raise ValueError(
            f"{model.name} adds no position vectors to the stream (RoPE rotates q and k "
            "instead), so it has no positional QK circuit"
        )
    return P @ W_QK(model, params) @ P.T
