"""Sampling as pure maps on logits R^{…×V} → R^{…×V}, then a draw.

A transform keeps some logits and sets the others to −inf, so transforms compose
and the draw ``jax.random.categorical`` never picks a removed token:

    temperature(ℓ, τ) = ℓ / τ
    top_k(ℓ, k)       = ℓ where ℓ ≥ (the k-th largest ℓ), else −inf     (ties with it are kept)
    top_p(ℓ, p)       = ℓ on the smallest set of most probable tokens whose mass is ≥ p
                        (always at least the most probable one; ties with its least
                        probable member are kept), else −inf

``sample_logits`` applies them in that order; τ = 0 is greedy (argmax, the lowest id
among equal maxima). All act on the last axis, so a batch of rows needs no vmap.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def temperature(logits: jax.Array, tau) -> jax.Array:
    """ℓ / τ for τ > 0: τ < 1 sharpens the distribution, τ > 1 flattens it."""
    return logits / tau


def top_k(logits: jax.Array, k: int) -> jax.Array:
    """Keep the k largest logits (and any tied with the k-th); −inf elsewhere. k is static."""
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return jnp.where(logits >= kth, logits, -jnp.inf)


def top_p(logits: jax.Array, p) -> jax.Array:
    """Nucleus: keep the most probable tokens until their mass reaches p ∈ (0, 1]; −inf else."""
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    desc = -jnp.sort(-probs, axis=-1)
    before = jnp.cumsum(desc, axis=-1) - desc  # the mass of the more probable tokens
    n_keep = jnp.sum(before < p, axis=-1, keepdims=True)  # ≥ 1: before[0] = 0 < p
    least = jnp.take_along_axis(desc, n_keep - 1, axis=-1)
    keep = (probs >= least) | (p >= 1)  # p = 1 keeps all, whatever the float cumsum reaches
    return jnp.where(keep, logits, -jnp.inf)


def sample_logits(key, logits: jax.Array, tau=1.0, k: int | None = None, p=None) -> jax.Array:
    """A token id per row of ``logits`` [..., V]: argmax if τ == 0 (a Python number), else
    a draw from softmax(top_p(top_k(ℓ / τ, k), p)). ``k`` static; τ and p may be traced."""
    if isinstance(tau, int | float) and tau == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = temperature(logits.astype(jnp.float32), tau)
    if k is not None:
        logits = top_k(logits, k)
    if p is not None:
        logits = top_p(logits, p)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
