"""Norms seen from the circuits: frozen to affine maps, and stripped of their affine part.

A norm N(x) = g ⊙ (P x)·s(x) + β (P = centering for LayerNorm, identity for RMSNorm;
the gain g is γ, or 1 + γ for Gemma's RMSNorm: the layer's ``gain``)
is linear except for the scalar s(x) = 1/sqrt(mean((Px)²) + ε). With s_t frozen at
the value the trace recorded for token t, N becomes the affine map

    N_t(x) = s_t · g ⊙ P x + β,

so everything downstream of it is linear in the residual stream: the basis of
the path expansion and of exact direct logit attribution.
"""

from __future__ import annotations

import jax

from ..core import Map
from ..layers import center


def is_norm(m: Map | None) -> bool:
    """Whether ``m`` is a norm: a map that states whether it centers (LayerNorm, RMSNorm,
    ``Normalise``, any norm layer that declares ``centered``)."""
    return isinstance(getattr(m, "centered", None), bool)


def gain(norm: Map, p: dict) -> jax.Array | None:
    """The factor g the normalised input is multiplied by (γ, or 1 + γ); ``None`` for none."""
    if "gamma" not in p:
        return None
    return norm.gain(p) if hasattr(norm, "gain") else p["gamma"]


def is_centered(norm: Map) -> bool:
    """Whether the norm reads only the mean-free part of its input."""
    return is_norm(norm) and norm.centered


def frozen_linear(norm: Map | None, p: dict, s_T: jax.Array | None, x_Td: jax.Array) -> jax.Array:
    """The linear part of the frozen norm: x_t ↦ s_t · g ⊙ P x_t.   [..., T, d] → [..., T, d].

    ``norm`` is ``None`` for a model without that norm (the identity).
    """
    if norm is None:
        return x_Td
    if not is_norm(norm):
        raise TypeError(f"cannot freeze {norm.name!r} ({type(norm).__name__}): not a known norm")
    y = center(x_Td) if is_centered(norm) else x_Td
    y = y * s_T.astype(y.dtype)[:, None]
    g = gain(norm, p)
    return y if g is None else y * g.astype(y.dtype)


def has_offset(norm: Map | None) -> bool:
    """Whether the norm adds a constant β (LayerNorm's; RMSNorm and ``Normalise`` have none)."""
    return norm is not None and "beta" in norm.spec()


def offset(norm: Map | None, p: dict) -> jax.Array | None:
    """The constant part β of the frozen norm (``None`` when there is none)."""
    return p["beta"] if has_offset(norm) else None
