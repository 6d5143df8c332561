"""Norms as token maps R^d → R^d (lift to R^{T×d} with ``tokenwise``).

LayerNorm = affine ∘ normalise ∘ center:
    center(x)    = x − mean(x)·1
    normalise(x) = x / sqrt(mean(x²) + ε)
    affine(x)    = γ ⊙ x + β
RMSNorm = (x ↦ γ ⊙ x) ∘ normalise;  with ``offset`` 1 (Gemma) the gain is 1 + γ, γ stored
as the checkpoint stores it (initially 0), so that a round trip through it is exact.
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

from ..core import Map, Param, Real, Term, tex_number


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


class _Norm(Map):
    """What every norm shares: it acts on each token, records its scale, and is
    ``centered`` (reads only the mean-free part of its input) or not."""

    tokenwise = True
    centered: bool

    domain = property(lambda self: Real(self.d))
    codomain = property(lambda self: Real(self.d))

    def trace_points(self):
        return (self.name, f"{self.name}.scale")

    def gain(self, params):
        """The factor the normalised x is multiplied by: γ, or 1 + γ (``offset``)."""
        offset = getattr(self, "offset", 0.0)  # 1 + γ in float32 (HF's Gemma: 1 + w.float())
        return params["gamma"].astype(jnp.float32) + offset if offset else params["gamma"]

    def plain(self) -> Normalise:
        """The norm without its affine part (same name, so a trace keeps its keys)."""
        return Normalise(self.d, self.eps, self.centered, self.name)

    def _traced(self, x_d, gamma, beta):
        """The output and its points (autodiff through the pieces, for circuits)."""
        y, (_, s, _, _) = _norm_fwd(x_d.astype(jnp.float32), gamma, beta, self.eps, self.centered)
        y = y.astype(x_d.dtype)
        return y, {self.name: y, f"{self.name}.scale": s[0]}


@dataclass(frozen=True, repr=False)
class LayerNorm(_Norm):
    """x ↦ γ ⊙ (x − μ)/sqrt(σ² + ε) + β.   R^d → R^d;  γ, β: [d]."""

    d: int
    eps: float = 1e-5
    name: str = "ln"
    centered = True

    def spec(self):
        return {"gamma": Param((self.d,), ("d",), fill=1.0), "beta": Param((self.d,), ("d",))}

    def forward(self, params, x_d):
        return self._traced(x_d, params["gamma"], params["beta"])

    def apply(self, params, x_d):
        x = x_d.astype(jnp.float32)
        return norm(x, params["gamma"], params["beta"], self.eps, True).astype(x_d.dtype)

    def term(self, T, x):
        # center: mean and subtract (2d); variance: square and mean (2d); scale, γ, β (3d).
        return Term(
            (
                f"{x} ↦ γ ⊙ ({x} − μ) / √(σ² + ε) + β",
                f"μ = mean({x}),  σ² = mean(({x} − μ)²),  ε = {self.eps:g}",
            ),
            (
                rf"{x} \mapsto \gamma \odot ({x} - \mu) / \sqrt{{\sigma^2 + \varepsilon}} + \beta",
                rf"\mu = \mathrm{{mean}}({x}),\ \sigma^2 = \mathrm{{mean}}(({x} - \mu)^2),"
                rf"\ \varepsilon = {tex_number(self.eps)}",
            ),
            7 * self.d,
        )


@dataclass(frozen=True, repr=False)
class RMSNorm(_Norm):
    """x ↦ γ ⊙ x / sqrt(mean(x²) + ε), or with ``offset=1`` (Gemma) x ↦ (1 + γ) ⊙ x / sqrt(…).
    R^d → R^d;  γ: [d] (initially 1, or 0 with the offset: the gain starts at 1)."""

    d: int
    eps: float = 1e-6
    name: str = "ln"
    offset: float = 0.0
    centered = False

    def spec(self):
        return {"gamma": Param((self.d,), ("d",), fill=1.0 - self.offset)}

    def forward(self, params, x_d):
        return self._traced(x_d, self.gain(params), None)

    def apply(self, params, x_d):
        x = x_d.astype(jnp.float32)
        return norm(x, self.gain(params), None, self.eps, False).astype(x_d.dtype)

    def term(self, T, x):
        g, tg = ("(1 + γ)", r"(1 + \gamma)") if self.offset else ("γ", r"\gamma")
        return Term(
            (f"{x} ↦ {g} ⊙ {x} / √(mean({x}²) + ε),  ε = {self.eps:g}",),
            (
                rf"{x} \mapsto {tg} \odot {x} / \sqrt{{\mathrm{{mean}}({x}^2) + \varepsilon}},"
                rf"\ \varepsilon = {tex_number(self.eps)}",
            ),
            4 * self.d,  # 1 + γ is formed once per call, not per token
        )


@dataclass(frozen=True, repr=False)
class Normalise(_Norm):
    """A norm without its affine part, what folding γ and β into the readers leaves behind
    (``circuits.fold_ln``).   R^d → R^d;  no parameters.

        centered=True:   x ↦ (x − μ) / sqrt(mean((x − μ)²) + ε)     (LayerNorm, γ=1, β=0)
        centered=False:  x ↦ x / sqrt(mean(x²) + ε)                  (RMSNorm, γ=1)
    """

    d: int
    eps: float
    centered: bool = True
    name: str = "ln"

    def forward(self, params, x_d):
        return self._traced(x_d, jnp.float32(1.0), None)

    def apply(self, params, x_d):
        return self.forward(params, x_d)[0]

    def term(self, T, x):
        c = f"{x} − μ" if self.centered else x
        tc = rf"{x} - \mu" if self.centered else x
        return Term(
            (f"{x} ↦ ({c}) / √(mean(({c})²) + ε),  ε = {self.eps:g}",),
            (rf"{x} \mapsto ({tc}) / \sqrt{{\mathrm{{mean}}(({tc})^2) + \varepsilon}}",),
            (5 if self.centered else 3) * self.d,
        )
