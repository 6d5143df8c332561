"""Per-head circuits as factored matrices, and their token-level forms.

For head h of layer l (row vectors, x ∈ R^d):

    W_QK^h = W_Q^h W_K^hᵀ    [d, d]   score(x_q, x_k) = x_q W_QK^h x_kᵀ / √k   (+ biases, RoPE)
    W_OV^h = W_V^h W_O^h     [d, d]   what the head writes for a vector it attends to

and through the embedding and unembedding, on tokens:

    QK^h_tok = W_E W_QK^h W_Eᵀ    [V, V]   how much a query token attends to a key token
    OV^h_tok = W_E W_OV^h W_U     [V, V]   which logits a head raises for a token it attends to

All are ``FactoredMatrix`` [L, H, ·, ·]; index ``[l, h]`` for one head. The token and
position circuits skip the norms: they describe a model whose norms are folded
(``processing.fold_ln``), where a norm only rescales each token. With RoPE the
scores also depend on the positions' offset, which W_QK leaves out.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..core import Map, Params
from .anatomy import Anatomy, positions, untied
from .factored import FactoredMatrix


def _kv(a: Anatomy, W_LG: jnp.ndarray) -> jnp.ndarray:
    """[L, G, …] key/value weights repeated to one per query head, [L, H, …]."""
    return jnp.repeat(W_LG, a.attn.H // a.attn.kv_heads, axis=1)


def W_QK(model: Map, params: Params) -> FactoredMatrix:
    """W_Q^h W_K^hᵀ for every head.   [L, H, d, d], rank ≤ k."""
    a, p = Anatomy.of(model), params["blocks"]["attn"]
    return FactoredMatrix(p["W_Q"], jnp.swapaxes(_kv(a, p["W_K"]), -1, -2))


def W_OV(model: Map, params: Params) -> FactoredMatrix:
    """W_V^h W_O^h for every head.   [L, H, d, d], rank ≤ k."""
    a, p = Anatomy.of(model), params["blocks"]["attn"]
    return FactoredMatrix(_kv(a, p["W_V"]), p["W_O"])


def W_E(params: Params) -> jnp.ndarray:
    return params["embed"]["W_E"]


def W_U(model: Map, params: Params) -> jnp.ndarray:
    """The unembedding [d, V] (W_Eᵀ for a tied model)."""
    return untied(model, params)["unembed"]["W_U"]


def token_QK(model: Map, params: Params) -> FactoredMatrix:
    """W_E W_QK^h W_Eᵀ.   [L, H, V, V]: row = query token, column = key token."""
    E = W_E(params)
    return E @ W_QK(model, params) @ E.T


def token_OV(model: Map, params: Params) -> FactoredMatrix:
    """W_E W_OV^h W_U.   [L, H, V, V]: row = attended token, column = logit raised."""
    return W_E(params) @ W_OV(model, params) @ W_U(model, params)


def position_QK(model: Map, params: Params, T: int) -> FactoredMatrix:
    """W_pos W_QK^h W_posᵀ.   [L, H, T, T]: row = query position, column = key position.
    Needs added positions (learned or sinusoidal)."""
    P = positions(Anatomy.of(model), params, T)
    if P is None:
        raise ValueError(
            f"{model.name} adds no position vectors to the stream (RoPE rotates q and k "
            "instead), so it has no positional QK circuit"
        )
    return P @ W_QK(model, params) @ P.T
