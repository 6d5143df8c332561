"""What a head does: previous-token, induction and copying heads, from patterns and weights.

From the patterns of a traced sequence [r, r] (a random segment r of length n,
repeated):

    previous-token score   mean_t A[t, t−1]
    induction score        mean_{t ≥ n} A[t, t−n+1]   (attend to the token after the
                           earlier occurrence of the current token)

From the weights alone (read a processed model, ``process_weights``):

    copying score          Σ λ / Σ |λ| over the eigenvalues λ of W_E W_OV W_U: near 1
                           when the head raises the logits of the tokens it attends to
    previous-token score   the same pattern statistic on the positional circuit
                           softmax(mask(W_pos W_QK W_posᵀ / √k))
    induction score        prev(h₁) · match(h₁, h₂) · copy⁺(h₂), best over earlier h₁, where
                           match is how often the K-composed circuit
                           W_E W_QK^{h₂} (W_E W_OV^{h₁})ᵀ ranks the query's own token first
                           among the tokens h₁ brings to a key position
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core import Map, Params
from ..models import layout as N
from .anatomy import Anatomy
from .weights import W_E, W_OV, W_QK, position_QK, token_OV

MAX_MATCH_VOCAB = 8192  # the matching circuit is formed densely, [V, V] per pair of heads


def repeated_tokens(key: jax.Array, V: int, n: int, reps: int = 2, batch: int = 1) -> jax.Array:
    """``batch`` sequences of a uniformly random segment of n tokens repeated ``reps``
    times.   → [batch, reps·n] int32."""
    if min(V, n, reps, batch) < 1:
        raise ValueError(f"repeated_tokens needs V, n, reps, batch ≥ 1, got {V, n, reps, batch}")
    r = jax.random.randint(key, (batch, n), 0, V, jnp.int32)
    return jnp.tile(r, (1, reps))


def previous_token_scores(pattern: jax.Array) -> jax.Array:
    """mean_{t ≥ 1} A[t, t−1].   [..., T, T] → [...]"""
    return jnp.diagonal(pattern, -1, -2, -1).mean(-1)


def induction_scores(pattern: jax.Array, n: int) -> jax.Array:
    """mean_{t ≥ n} A[t, t−n+1] on sequences that repeat a segment of length n.
    [..., T, T] → [...]"""
    T = pattern.shape[-1]
    if not 1 <= n < T:
        raise ValueError(f"the repeated segment length n={n} must be in [1, T={T})")
    return jnp.diagonal(pattern, 1 - n, -2, -1)[..., 1:].mean(-1)  # rows t = n … T−1


def copying_scores(model: Map, params: Params) -> jax.Array:
    """Σλ / Σ|λ| over the eigenvalues of each head's W_E W_OV W_U (real part; 0 for a head
    that writes nothing the unembedding reads).   [L, H]"""
    lam = token_OV(model, params).eigenvalues()
    total = jnp.abs(lam).sum(-1)
    return jnp.where(total > 0, lam.real.sum(-1) / jnp.where(total > 0, total, 1.0), 0.0)


def previous_token_scores_from_weights(model: Map, params: Params, T: int) -> jax.Array:
    """``previous_token_scores`` of the positional patterns softmax(mask(W_pos W_QK W_posᵀ/√k))
    over T positions.   [L, H]"""
    k = Anatomy.of(model).attn.k
    s = position_QK(model, params, T).dense / jnp.sqrt(k)
    s = jnp.where(jnp.tril(jnp.ones((T, T), bool)), s, -jnp.inf)
    return previous_token_scores(jax.nn.softmax(s, -1))


def matching_scores(model: Map, params: Params) -> jax.Array:
    """How often W_E W_QK^{h₂} (W_E W_OV^{h₁})ᵀ puts each query token's own column first:
    the fraction of tokens a with argmax_b M[a, b] = a.   [L, H, L, H] as [l₁, h₁, l₂, h₂]."""
    V = params[N.EMBED]["W_E"].shape[0]
    if V > MAX_MATCH_VOCAB:
        raise ValueError(
            f"matching_scores forms [V, V] matrices; V={V} > {MAX_MATCH_VOCAB} is too large"
        )
    Anatomy.of(model).require("matching_scores", "stream")
    E = W_E(params, model)
    QK, OV = E @ W_QK(model, params), E @ W_OV(model, params)  # [L, H, V, ·] left factors
    L, H = QK.shape[:2]
    flat = lambda X: X.reshape(L * H, *X.shape[2:])

    def match(q, o):  # one pair: M = (E W_QK^{h₂}) (E W_OV^{h₁})ᵀ, formed [V, V]
        M = q[0] @ (q[1] @ o[1].T) @ o[0].T
        return (jnp.argmax(M, -1) == jnp.arange(V)).mean()

    # lax.map, not vmap: one [V, V] matrix at a time
    rows = lambda q: jax.lax.map(lambda o: match(q, o), (flat(OV.A), flat(OV.B)))
    scores = jax.lax.map(rows, (flat(QK.A), flat(QK.B)))  # [h₂ flat, h₁ flat]
    return scores.T.reshape(L, H, L, H)


def induction_scores_from_weights(model: Map, params: Params, T: int) -> jax.Array:
    """max over heads h₁ of earlier layers of prev(h₁) · match(h₁, h₂) · max(copy(h₂), 0).
    [L, H]; zero in the first layer."""
    prev = previous_token_scores_from_weights(model, params, T)  # [L, H]
    match = matching_scores(model, params)  # [l₁, h₁, l₂, h₂]
    L = prev.shape[0]
    earlier = (jnp.arange(L)[:, None] < jnp.arange(L)[None, :])[:, None, :, None]
    best = jnp.where(earlier, prev[:, :, None, None] * match, 0.0).max((0, 1))
    return best * jnp.maximum(copying_scores(model, params), 0.0)
