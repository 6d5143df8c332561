"""Factored matrices against their dense products, and the per-head circuits against
einsums of the raw weights (numpy)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from circuit_models import make

from jaxformer.circuits import W_OV, W_QK, FactoredMatrix, position_QK, token_OV, token_QK

rng = np.random.default_rng(0)
A = rng.standard_normal((3, 7, 4)).astype(np.float32)  # batch 3, m=7, r=4
B = rng.standard_normal((3, 4, 6)).astype(np.float32)  # r=4, n=6
M = FactoredMatrix(jnp.asarray(A), jnp.asarray(B))
D = A.astype(np.float64) @ B
TOL = dict(atol=1e-4, rtol=1e-4)


def test_algebra_equals_the_dense_matrix():
    C = rng.standard_normal((6, 5)).astype(np.float32)
    E = rng.standard_normal((2, 7)).astype(np.float32)
    N = FactoredMatrix(jnp.asarray(rng.standard_normal((3, 6, 2))), jnp.asarray(C[:2]))
    np.testing.assert_allclose(M.dense, D, **TOL)
    np.testing.assert_allclose(M.T.dense, np.swapaxes(D, -1, -2), **TOL)
    np.testing.assert_allclose((M @ C).dense, D @ C, **TOL)
    np.testing.assert_allclose((E @ M).dense, E @ D, **TOL)  # numpy defers to __rmatmul__
    np.testing.assert_allclose((jnp.asarray(E) @ M).dense, E @ D, **TOL)
    np.testing.assert_allclose((M @ N).dense, D @ np.asarray(N.dense), **TOL)
    np.testing.assert_allclose((M + M).dense, 2 * D, **TOL)
    np.testing.assert_allclose((2.5 * M).dense, 2.5 * D, **TOL)
    assert (M @ N).rank_bound == 2 and (M + M).rank_bound == 8
    assert M.shape == (3, 7, 6) and M[1].shape == (7, 6)
    np.testing.assert_allclose(M[1].dense, D[1], **TOL)
    pairs = M[:, None] @ M.T[None]  # broadcast batch axes: every pair
    assert pairs.shape == (3, 3, 7, 7)
    np.testing.assert_allclose(pairs.dense[0, 2], D[0] @ D[2].T, **TOL)


def test_invariants_equal_the_dense_ones():
    np.testing.assert_allclose(M.norm(), np.linalg.norm(D, axis=(-2, -1)), **TOL)
    U, S, Vh = M.svd()
    assert U.shape == (3, 7, 4) and S.shape == (3, 4) and Vh.shape == (3, 4, 6)
    np.testing.assert_allclose(S, np.linalg.svd(D, compute_uv=False)[:, :4], **TOL)
    np.testing.assert_allclose(U @ (S[..., None] * Vh), D, **TOL)
    np.testing.assert_allclose(
        np.swapaxes(U, -1, -2) @ U, np.broadcast_to(np.eye(4), (3, 4, 4)), atol=1e-5
    )
    sq = FactoredMatrix(jnp.asarray(A), jnp.asarray(rng.standard_normal((3, 4, 7))))  # 7×7
    dense = np.linalg.eigvals(np.asarray(sq.dense, np.float64))  # 7 per matrix, 3 of them ≈ 0
    top = np.take_along_axis(dense, np.argsort(-np.abs(dense), -1)[:, :4], -1)
    np.testing.assert_allclose(
        np.sort_complex(np.asarray(sq.eigenvalues())), np.sort_complex(top), **TOL
    )
    with pytest.raises(ValueError, match="square"):
        M.eigenvalues()


def test_it_is_a_pytree_and_checks_its_factors():
    norms = jax.jit(jax.vmap(lambda F: F.norm()))(M)
    np.testing.assert_allclose(norms, np.linalg.norm(D, axis=(-2, -1)), **TOL)
    with pytest.raises(ValueError, match=r"A: \[\.\.\., m, r\]"):
        FactoredMatrix(jnp.ones((3, 2)), jnp.ones((4, 2)))
    with pytest.raises(IndexError, match="batch axes"):
        M[0, 1]


def test_head_circuits_are_the_products_of_the_weights():
    m, p = make("llama_attn")  # grouped-query attention and a tied unembedding
    a = {k: np.asarray(v, np.float64) for k, v in p["blocks"]["attn"].items()}
    W_E = np.asarray(p["embed"]["W_E"], np.float64)
    QK, OV = W_QK(m, p), W_OV(m, p)
    assert QK.shape == (2, 4, 16, 16) and QK.rank_bound == 4
    for l in range(2):
        for h in range(4):
            g = h // 2  # 4 query heads share 2 key/value heads
            want_QK = a["W_Q"][l, h] @ a["W_K"][l, g].T
            want_OV = a["W_V"][l, g] @ a["W_O"][l, h]
            np.testing.assert_allclose(QK[l, h].dense, want_QK, **TOL)
            np.testing.assert_allclose(OV[l, h].dense, want_OV, **TOL)
            np.testing.assert_allclose(token_QK(m, p)[l, h].dense, W_E @ want_QK @ W_E.T, **TOL)
            np.testing.assert_allclose(token_OV(m, p)[l, h].dense, W_E @ want_OV @ W_E.T, **TOL)
    with pytest.raises(ValueError, match="no positional QK circuit"):
        position_QK(m, p, 8)
    m, p = make("gpt2_attn")
    P = np.asarray(p["pos"]["W_pos"][:8], np.float64)
    a = {k: np.asarray(v, np.float64) for k, v in p["blocks"]["attn"].items()}
    want = P @ a["W_Q"][1, 2] @ a["W_K"][1, 2].T @ P.T
    np.testing.assert_allclose(position_QK(m, p, 8)[1, 2].dense, want, **TOL)
