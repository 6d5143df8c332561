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

``apply`` (what a model's forward and backward pass run) uses the same formula with
its closed-form VJP, x̂ = (normalised x), g_x̂ = γ ⊙ g:

    LayerNorm  ∂x = s · (g_x̂ − mean(g_x̂) − x̂ · mean(g_x̂ ⊙ x̂))
    RMSNorm    ∂x = s · (g_x̂ − x̂ · mean(g_x̂ ⊙ x̂))              ∂γ = g ⊙ x̂,  ∂β = g

Autodiff through center, scale and affine gives the same numbers as a chain of small
terms that XLA:CPU fuses into every consumer of the residual stream's gradient and
re-derives there (~7% of a CPU training step); ``forward`` (the trace) keeps the pieces.
"""

from __future__ import annotations

import functools
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


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def norm(x: jax.Array, gamma: jax.Array, beta, eps: float, centered: bool) -> jax.Array:
    """γ ⊙ normalise(center(x)) + β (``centered``) or γ ⊙ normalise(x) (β None), float32."""
    return _norm_fwd(x, gamma, beta, eps, centered)[0]


def _norm_fwd(x, gamma, beta, eps, centered):
    c = center(x) if centered else x
    s = scale(c, eps)
    x_hat = c * s
    return affine(x_hat, gamma, beta), (x_hat, s, gamma, beta)


def _norm_bwd(eps, centered, res, g):
    x_hat, s, gamma, beta = res
    g_hat = g * gamma
    dx = g_hat - x_hat * jnp.mean(g_hat * x_hat, -1, keepdims=True)
    if centered:
        dx = dx - jnp.mean(g_hat, -1, keepdims=True)
    d_beta = None if beta is None else g.astype(beta.dtype)  # γ, β may be a bf16 copy
    return (s * dx).astype(x_hat.dtype), (g * x_hat).astype(gamma.dtype), d_beta


norm.defvjp(_norm_fwd, _norm_bwd)


def _traced(m: Map, x_d, gamma, beta, centered: bool):
    """The norm's output and its points (autodiff through the pieces, for circuits)."""
    y, (_, s, _, _) = _norm_fwd(x_d.astype(jnp.float32), gamma, beta, m.eps, centered)
    y = y.astype(x_d.dtype)
    return y, {m.name: y, f"{m.name}.scale": s[0]}


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
        return _traced(self, x_d, params["gamma"], params["beta"], centered=True)

    def apply(self, params, x_d):
        x = x_d.astype(jnp.float32)
        return norm(x, params["gamma"], params["beta"], self.eps, True).astype(x_d.dtype)


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
        return _traced(self, x_d, params["gamma"], None, centered=False)

    def apply(self, params, x_d):
        x = x_d.astype(jnp.float32)
        return norm(x, params["gamma"], None, self.eps, False).astype(x_d.dtype)
