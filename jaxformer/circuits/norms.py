"""Norms seen from the circuits: frozen to affine maps, and stripped of their affine part.

A norm N(x) = γ ⊙ (P x)·s(x) + β (P = centering for LayerNorm, identity for RMSNorm)
is linear except for the scalar s(x) = 1/sqrt(mean((Px)²) + ε). With s_t frozen at
the value the trace recorded for token t, N becomes the affine map

    N_t(x) = s_t · γ ⊙ P x + β,

so everything downstream of it is linear in the residual stream: the basis of
the path expansion and of exact direct logit attribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..core import Map, Real
from ..layers import LayerNorm, RMSNorm, center, scale

NORMS = (LayerNorm, RMSNorm)


@dataclass(frozen=True, repr=False)
class Normalise(Map):
    """A norm without its affine part, what ``fold_ln`` leaves behind.   R^d → R^d;
    no parameters.

        centered=True:   x ↦ (x − μ) / sqrt(mean((x − μ)²) + ε)     (LayerNorm, γ=1, β=0)
        centered=False:  x ↦ x / sqrt(mean(x²) + ε)                  (RMSNorm, γ=1)

    Records ``"<name>.scale"`` like the norms it replaces.
    """

    d: int
    eps: float
    centered: bool = True
    name: str = "ln"

    domain = property(lambda self: Real(self.d))
    codomain = property(lambda self: Real(self.d))

    def forward(self, params, x_d):
        x = x_d.astype(jnp.float32)
        c = center(x) if self.centered else x
        s = scale(c, self.eps)
        y = (c * s).astype(x_d.dtype)
        return y, {self.name: y, f"{self.name}.scale": s[0]}

    def apply(self, params, x_d):
        return self.forward(params, x_d)[0]


def is_centered(norm: Map) -> bool:
    """Whether the norm reads only the mean-free part of its input."""
    return isinstance(norm, LayerNorm) or (isinstance(norm, Normalise) and norm.centered)


def frozen_linear(norm: Map | None, p: dict, s_T: jax.Array | None, x_Td: jax.Array) -> jax.Array:
    """The linear part of the frozen norm: x_t ↦ s_t · γ ⊙ P x_t.   [..., T, d] → [..., T, d].

    ``norm`` is ``None`` for a model without that norm (the identity).
    """
    if norm is None:
        return x_Td
    if not isinstance(norm, (*NORMS, Normalise)):
        raise TypeError(f"cannot freeze {norm.name!r} ({type(norm).__name__}): not a known norm")
    y = center(x_Td) if is_centered(norm) else x_Td
    y = y * s_T.astype(y.dtype)[:, None]
    return y * p["gamma"].astype(y.dtype) if "gamma" in p else y


def has_offset(norm: Map | None) -> bool:
    """Whether the norm adds a constant β (LayerNorm's; RMSNorm and ``Normalise`` have none)."""
    return isinstance(norm, LayerNorm)


def offset(norm: Map | None, p: dict) -> jax.Array | None:
    """The constant part β of the frozen norm (``None`` when there is none)."""
    return p["beta"] if has_offset(norm) else None
