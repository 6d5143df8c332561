"""Chunked attention: dense attention's map, each chunk of queries against only the keys it sees.

    attend: R^{H×T×k} × R^{G×S×k} × R^{G×S×k} → R^{H×T×k},   (q, k, v) ↦ z
    z^h_i = Σ_j A^h_ij v^{g(h)}_j,   A^h_i = softmax_j(mask_ij(cap(c · q^h_i · k^{g(h)}_j)))

(the map of ``blockwise.py``, with its g(h), c, cap and mask).

The T queries are cut into chunks of ``block`` rows (static slices, unrolled: T/block is small
where this is used). Chunk [a, b) is scored against the keys [lo, hi) that some query of it
sees: hi = b under a causal mask (S otherwise), lo = a − window + 1 with a window (0
otherwise). Each row meets all its keys at once, so the softmax is the dense one, with no
running rescale; what is skipped is the masked triangle: causal attention over n chunks
computes (n+1)/2n of the dense products (T=512, block=128: 62.5%).

    forward, per chunk:   s = cap(c·q kᵀ) + mask (0 or −∞),  E = exp(s − rowmax s),
                          ℓ = rowsum E,  z = (E v) / ℓ             (E and ℓ saved)
    backward (custom VJP): P = E/ℓ,  D = rowsum(dz ⊙ z),  dS = c·P ⊙ (dz vᵀ − D) ⊙ cap'(·),
                          dq = dS k,  dk = dSᵀ q,  dv = Pᵀ dz

The backward is FlashAttention's, from the saved E rather than recomputed: one pass over each
chunk's [rows, keys] for dS where autodiff of the dense softmax makes several (the mask's
select, the scale and the transpose each a copy of T×T on XLA:CPU). Memory is the dense
map's (E is about half of T×T causal), so "auto" takes this below ``BLOCKWISE_FROM`` and
the blockwise (O(T·block)) form from there. Scores, softmax and sums are float32; z and the
gradients have their inputs' dtypes.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .blockwise import _cap, _resolve, _visible

f32 = jnp.float32


def chunks(T: int, S: int, block: int, *, causal=True, window=None):
    """[(a, b, lo, hi)]: each chunk of queries [a, b) and the keys [lo, hi) it is scored
    against. Without a causal mask, one chunk of all T queries against all S keys."""
    if not causal:
        return [(0, T, 0, S)]
    out = []
    for a in range(0, T, block):
        b = min(a + block, T)
        out.append((a, b, 0 if window is None else max(0, a - window + 1), b))
    return out


def _rows(q, k, v, bias, meta):
    """z, E, ℓ, the capped logits (softcap only) of one chunk: q [G, n, k] (n = its H/G heads'
    rows stacked), k, v [G, S_a, k], bias [n, S_a] (0 or −∞)."""
    c, softcap = meta
    s = _cap(c * jnp.einsum("gnk,gsk->gns", q, k, preferred_element_type=f32), softcap)
    masked = s + bias
    E = jnp.exp(masked - jnp.max(masked, -1, keepdims=True))
    l = jnp.sum(E, -1, keepdims=True)
    z = jnp.einsum("gns,gsk->gnk", E.astype(v.dtype), v, preferred_element_type=f32) / l
    return z.astype(q.dtype), E, l, (s if softcap is not None else None)


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attend(q, k, v, bias, meta):
    return _rows(q, k, v, bias, meta)[0]


def _attend_fwd(q, k, v, bias, meta):
    z, E, l, s = _rows(q, k, v, bias, meta)
    return z, (q, k, v, bias, z, E, l, s)


def _attend_bwd(meta, res, dz):
    c, softcap = meta
    q, k, v, bias, z, E, l, s = res
    P = E / l
    dP = jnp.einsum("gnk,gsk->gns", dz, v, preferred_element_type=f32)
    D = jnp.sum(dz.astype(f32) * z.astype(f32), -1, keepdims=True)  # rowsum(dz ⊙ z) = Σ P dP
    dS = c * P * (dP - D)
    if softcap is not None:
        dS = dS * (1 - (s / softcap) ** 2)  # cap'(x) = 1 − tanh²(x/softcap)
    grad = lambda spec, a, b, like: jnp.einsum(
        spec, a.astype(b.dtype), b, preferred_element_type=f32
    ).astype(like.dtype)
    dq = grad("gns,gsk->gnk", dS, k, q)
    dk = grad("gns,gnk->gsk", dS, q, k)
    dv = grad("gns,gnk->gsk", P, dz, v)
    return dq, dk, dv, jnp.zeros_like(bias)


_attend.defvjp(_attend_fwd, _attend_bwd)


def chunked_attention(q_HTk, k_GSk, v_GSk, *, causal=True, window=None, softcap=None,
                      scale=None, block=128, segments=None):  # fmt: skip
    """z [H,T,k] of q [H,T,k], k, v [G,S,k]: ``blockwise_attention``'s map and arguments
    (``block``: the queries per chunk; ``segments``: packed documents' ids [T], each query
    seeing its own document's keys), computed chunk by chunk (the module docstring).
    Differentiable in q, k, v; one sequence: vmap it over a batch."""
    c = _resolve(q_HTk, k_GSk, v_GSk, causal, window, scale, segments)
    (H, T, dk), (G, S, _) = q_HTk.shape, k_GSk.shape
    R = H // G
    meta = (c, None if softcap is None else float(softcap))
    out = []
    for a, b, lo, hi in chunks(T, S, block, causal=causal, window=window):
        i, j = jnp.arange(a, b)[:, None], jnp.arange(lo, hi)[None, :]
        seen = jnp.broadcast_to(_visible(i, j, S, causal, window, segments), (b - a, hi - lo))
        bias = jnp.where(seen, 0.0, -jnp.inf)
        q = q_HTk[:, a:b].reshape(G, R * (b - a), dk)  # the heads sharing g: rows of one matmul
        z = _attend(q, k_GSk[:, lo:hi], v_GSk[:, lo:hi], jnp.tile(bias, (R, 1)), meta)
        out.append(z.reshape(H, b - a, dk))
    return jnp.concatenate(out, axis=1)
