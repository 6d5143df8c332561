"""Blockwise (flash) attention: dense attention's map in O(T·block) memory, masked blocks skipped.

    attend: R^{H×T×k} × R^{G×S×k} × R^{G×S×k} → R^{H×T×k},   (q, k, v) ↦ z
    z^h_i = Σ_j A^h_ij v^{g(h)}_j,   A^h_i = softmax_j(mask_ij(cap(c · q^h_i · k^{g(h)}_j)))

g(h) = h // (H/G) (grouped-query attention; G = H without grouping); c = ``scale`` (default
1/√k); cap(s) = softcap·tanh(s/softcap), or s without ``softcap``; mask_ij keeps
j ≤ i (``causal``) and i − window < j (``window``: the query and the window−1 keys before it)
and sets the rest to −∞. Scores, softmax and sums are float32; z has the dtype of q.

The algorithm is FlashAttention-2. T and S are padded to multiples of ``block`` and cut into
query blocks I and key blocks J of ``block`` positions (the H/G query heads that share a
key/value head are stacked into one block of rows, so each product is one matmul per group).

    forward:  for each I (lax.map), a while loop over only the J that some query of I sees:
        s = mask(cap(c·q_I k_Jᵀ)),  m' = max(m, rowmax s),  p = exp(s − m')
        ℓ' = e^{m−m'} ℓ + rowsum p,  o' = e^{m−m'} o + p v_J
      then z_I = o/ℓ, and the row log-sum-exp L_I = m + log ℓ is saved.
    backward (a custom VJP; nothing T×S is stored): D = rowsum(dz ⊙ z); for each J (lax.scan),
      a while loop over only the I that see J, recomputing P = exp(s − L):
        dv_J += Pᵀ dz_I,  dS = P ⊙ (dz_I v_Jᵀ − D) ⊙ cap'(·),  dq_I += c·dS k_J,  dk_J += c·dSᵀ q_I

Causal attention over n blocks computes n(n+1)/2 of the n² block pairs (about half the
FLOPs); a sliding window at most ⌈(window−1)/block⌉+1 per query block. The loops are lax
loops with dynamic bounds, so the compiled program and its compile time do not grow with T.
``dense_attention`` is the same map, computed densely (and ``pattern`` gives its A and
scores, for a trace that asks for them).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

# Finite, not −∞: a row's first key blocks may be wholly masked for it; its running max is then
# _MASKED and the garbage it sums is wiped by e^{m−m'} = 0 when a visible key arrives.
_MASKED = -1e30
f32 = jnp.float32


def _resolve(q_HTk, k_GSk, v_GSk, causal, window, scale, segments=None):
    (H, T, dk), (G, S, _) = q_HTk.shape, k_GSk.shape
    if k_GSk.shape != v_GSk.shape or k_GSk.shape[2] != dk or H % G:
        raise ValueError(f"attention: q {q_HTk.shape}, k {k_GSk.shape}, v {v_GSk.shape}")
    if (causal or window is not None or segments is not None) and S != T:
        raise ValueError(f"attention: masks need S = T, got T={T} S={S}")
    if segments is not None and segments.shape != (T,):
        raise ValueError(f"attention: segment ids {segments.shape} must be [T] = [{T}]")
    if window is not None and (not causal or window < 1):
        raise ValueError(f"attention: window={window} needs causal=True and window >= 1")
    return 1 / math.sqrt(dk) if scale is None else float(scale)


def _cap(s, softcap):
    return s if softcap is None else softcap * jnp.tanh(s / softcap)


def _visible(i, j, S, causal, window, segments=None):
    """Whether query position i sees key position j (broadcast), keys past S (padding) not;
    with ``segments`` [≥ max(i, j) + 1], only a key of the query's own document."""
    ok = j < S
    if segments is not None:
        ok &= segments[i] == segments[j]
    if causal:
        ok &= j <= i
    if window is not None:
        ok &= j > i - window
    return ok


# -- dense: the reference, and the pattern for traces ------------------------------------------
def pattern(q_HTk, k_GSk, *, causal=True, window=None, softcap=None, scale=None, segments=None):
    """(s, A): the masked logits (−∞ where masked) and the pattern, float32.  → [H,T,S] each."""
    c = _resolve(q_HTk, k_GSk, k_GSk, causal, window, scale, segments)
    (H, T, dk), (G, S, _) = q_HTk.shape, k_GSk.shape
    q = q_HTk.reshape(G, H // G, T, dk)
    s = jnp.einsum("grtk,gsk->grts", q, k_GSk, preferred_element_type=f32).reshape(H, T, S)
    i, j = jnp.arange(T)[:, None], jnp.arange(S)[None, :]
    vis = _visible(i, j, S, causal, window, segments)
    s = jnp.where(vis, _cap(s * c, softcap), -jnp.inf)
    return s, jax.nn.softmax(s, axis=-1)


def dense_attention(q_HTk, k_GSk, v_GSk, *, causal=True, window=None, softcap=None, scale=None,
                    block=None, segments=None):  # fmt: skip
    """The same map as ``blockwise_attention`` (``block`` ignored), with the [H,T,S] pattern."""
    kw = dict(causal=causal, window=window, softcap=softcap, scale=scale, segments=segments)
    _, A = pattern(q_HTk, k_GSk, **kw)
    (H, T, dk), G = q_HTk.shape, k_GSk.shape[0]
    A = A.reshape(G, H // G, T, -1).astype(v_GSk.dtype)
    z = jnp.einsum("grts,gsk->grtk", A, v_GSk, preferred_element_type=f32)
    return z.reshape(H, T, dk).astype(q_HTk.dtype)


def sdpa_attention(q_HTk, k_GSk, v_GSk, *, causal=True, window=None, softcap=None, scale=None,
                   block=None, implementation=None):  # fmt: skip
    """The same map through ``jax.nn.dot_product_attention``: on GPU, ``implementation="cudnn"``
    is cuDNN's fused flash kernel (bf16/fp16 inputs); None lets JAX choose, "xla" is dense.
    It has no logit soft-capping: softcap raises NotImplementedError."""
    c = _resolve(q_HTk, k_GSk, v_GSk, causal, window, scale)
    if softcap is not None:
        raise NotImplementedError("jax.nn.dot_product_attention has no logit soft-capping")
    btnk = lambda x: jnp.swapaxes(x, 0, 1)[None]  # [N,T,k] → [1,T,N,k]
    z = jax.nn.dot_product_attention(
        btnk(q_HTk), btnk(k_GSk), btnk(v_GSk), scale=c, is_causal=causal,
        local_window_size=None if window is None else (window - 1, 0),
        implementation=implementation,
    )  # fmt: skip
    return jnp.swapaxes(z[0], 0, 1)


# -- blockwise -------------------------------------------------------------------------------
def _key_blocks(I, B, nk, causal, window):
    """[lo, hi): the key blocks that some query of query block I sees."""
    hi = jnp.minimum(I + 1, nk) if causal else nk
    lo = jnp.maximum((I * B - window + 1) // B, 0) if window is not None else 0
    return lo, hi


def _query_blocks(J, B, nq, causal, window):
    """[lo, hi): the query blocks that some key of key block J is seen by."""
    lo = J if causal else 0
    hi = jnp.minimum((J * B + B + window - 2) // B + 1, nq) if window is not None else nq
    return lo, hi


def block_pairs(T, S, block, *, causal=True, window=None):
    """How many (query block, key block) products the forward computes (dense: nq·nk)."""
    B = min(block, max(T, S))
    nq, nk = -(-T // B), -(-S // B)
    ranges = [_key_blocks(I, B, nk, causal, window) for I in range(nq)]
    return sum(int(hi) - int(lo) for lo, hi in ranges)


def _to_blocks(x, R, B):
    """[G·R, T, …] → [n, G, R·B, …], padded with zeros to n·B positions; row r·B + t."""
    GR, T, *rest = x.shape
    n = -(-T // B)
    x = jnp.pad(x, [(0, 0), (0, n * B - T)] + [(0, 0)] * len(rest))
    x = x.reshape(GR // R, R, n, B, *rest)
    return jnp.moveaxis(x, 2, 0).reshape(n, GR // R, R * B, *rest)


def _from_blocks(x, R, T):
    n, G, RB, *rest = x.shape
    x = jnp.moveaxis(x.reshape(n, G, R, RB // R, *rest), 0, 2)
    return x.reshape(G * R, n * (RB // R), *rest)[:, :T]


def _logits(q_I, k_J, I, J, seg, meta):
    """(masked logits, capped logits) of one block pair, float32.  → [G, R·B, B] each."""
    B, S, causal, window, softcap, c, packed = meta
    s = _cap(c * jnp.einsum("gqk,gsk->gqs", q_I, k_J, preferred_element_type=f32), softcap)
    R = q_I.shape[1] // B
    i = (I * B + jnp.tile(jnp.arange(B), R))[:, None]  # the position of each row
    j = J * B + jnp.arange(B)[None, :]
    vis = _visible(i, j, S, causal, window, seg if packed else None)
    return jnp.where(vis, s, _MASKED), s


def _forward(qb, kb, vb, seg, meta):
    """Blocked q [nq,G,R·B,k], k, v [nk,G,B,k] → z (as q), L [nq,G,R·B] and pairs computed."""
    B, _, causal, window, *_ = meta
    nq, nk = qb.shape[0], kb.shape[0]

    def row(args):
        I, q_I = args

        def step(J, carry):
            m, l, o, n = carry
            s, _ = _logits(q_I, kb[J], I, J, seg, meta)
            m_new = jnp.maximum(m, s.max(-1))
            p, a = jnp.exp(s - m_new[..., None]), jnp.exp(m - m_new)
            pv = jnp.einsum("gqs,gsk->gqk", p.astype(vb.dtype), vb[J], preferred_element_type=f32)
            return m_new, a * l + p.sum(-1), a[..., None] * o + pv, n + 1

        rows = q_I.shape[:2]
        init = (jnp.full(rows, _MASKED, f32), jnp.zeros(rows, f32), jnp.zeros(q_I.shape, f32), 0)
        m, l, o, n = lax.fori_loop(*_key_blocks(I, B, nk, causal, window), step, init)
        return (o / l[..., None]).astype(qb.dtype), m + jnp.log(l), n

    z, L, n = lax.map(row, (jnp.arange(nq), qb))
    return z, L, n.sum()


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def _flash(qb, kb, vb, seg, meta):
    return _forward(qb, kb, vb, seg, meta)[0]


def _flash_fwd(qb, kb, vb, seg, meta):
    z, L, _ = _forward(qb, kb, vb, seg, meta)
    return z, (qb, kb, vb, seg, z, L)


def _flash_bwd(meta, res, dz):
    B, _, causal, window, softcap, c, _ = meta
    qb, kb, vb, seg, z, L = res
    nq, nk = qb.shape[0], kb.shape[0]
    D = jnp.sum(dz.astype(f32) * z.astype(f32), -1)  # rowsum(dz ⊙ z) = Σ_j P_ij dP_ij

    def column(dq, args):
        J, k_J, v_J = args

        def step(I, carry):
            dq, dk, dv = carry
            q_I, dz_I = qb[I], dz[I]
            s, t = _logits(q_I, k_J, I, J, seg, meta)
            p = jnp.exp(s - L[I][..., None])  # exactly the forward's pattern block
            dv += jnp.einsum("gqs,gqk->gsk", p.astype(dz.dtype), dz_I, preferred_element_type=f32)
            dp = jnp.einsum("gqk,gsk->gqs", dz_I, v_J, preferred_element_type=f32)
            ds = p * (dp - D[I][..., None])
            ds = c * (ds if softcap is None else ds * (1 - (t / softcap) ** 2))
            dq_I = jnp.einsum("gqs,gsk->gqk", ds.astype(k_J.dtype), k_J, preferred_element_type=f32)
            dk += jnp.einsum("gqs,gqk->gsk", ds.astype(q_I.dtype), q_I, preferred_element_type=f32)
            return dq.at[I].add(dq_I), dk, dv

        zeros = jnp.zeros(k_J.shape, f32)
        lo, hi = _query_blocks(J, B, nq, causal, window)
        dq, dk, dv = lax.fori_loop(lo, hi, step, (dq, zeros, zeros))
        return dq, (dk.astype(kb.dtype), dv.astype(vb.dtype))

    dq, (dk, dv) = lax.scan(column, jnp.zeros(qb.shape, f32), (jnp.arange(nk), kb, vb))
    return dq.astype(qb.dtype), dk, dv, None  # segment ids: integers, no cotangent


_flash.defvjp(_flash_fwd, _flash_bwd)


def blockwise_attention(q_HTk, k_GSk, v_GSk, *, causal=True, window=None, softcap=None,
                        scale=None, block=128, segments=None):  # fmt: skip
    """z [H,T,k] of q [H,T,k], k, v [G,S,k] (the module docstring's map), blockwise.

    causal: query i sees keys j ≤ i (S = T).  window: and only j > i − window (needs causal).
    softcap: logits ↦ softcap·tanh(logits/softcap) before the mask.  scale: the logits' factor
    (default 1/√k).  block: positions per block (a T or S below it is one block).
    segments: [T] document ids of packed documents (S = T): a query sees its own document's
    keys only (the block pairs computed are the causal ones; a cross-document pair inside
    them is masked, not skipped).
    Differentiable in q, k, v (a custom VJP that recomputes the blocks); float32 inside, z in
    q's dtype. One sequence: vmap it over a batch.
    """
    c = _resolve(q_HTk, k_GSk, v_GSk, causal, window, scale, segments)
    (H, T, _), (G, S, _) = q_HTk.shape, k_GSk.shape
    B = min(block, max(T, S))
    cap = None if softcap is None else float(softcap)
    meta = (B, S, causal, window, cap, c, segments is not None)
    qb = _to_blocks(q_HTk, H // G, B)
    kb, vb = _to_blocks(k_GSk, 1, B), _to_blocks(v_GSk, 1, B)
    n = max(qb.shape[0], kb.shape[0]) * B  # padded positions: a segment id −1, seen by none
    seg = jnp.full(n, -1, jnp.int32)
    if segments is not None:
        seg = seg.at[:T].set(segments.astype(jnp.int32))
    return _from_blocks(_flash(qb, kb, vb, seg, meta), H // G, T)
