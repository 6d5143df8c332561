"""The objective: next-token cross-entropy, in float32, and bits per byte.

    nll_t = logsumexp(z_t) − z_t[y_t]            z = model(x) ∈ R^{T×V},  y_t = x_{t+1}
    loss  = mean_t nll_t                          (nats per token)
    bpb   = Σ nll / ln 2 / Σ bytes(y_t)           (bits per UTF-8 byte of the text predicted)

Bits per byte does not depend on the tokenizer, so runs with different
vocabularies, and a compressor such as bzip2, are compared on one scale.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..core import Map

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def cast(params, compute_dtype: str):
    """The compute copy of the f32 master weights (the identity for float32)."""
    dt = DTYPES[compute_dtype]
    if dt == jnp.float32:
        return params
    return jax.tree.map(lambda w: w.astype(dt), params)


def token_nll(logits_TV: jax.Array, y_T: jax.Array) -> jax.Array:
    """−log softmax(z_t)[y_t] per position, in float32.   [T,V] × [T] → [T]."""
    z = logits_TV.astype(jnp.float32)
    return jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(z, y_T[:, None], axis=-1)[:, 0]


def batch_nll(model: Map, params, windows_BT1: jax.Array, compute_dtype: str = "float32"):
    """Each window's next-token NLL.   [B, T+1] ids → [B, T] nats."""
    x, y = windows_BT1[:, :-1], windows_BT1[:, 1:]
    logits = jax.vmap(model, in_axes=(None, 0))(cast(params, compute_dtype), x)
    return jax.vmap(token_nll)(logits, y)


def loss(model: Map, params, windows_BT1: jax.Array, compute_dtype: str = "float32"):
    """The mean next-token NLL of a batch of windows (nats per token): a scalar."""
    return batch_nll(model, params, windows_BT1, compute_dtype).mean()


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    return nll_nats / math.log(2) / n_bytes
