"""The public entry for token ids: validate on the host, then run compiled.

Inside ``jit`` nothing can raise and an out-of-range index is silently clamped,
so ids, rank, dtype and length are checked here first.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..core import Map


def validate_tokens(model: Map, tokens) -> np.ndarray:
    """Check ``tokens`` ([T] or [B,T] integers in [0, V), T ≤ context); return it as int32."""
    a = np.asarray(tokens)
    dom = model.domain
    if a.ndim not in (1, 2):
        raise ValueError(
            f"tokens must have shape [T] or [B, T], got shape {a.shape}; "
            "wrap a single sequence as [ids] or pass a 2-D batch"
        )
    if a.size == 0 and a.shape[-1] == 0:
        raise ValueError("tokens: the sequence is empty; pass at least one token id")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(
            f"tokens must be integer ids, got dtype {a.dtype}; convert with np.asarray(x, np.int32)"
        )
    limit = dict(dom.limits).get("T")
    if limit is not None and a.shape[-1] > limit:
        raise ValueError(
            f"tokens: sequence length {a.shape[-1]} exceeds the context {limit}; "
            f"truncate to the last {limit} tokens"
        )
    dom.validate(a, model.name)
    return a.astype(np.int32)


@functools.cache
def _compiled(model: Map, batched: bool):
    f = jax.vmap(model, in_axes=(None, 0)) if batched else model
    return jax.jit(f)


def logits(model: Map, params, tokens) -> jax.Array:
    """Next-token logits: [T] → [T, V] or [B, T] → [B, T, V], validated first."""
    a = validate_tokens(model, tokens)
    return _compiled(model, a.ndim == 2)(params, jnp.asarray(a))
