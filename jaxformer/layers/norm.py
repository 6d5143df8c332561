"""Norms as token maps R^d → R^d (lift to R^{T×d} with ``tokenwise``).

LayerNorm = affine ∘ normalise ∘ center:
    center(x)    = x − mean(x)·1
    normalise(x) = x / sqrt(mean(x²) + ε)
    affine(x)    = γ ⊙ x + β
RMSNorm = (x ↦ γ ⊙ x) ∘ normalise.
``center`` is a linear projection; the only non-linearity is the scale
1/sqrt(mean(x²)+ε), which the trace records as ``"<name>.scale"`` so that
circuit analyses can freeze it and treat the norm as an affine map.
Computed in float32 (then cast back): the mean of squares overflows bf16 easily.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..core import Map, Param, Real


def center(x: jax.Array) -> jax.Array:
    return x - x.mean(-1, keepdims=True)


def scale(x: jax.Array, eps: float) -> jax.Array:
    """The normalising factor 1/sqrt(mean(x²) + ε) (a scalar per token)."""
    return jax.lax.rsqrt(jnp.mean(jnp.square(x), -1, keepdims=True) + eps)


def normalise(x: jax.Array, eps: float) -> jax.Array:
    return x * scale(x, eps)


def affine(x: jax.Array, gamma: jax.Array, beta: jax.Array | None = None) -> jax.Array:
    return gamma * x if beta is None else gamma * x + beta


@dataclass(frozen=True, repr=False)
class LayerNorm(Map):
    """x ↦ γ ⊙ (x − μ)/sqrt(σ² + ε) + β.   R^d → R^d;  γ, β: [d]."""

    d: int
    eps: float = 1e-5
    name: str = "ln"

    domain = property(lambda self: Real(self.d))
    codomain = property(lambda self: Real(self.d))

    def spec(self):
        return {"gamma": Param((self.d,), ("d",), fill=1.0), "beta": Param((self.d,), ("d",))}

    def forward(self, params, x_d):
        c = center(x_d.astype(jnp.float32))
        s = scale(c, self.eps)
        y = affine(c * s, params["gamma"], params["beta"]).astype(x_d.dtype)
        return y, {self.name: y, f"{self.name}.scale": s[0]}

    def apply(self, params, x_d):
        return self.forward(params, x_d)[0]


@dataclass(frozen=True, repr=False)
class RMSNorm(Map):
    """x ↦ γ ⊙ x / sqrt(mean(x²) + ε).   R^d → R^d;  γ: [d]."""

    d: int
    eps: float = 1e-6
    name: str = "ln"

    domain = property(lambda self: Real(self.d))
    codomain = property(lambda self: Real(self.d))

    def spec(self):
        return {"gamma": Param((self.d,), ("d",), fill=1.0)}

    def forward(self, params, x_d):
        x = x_d.astype(jnp.float32)
        s = scale(x, self.eps)
        y = affine(x * s, params["gamma"]).astype(x_d.dtype)
        return y, {self.name: y, f"{self.name}.scale": s[0]}

    def apply(self, params, x_d):
        return self.forward(params, x_d)[0]
