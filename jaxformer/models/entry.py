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


def validate_tokens(model: Map, tokens, where: str = "tokens", ndim=(1, 2)) -> np.ndarray:
    """Check ``tokens`` ([T] or [B,T] integers in [0, V), T ≤ context); return it as int32.
    ``where`` names the argument in the error; ``ndim`` the ranks it may have."""
    if isinstance(tokens, str):
        raise ValueError(f"{where}: got text; encode the text with the model's tokenizer")
    a = np.asarray(tokens)
    dom = model.domain
    if a.ndim not in ndim:
        shapes = " or ".join(("[T]", "[B, T]")[n - 1] for n in ndim)
        raise ValueError(
            f"{where} must have shape {shapes}, got shape {a.shape}; "
            "wrap a single sequence as [ids] or pass a 2-D batch"
        )
    if a.size == 0 and a.shape[-1] == 0:
        raise ValueError(f"{where}: the sequence is empty; pass at least one token id")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(
            f"{where} must be integer token ids, got dtype {a.dtype}; "
            "convert with np.asarray(x, np.int32)"
        )
    limit = dict(dom.limits).get("T")
    if limit is not None and a.shape[-1] > limit:
        raise ValueError(
            f"{where}: sequence length {a.shape[-1]} exceeds the context {limit}; "
            f"truncate to the last {limit} tokens"
        )
    dom.validate(a, where)
    return a.astype(np.int32)


@functools.cache
def _compiled(model: Map, batched: bool):
    f = jax.vmap(model, in_axes=(None, 0)) if batched else model
    return jax.jit(f)


def logits(model: Map, params, tokens) -> jax.Array:
    """Next-token logits: [T] → [T, V] or [B, T] → [B, T, V], validated first."""
    a = validate_tokens(model, tokens)
    return _compiled(model, a.ndim == 2)(params, jnp.asarray(a))
