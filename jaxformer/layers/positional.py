"""Positions: learned and sinusoidal (added to the stream), and RoPE (inside attention).

Learned and sinusoidal positions are maps R^{T×d} → R^{T×d}, x ↦ x + P[:T], so
``compose(positions, embed)`` is GPT-2's ``W_E[t] + W_pos[i]`` (i: the position in the
document, with packed documents, ``core/documents.py``). RoPE is not a
map on the residual stream: it rotates queries and keys, so attention calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..core import Map, Param, Real, Term
from ..core.documents import current


@dataclass(frozen=True, repr=False)
class LearnedPositions(Map):
    """x ↦ x + W_pos[:T].   R^{T×d} → R^{T×d} (T ≤ context);  W_pos: [context, d]."""

    context: int
    d: int
    std: float = 0.02
    name: str = "pos"

    domain = property(lambda self: Real("T", self.d, limits={"T": self.context}))
    codomain = property(lambda self: Real("T", self.d))

    def spec(self):
        return {"W_pos": Param((self.context, self.d), ("T", "d"), self.std)}

    def apply(self, params, x_Td):
        docs = current()  # packed documents: each from position 0
        W = params["W_pos"][: x_Td.shape[0]] if docs is None else params["W_pos"][docs.positions]
        return x_Td + W.astype(x_Td.dtype)

    def decode(self, params, cache, x_Td, positions, layer=()):
        return x_Td + params["W_pos"][positions].astype(x_Td.dtype), {}

    def term(self, T, x):
        return Term(
            (f"{x} ↦ ({x}_i + W_pos[i])_i",),
            (rf"{x} \mapsto ({x}_i + W_{{\mathrm{{pos}}}}[i])_i",),
            self.d,
        )


def sinusoid_table(T: int, d: int, base: float = 10000.0) -> np.ndarray:
    """P[i, 2j] = sin(i / base^{2j/d}),  P[i, 2j+1] = cos(i / base^{2j/d}).   [T, d]."""
    i = np.arange(T)[:, None]
    freq = base ** (-np.arange(0, d, 2) / d)
    P = np.zeros((T, d), np.float32)
    P[:, 0::2] = np.sin(i * freq)
    P[:, 1::2] = np.cos(i * freq)[:, : d // 2]
    return P


@dataclass(frozen=True, repr=False)
class SinusoidalPositions(Map):
    """x ↦ x + P[:T] with the fixed table of ``sinusoid_table`` (no parameters).
    R^{T×d} → R^{T×d} (T ≤ context)."""

    context: int
    d: int
    name: str = "pos"

    domain = property(lambda self: Real("T", self.d, limits={"T": self.context}))
    codomain = property(lambda self: Real("T", self.d))

    def apply(self, params, x_Td):
        docs = current()  # packed documents: each from position 0
        P = jnp.asarray(sinusoid_table(x_Td.shape[0], self.d), x_Td.dtype)
        return x_Td + (P if docs is None else P[docs.positions])

    def decode(self, params, cache, x_Td, positions, layer=()):
        P = jnp.asarray(sinusoid_table(self.context, self.d), x_Td.dtype)
        return x_Td + P[positions], {}

    def term(self, T, x):
        f, F = f"i / 10000^(2j/{self.d})", rf"i / 10000^{{2j/{self.d}}}"
        return Term(
            (f"{x} ↦ ({x}_i + P_i)_i", f"P_(i,2j) = sin({f}),  P_(i,2j+1) = cos({f})"),
            (
                rf"{x} \mapsto ({x}_i + P_i)_i",
                rf"P_{{i,2j}} = \sin({F}),\ P_{{i,2j+1}} = \cos({F})",
            ),
            self.d,
        )


def rope_angles(positions: jax.Array, k: int, theta: float = 10000.0) -> jax.Array:
    """θ_{i,j} = p_i · theta^{-2j/k} for j < k/2.   [T] → [T, k/2]."""
    inv_freq = theta ** (-jnp.arange(0, k, 2, dtype=jnp.float32) / k)
    return positions.astype(jnp.float32)[:, None] * inv_freq[None, :]


def rope(x_Tk: jax.Array, positions: jax.Array, theta: float = 10000.0) -> jax.Array:
    """Rotate each pair (x_j, x_{j+k/2}) by the angle θ_{i,j} (the "rotate-half" layout
    of GPT-NeoX and HF LLaMA).   R^{…×T×k} → R^{…×T×k}.

    ``rope(q, i)·rope(k, j)`` depends on i − j only: relative positions for free.
    """
    k = x_Tk.shape[-1]
    if k % 2:
        raise ValueError(f"RoPE needs an even head dimension, got k={k}")
    ang = rope_angles(positions, k, theta)
    cos, sin = jnp.cos(ang), jnp.sin(ang)
    x1, x2 = x_Tk[..., : k // 2].astype(jnp.float32), x_Tk[..., k // 2 :].astype(jnp.float32)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_Tk.dtype)
