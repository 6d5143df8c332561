"""Direct logit attribution (a decomposition) and the logit lens (a readout).

Direct logit attribution splits the logits by the last map that wrote each part
of the final residual stream. With the final norm's scale s_t frozen at its
traced value, the readout x ↦ N_f(x) W_U is affine, so

    logits = Σ_c (s · γ ⊙ P w_c) W_U + β W_U + b_U

over the writes w_c ∈ {embed, pos, each head L{l}H{h}, each L{l}.b_O, each L{l}.mlp}:
an exact decomposition (the path expansion grouped by each path's last head).

The logit lens reads the stream entering each block through the *actual* final
norm and unembedding, as if the model stopped there. It is a readout of each
stage, not a decomposition: the stages do not sum to anything.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core import Map, Params
from ..models import layout as N
from .anatomy import Anatomy, points_of, positions, stream_in, untied
from .paths import Terms, readout


def writes(model: Map, params: Params, tokens, points=None) -> Terms:
    """What each map wrote to the residual stream, label → [T, d]; they sum to the
    final stream (before the final norm)."""
    a = Anatomy.of(model)
    a.require("writes", "stream")
    points, params = points_of(model, params, tokens, points), untied(model, params)
    blocks, x0 = points[N.BLOCKS], points[N.EMBED]
    out = {N.EMBED: x0}
    P = positions(a, params, x0.shape[0])
    if P is not None:
        out[N.POS] = P.astype(x0.dtype)
    z = blocks[f"{N.ATTN}.z"]
    p = params[N.BLOCKS][N.ATTN]
    heads = jnp.einsum("lhtk,lhkd->lhtd", z, p["W_O"].astype(z.dtype))
    for l in range(a.L):
        out |= {f"L{l}H{h}": heads[l, h] for h in range(a.H)}
        if a.attn.has_out_bias:
            out[f"L{l}.b_O"] = jnp.broadcast_to(p["b_O"][l], heads.shape[2:])
        if a.mlp is not None:
            out[f"L{l}.{N.MLP}"] = blocks[N.MLP][l]
    return out


def direct_logit_attribution(model: Map, params: Params, tokens, points=None) -> Terms:
    """Each write's direct effect on the logits under the frozen final norm, label → [T, V],
    plus ``"ln_f.beta"`` and ``"b_U"``; exactly sums to the logits (to float rounding).
    Index ``[t, token]`` for one logit, or take differences for a logit difference."""
    a = Anatomy.of(model)
    a.require("direct_logit_attribution", "stream", "logits")
    points = points_of(model, params, tokens, points)
    w = writes(model, params, tokens, points)
    return readout(a, untied(model, params), points, list(w), jnp.stack(list(w.values())))


def logit_lens(model: Map, params: Params, tokens, points=None) -> jax.Array:
    """The stream entering each block and the final stream, read out through the final
    norm and the unembedding.   → [L+1, T, V]; the last is the model's logits."""
    a, points = Anatomy.of(model), points_of(model, params, tokens, points)
    params = untied(model, params)
    X = jnp.stack([stream_in(a, points, l) for l in range(a.L + 1)])
    if a.ln_f is not None:
        norm = jax.vmap(lambda x: a.ln_f(params[N.LN_F], x))
        X = jax.vmap(norm)(X)
    return jax.vmap(lambda x: a.unembed(params[N.UNEMBED], x))(X)
