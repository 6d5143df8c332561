"""Composition scores: how much one head's output feeds another head's input.

A head h₁ in an earlier layer writes x W_OV^{h₁}; a later head h₂ can read that
write with its queries, its keys or its values. Elhage et al. (2021) measure
how strongly with the Frobenius norms

    C(W_A, W_B) = ‖W_A W_B‖_F / (‖W_A‖_F ‖W_B‖_F)

    Q-composition:  W_A = W_OV^{h₁},  W_B = W_QK^{h₂}
    K-composition:  W_A = W_OV^{h₁},  W_B = W_QK^{h₂}ᵀ
    V-composition:  W_A = W_OV^{h₁},  W_B = W_OV^{h₂}

C is small for unrelated matrices but not zero: for random matrices it is
about 1/√d. ``null_composition_scores`` draws that baseline from random heads of
the same shapes, to compare against. Read folded weights (``process_weights``):
the norms' γ otherwise sits between the heads.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core import Map, Params
from .anatomy import Anatomy
from .factored import FactoredMatrix
from .weights import W_OV, W_QK

KINDS = ("Q", "K", "V")


def composition_score(W_A: FactoredMatrix, W_B: FactoredMatrix) -> jax.Array:
    """‖W_A W_B‖_F / (‖W_A‖_F ‖W_B‖_F), over the broadcast batch axes."""
    return (W_A @ W_B).norm() / (W_A.norm() * W_B.norm())


def _reader(kind: str, QK: FactoredMatrix, OV: FactoredMatrix) -> FactoredMatrix:
    if kind not in KINDS:
        raise ValueError(f"composition kind must be one of {KINDS}, got {kind!r}")
    return {"Q": QK, "K": QK.T, "V": OV}[kind]


def composition_scores(model: Map, params: Params, kind: str) -> jax.Array:
    """C(W_OV^{l₁,h₁}, W_B^{l₂,h₂}) for every pair of heads.   [L, H, L, H], indexed
    [l₁, h₁, l₂, h₂]; NaN unless l₁ < l₂ (a head only reads earlier layers' writes)."""
    Anatomy.of(model).require("composition_scores", "stream")
    OV, QK = W_OV(model, params), W_QK(model, params)
    C = composition_score(OV[:, :, None, None], _reader(kind, QK, OV)[None, None])
    L = OV.shape[0]
    earlier = jnp.arange(L)[:, None, None, None] < jnp.arange(L)[None, None, :, None]
    return jnp.where(earlier, C, jnp.nan)


def null_composition_scores(model: Map, key: jax.Array, kind: str, n: int = 1000) -> jax.Array:
    """Composition scores of ``n`` pairs of random heads shaped like the model's: W_V, W_O,
    W_Q, W_K with i.i.d. N(0, 1) entries ([d, k], [k, d], [d, k], [d, k]).   [n]"""
    attn = Anatomy.of(model).attn
    d, k = attn.d, attn.k
    z = jax.random.normal(key, (4, n, d, k))
    OV = FactoredMatrix(z[0], jnp.swapaxes(z[1], -1, -2))
    second = FactoredMatrix(z[2], jnp.swapaxes(z[3], -1, -2))  # a QK, or a second OV
    return composition_score(OV, _reader(kind, second, second))
