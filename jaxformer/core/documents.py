"""Packed documents: one window of T tokens that holds several documents, each mapped alone.

    s ∈ Z^T            the document each position belongs to (non-decreasing runs; 0: padding)
    p_t = t − t₀(s_t)   its position in its document (t₀: where that document starts)
    mask_ij ∧ s_i = s_j attention sees only its own document

A composite of maps of one sequence maps a packed window as it maps each document alone when
the two layers that see across positions honour the packing: attention masks the other
documents out, and positions (learned, sinusoidal, RoPE) restart at each document. The other
maps act per token (norms, MLPs, a mixture's experts), so they need nothing.

The packing is a scope, not a new domain: ``with documents(s): model(params, x)``. Inside the
scope ``current()`` gives the attention and position layers (s, p); outside it they see one
document (``None``). The scope holds arrays of the traced call, so it is set inside ``jit``
and ``vmap`` with the tokens, once per sequence (``packed``). Combinators need no new face,
and every existing map keeps its domain V^T → R^{T×V}.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .spaces import ShapeError


@dataclass(frozen=True)
class Documents:
    """The packing of one sequence: segment ids s [T] and in-document positions p [T] (int32)."""

    segments: jax.Array
    positions: jax.Array

    def same(self, i, j):
        """[T, S] bool: positions i and j lie in one document (index arrays, broadcast)."""
        return self.segments[i] == self.segments[j]


_SCOPE: contextvars.ContextVar[Documents | None] = contextvars.ContextVar("documents", default=None)


def positions_of(segments_T: jax.Array) -> jax.Array:
    """p_t = t − (the first index of s_t's run).   [T] int → [T] int32."""
    T = segments_T.shape[0]
    t = jnp.arange(T, dtype=jnp.int32)
    first = jnp.concatenate([jnp.ones(1, bool), segments_T[1:] != segments_T[:-1]])
    return t - jax.lax.cummax(jnp.where(first, t, 0))


@contextlib.contextmanager
def documents(segments_T: jax.Array):
    """Map the sequence inside the scope as the documents ``segments_T`` [T] delimits."""
    if segments_T.ndim != 1:
        raise ShapeError(f"documents: segment ids must be [T], got shape {segments_T.shape}")
    segments_T = jnp.asarray(segments_T, jnp.int32)
    token = _SCOPE.set(Documents(segments_T, positions_of(segments_T)))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def current() -> Documents | None:
    """The packing of the sequence being mapped, or None (one document)."""
    return _SCOPE.get()


def packed(model, params, x_T: jax.Array, segments_T: jax.Array) -> jax.Array:
    """``model(params, x)`` with x [T] read as the documents ``segments_T`` [T] delimits."""
    if segments_T.shape != x_T.shape[:1]:
        raise ShapeError(
            f"packed: segment ids {segments_T.shape} must match the tokens' length {x_T.shape}"
        )
    with documents(segments_T):
        return model(params, x_T)
