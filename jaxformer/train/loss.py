"""The objective: next-token cross-entropy, in float32, and bits per byte.

    nll_t = logsumexp(z_t) − z_t[y_t]            z = model(x) ∈ R^{T×V},  y_t = x_{t+1}
    loss  = mean_t nll_t                          (nats per token)
    J     = loss + Σ_l a_l                        the objective: a_l the auxiliary losses
                                                  (points named "*.aux": a mixture's router)
    bpb   = Σ nll / ln 2 / Σ bytes(y_t)           (bits per UTF-8 byte of the text predicted)

Bits per byte does not depend on the tokenizer, so runs with different
vocabularies, and a compressor such as bzip2, are compared on one scale.

A batch is windows [B, T+1] of ids, or packed documents (``packing.Windows``): each window
mapped through ``core.documents`` with its segment ids, and the mean taken over the targets
it trains (w_t = ``trained``):  loss = Σ_t w_t nll_t / Σ_t w_t.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..core import Map
from ..core.documents import documents
from .packing import Windows

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


def outputs(f, params, windows):
    """f(params, x) of each window's inputs x (its first T ids), batched: ``f`` a model or its
    ``trace``; packed windows each inside ``documents`` of their segment ids."""
    if not isinstance(windows, Windows):
        return jax.vmap(f, in_axes=(None, 0))(params, windows[:, :-1])

    def one(x_T, s_T):
        with documents(s_T):
            return f(params, x_T)

    return jax.vmap(one)(windows.tokens[:, :-1], windows.segments[:, :-1])


def targets(windows) -> jax.Array:
    """The next-token targets [B, T]: each window's last T ids."""
    return (windows.tokens if isinstance(windows, Windows) else windows)[:, 1:]


def mean_nll(nll_BT: jax.Array, windows) -> jax.Array:
    """The mean over the targets the batch trains: all of them, or those packed windows mark."""
    if not isinstance(windows, Windows):
        return nll_BT.mean()
    w = windows.trained.astype(jnp.float32)
    return jnp.sum(w * nll_BT) / jnp.maximum(jnp.sum(w), 1.0)


def batch_nll(model: Map, params, windows_BT1, compute_dtype: str = "float32"):
    """Each window's next-token NLL.   [B, T+1] ids (or packed ``Windows``) → [B, T] nats."""
    logits = outputs(model, cast(params, compute_dtype), windows_BT1)
    return jax.vmap(token_nll)(logits, targets(windows_BT1))


def loss(model: Map, params, windows_BT1, compute_dtype: str = "float32"):
    """The mean next-token NLL of a batch of windows (nats per token): a scalar."""
    return mean_nll(batch_nll(model, params, windows_BT1, compute_dtype), windows_BT1)


# trace points: a term of the objective; an expert's share; the fraction of pairs dropped
AUX, LOAD, DROPPED = ".aux", ".load", ".dropped"


def auxiliary(model: Map) -> bool:
    """Whether ``model`` adds terms to the objective (a trace point named "*.aux")."""
    return any(p.endswith(AUX) for _, m in model.walk() for p in m.trace_points())


def objective(model: Map, params, windows_BT1, compute_dtype: str = "float32"):
    """(J, {"loss": the mean NLL, and for a model with auxiliary terms "aux_loss": their
    sum, "expert_load": each expert's share of the routed pairs, [E], and "dropped": the
    fraction of them dropped (by an expert axis' capacity), both over layers and windows}).
    J = loss + aux_loss; without auxiliary terms J = loss, as ``loss``."""
    if not auxiliary(model):
        nll = loss(model, params, windows_BT1, compute_dtype)
        return nll, {"loss": nll}
    logits, points = outputs(model.trace, cast(params, compute_dtype), windows_BT1)
    nll = mean_nll(jax.vmap(token_nll)(logits, targets(windows_BT1)), windows_BT1)
    named = [(jax.tree_util.keystr(k), v) for k, v in jax.tree_util.tree_leaves_with_path(points)]
    ends = lambda suffix: [v for k, v in named if k.endswith(suffix + "']")]
    aux = sum(jnp.sum(a.astype(jnp.float32)) for a in ends(AUX)) / logits.shape[0]  # Σ_l, mean_b
    loads = ends(LOAD)  # each [B, (L,) E]
    load = jnp.mean(jnp.stack([v.reshape(-1, v.shape[-1]).mean(0) for v in loads]), 0)
    dropped = jnp.mean(jnp.stack([v.mean() for v in ends(DROPPED)]))
    return nll + aux, {"loss": nll, "aux_loss": aux, "expert_load": load, "dropped": dropped}


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    return nll_nats / math.log(2) / n_bytes
