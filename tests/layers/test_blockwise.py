"""Blockwise and chunked attention against attention written out in float64 here, values and
gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformer.layers.blockwise import (
    _forward,
    _to_blocks,
    block_pairs,
    blockwise_attention,
    dense_attention,
    pattern,
    sdpa_attention,
)
from jaxformer.layers.chunked import chunked_attention, chunks

IMPLS = {"blockwise": blockwise_attention, "chunked": chunked_attention}

TOL = dict(atol=1e-5, rtol=1e-5)


def reference(q, k, v, causal=True, window=None, softcap=None, scale=None, xp=np):
    """softmax(mask(cap(c·q kᵀ))) v with k, v repeated per query head, in xp (numpy or jnp)."""
    (H, T, dk), (G, S, _) = q.shape, k.shape
    k, v = xp.repeat(k, H // G, axis=0), xp.repeat(v, H // G, axis=0)
    s = xp.einsum("htk,hsk->hts", q, k) * (dk**-0.5 if scale is None else scale)
    if softcap is not None:
        s = softcap * xp.tanh(s / softcap)
    i, j = np.arange(T)[:, None], np.arange(S)[None, :]
    seen = (j <= i if causal else j >= 0) & (j > i - window if window else j >= 0)
    s = xp.where(seen, s, -np.inf)
    A = xp.exp(s - s.max(-1, keepdims=True))
    return xp.einsum("hts,hsk->htk", A / A.sum(-1, keepdims=True), v)


def inputs(H, G, T, S=None, dk=8, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    S = T if S is None else S
    shapes = [(H, T, dk), (G, S, dk), (G, S, dk), (H, T, dk)]  # q, k, v, and a cotangent for z
    q, k, v, w = (rng.standard_normal(s) for s in shapes)
    return q * scale, k * scale, v, w


def reference_grads(q, k, v, w, **kw):
    """∇_{q,k,v} Σ w ⊙ z of the reference, in float64 (jax with x64 on only inside)."""
    with jax.enable_x64(True):
        f = lambda q, k, v: jnp.sum(jnp.asarray(w) * reference(q, k, v, xp=jnp, **kw))
        return [np.asarray(g) for g in jax.jit(jax.grad(f, (0, 1, 2)))(q, k, v)]


def value_and_grads(q, k, v, w, dtype, attend=blockwise_attention, **kw):
    """z and ∇_{q,k,v} Σ w ⊙ z of ``attend`` on q, k, v cast to dtype, in one jit."""

    def f(q, k, v):
        z, pullback = jax.vjp(lambda q, k, v: attend(q, k, v, **kw), q, k, v)
        return z, pullback(jnp.asarray(w, dtype))

    return jax.jit(f)(*(jnp.asarray(x, dtype) for x in (q, k, v)))


CASES = {  # name: (H, G, T, S, block, options)
    "causal MHA": (4, 4, 64, None, 16, {}),
    "GQA G=2": (4, 2, 64, None, 16, {}),
    "GQA G=1": (4, 1, 64, None, 16, {}),
    "softcap": (4, 2, 64, None, 16, dict(softcap=2.0)),
    "window < block": (4, 2, 64, None, 16, dict(window=5)),
    "window not a multiple of block": (4, 2, 64, None, 16, dict(window=21)),
    "window = 2 blocks": (4, 4, 64, None, 16, dict(window=32)),
    "custom scale": (4, 2, 64, None, 16, dict(scale=0.3)),
    "T not a multiple of block": (4, 2, 50, None, 16, {}),
    "T < block": (4, 2, 10, None, 16, {}),
    "everything, T=50": (4, 2, 50, None, 16, dict(window=21, softcap=2.0, scale=0.5)),
    "not causal, S != T": (4, 2, 40, 56, 16, dict(causal=False)),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", CASES)
def test_blockwise_and_chunked_equal_the_float64_formula(name, impl):
    H, G, T, S, block, kw = CASES[name]
    q, k, v, w = inputs(H, G, T, S, scale=3.0 if "softcap" in kw else 1.0)  # logits reach the cap
    z, grads = value_and_grads(q, k, v, w, jnp.float32, IMPLS[impl], block=block, **kw)
    np.testing.assert_allclose(z, reference(q, k, v, **kw), **TOL)
    for g, g64 in zip(grads, reference_grads(q, k, v, w, **kw)):
        np.testing.assert_allclose(g, g64, **TOL)


def _per_document(q, k, v, w, segments, **kw):
    """The float64 formula on each document's slice alone, and its gradients, concatenated."""
    z, grads = [], [np.zeros_like(a) for a in (q, k, v)]
    cuts = np.flatnonzero(np.diff(segments)) + 1
    for lo, hi in zip([0, *cuts], [*cuts, len(segments)]):
        part = [a[:, lo:hi] for a in (q, k, v, w)]
        z.append(reference(*part[:3], **kw))
        for g, dg in zip(grads, reference_grads(*part, **kw)):
            g[:, lo:hi] = dg
    return np.concatenate(z, axis=1), grads


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kw", [{}, dict(window=7), dict(softcap=2.0), dict(causal=False)])
def test_packed_documents_are_each_attended_alone(kw, impl):
    segments = np.repeat([1, 2, 3, 4, 0], [5, 23, 1, 17, 4])  # across blocks of 16, padding last
    q, k, v, w = inputs(4, 2, len(segments), scale=3.0 if kw else 1.0)
    seg = jnp.asarray(segments)
    attend = IMPLS[impl]
    z, grads = value_and_grads(q, k, v, w, jnp.float32, attend, block=16, segments=seg, **kw)
    want, want_grads = _per_document(q, k, v, w, segments, **kw)
    np.testing.assert_allclose(z, want, **TOL)
    for g, g64 in zip(grads, want_grads):
        np.testing.assert_allclose(g, g64, **TOL)
    x32 = [jnp.asarray(a, jnp.float32) for a in (q, k, v)]
    np.testing.assert_allclose(dense_attention(*x32, segments=seg, **kw), want, **TOL)


@pytest.mark.parametrize("impl", IMPLS)
def test_bf16_inputs_give_bf16_close_to_the_formula(impl):
    q, k, v, w = (np.asarray(jnp.asarray(x, jnp.bfloat16), np.float64) for x in inputs(4, 2, 50))
    z, grads = value_and_grads(q, k, v, w, jnp.bfloat16, IMPLS[impl], block=16, window=21)
    assert z.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in grads)
    np.testing.assert_allclose(np.float32(z), reference(q, k, v, window=21), atol=2e-2, rtol=2e-2)
    for g, g64 in zip(grads, reference_grads(q, k, v, w, window=21)):
        np.testing.assert_allclose(np.float32(g), g64, atol=5e-2, rtol=5e-2)


def test_vmap_and_jit_over_a_batch():
    q, k, v, _ = (np.stack(x) for x in zip(*(inputs(4, 2, 50, seed=s) for s in range(3))))
    f = jax.jit(jax.vmap(lambda q, k, v: blockwise_attention(q, k, v, block=16, softcap=2.0)))
    z = f(*(jnp.asarray(a, jnp.float32) for a in (q, k, v)))
    for b in range(3):
        np.testing.assert_allclose(z[b], reference(q[b], k[b], v[b], softcap=2.0), **TOL)


def test_pattern_and_sdpa_are_the_same_map():
    q, k, v, _ = inputs(4, 2, 50)
    x32 = [jnp.asarray(a, jnp.float32) for a in (q, k, v)]
    np.testing.assert_allclose(jax.jit(dense_attention)(*x32), reference(q, k, v), **TOL)
    s, A = pattern(*x32[:2], window=21)
    assert s.shape == A.shape == (4, 50, 50) and bool(jnp.isneginf(s[:, 0, 1]).all())
    np.testing.assert_allclose(A.sum(-1), 1.0, **TOL)
    for kw in ({}, dict(window=21, scale=0.5)):  # the xla path of jax.nn.dot_product_attention
        np.testing.assert_allclose(sdpa_attention(*x32, **kw), reference(q, k, v, **kw), **TOL)
    with pytest.raises(NotImplementedError):
        sdpa_attention(*x32, softcap=2.0)


# -- masked blocks are skipped -----------------------------------------------------------------
def test_block_pairs_are_about_half_for_causal_and_scale_with_the_window():
    n = 4096 // 128
    assert block_pairs(4096, 4096, 128, causal=False) == n * n
    assert block_pairs(4096, 4096, 128) == n * (n + 1) // 2  # 0.52 of dense
    for w in (128, 256, 512, 1024):  # query block I sees blocks I − w/128 … I (from 0)
        seen = [min(I + 1, w // 128 + 1) for I in range(n)]
        assert block_pairs(4096, 4096, 128, window=w) == sum(seen) <= n * (w // 128 + 1)
    # the forward's loops run exactly that many products
    q, k, v, _ = inputs(2, 1, 200)
    qb, kb, vb = (
        _to_blocks(jnp.asarray(x, jnp.float32), r, 16) for x, r in zip((q, k, v), (2, 1, 1))
    )
    for causal, window in ((True, None), (True, 40), (False, None)):
        meta = (16, 200, causal, window, None, 1.0, False)
        seg = jnp.full(qb.shape[0] * 16, -1, jnp.int32)  # unpacked: segment ids unread
        pairs = jax.jit(_forward, static_argnums=4)(qb, kb, vb, seg, meta)[2]
        assert int(pairs) == block_pairs(200, 200, 16, causal=causal, window=window)


@pytest.mark.parametrize("window", [None, 16])
def test_masked_blocks_are_not_computed(window):
    """NaN keys and values in a block no query of block I sees leave I's values and gradient
    finite; a product of a masked block (0·NaN) would spread the NaN."""
    q, k, v, w = inputs(4, 2, 64)
    poisoned = slice(48, 64) if window is None else slice(0, 16)
    kept = slice(0, 48) if window is None else slice(32, 64)  # the query blocks that skip it
    k[:, poisoned] = v[:, poisoned] = np.nan
    z, (dq, _, _) = value_and_grads(q, k, v, w, jnp.float32, block=16, window=window)
    assert bool(jnp.isfinite(z[:, kept]).all()) and not bool(jnp.isfinite(z).all())
    assert bool(jnp.isfinite(dq[:, kept]).all()) and not bool(jnp.isfinite(dq).all())


@pytest.mark.parametrize("causal, window", [(True, None), (True, 40), (True, 16), (False, None)])
def test_chunks_span_exactly_the_keys_their_queries_see(causal, window):
    T, C = 200, 16
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    seen = (j <= i if causal else j >= 0) & (j > i - window if window else j >= 0)
    spans = chunks(T, T, C, causal=causal, window=window)
    assert [a for a, *_ in spans] == (list(range(0, T, C)) if causal else [0])
    for a, b, lo, hi in spans:  # the smallest key range holding every key a query of [a, b) sees
        keys = np.flatnonzero(seen[a:b].any(0))
        assert (lo, hi) == (keys[0], keys[-1] + 1)
    computed = sum((b - a) * (hi - lo) for a, b, lo, hi in spans)
    if causal and window is None:  # n whole chunks, the i-th seeing i·C keys, and a last of 8
        n = T // C
        assert computed == C * C * n * (n + 1) // 2 + (T - n * C) * T
        assert computed < 0.55 * T * T
