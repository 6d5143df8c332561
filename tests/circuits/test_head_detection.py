"""Head detectors on patterns written down by hand, and on a two-layer model whose
induction circuit is written into its weights (a previous-token head feeding an
induction head by K-composition): both detectors must find it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformer.circuits import (
    copying_scores,
    induction_scores,
    induction_scores_from_weights,
    matching_scores,
    previous_token_scores,
    previous_token_scores_from_weights,
    repeated_tokens,
)
from jaxformer.core import compose, repeat, residual
from jaxformer.layers import Attention, Embedding, LearnedPositions, Unembedding

V, T = 6, 8
d = V + T + V  # subspaces: the token, the position, the previous token
TOK, POS, PREV = 0, V, V + T
BIG = 100.0


def induction_model():
    attn = Attention(d, 2, d)  # k = d: each head's W_QK and W_OV can be any d×d matrix
    model = compose(
        Unembedding(d, V),
        repeat(residual(attn, name="resid_mid"), 2),
        LearnedPositions(T, d),
        Embedding(V, d, T),
    )
    I_tok, I_d = np.eye(V), np.eye(d)
    W = {k: np.zeros((2, 2, d, d), np.float32) for k in ("W_Q", "W_K", "W_V", "W_O")}
    # layer 0, head 0: position i attends to i−1 and copies its token into PREV
    for i in range(1, T):
        W["W_Q"][0, 0, POS + i, POS + i - 1] = BIG
    W["W_V"][0, 0, TOK : TOK + V, PREV : PREV + V] = I_tok
    # layer 1, head 0: a query token a attends where PREV holds a, and copies that token
    W["W_Q"][1, 0, TOK : TOK + V, PREV : PREV + V] = BIG * I_tok
    W["W_V"][1, 0, TOK : TOK + V, TOK : TOK + V] = I_tok
    W["W_K"][:, 0], W["W_O"][:, 0] = I_d, I_d  # heads 1 of both layers stay zero
    E, P, U = np.zeros((V, d)), np.zeros((T, d)), np.zeros((d, V))
    E[:, TOK : TOK + V], P[:, POS : POS + T], U[TOK : TOK + V] = I_tok, np.eye(T), I_tok
    params = {
        "embed": {"W_E": E},
        "pos": {"W_pos": P},
        "blocks": {"attn": W},
        "unembed": {"W_U": U},
    }
    return model, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)


def test_pattern_scores_on_patterns_written_by_hand():
    prev = np.eye(T, k=-1)
    prev[0, 0] = 1
    uniform = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    n = 3  # a segment of 3 repeated: position t attends t − n + 1
    induct = np.zeros((T, T))
    induct[np.arange(T), np.maximum(np.arange(T) - n + 1, 0)] = 1
    A = jnp.asarray(np.stack([prev, uniform, induct]))
    want_prev = [1, np.mean(1 / np.arange(2, T + 1)), 1 / (T - 1)]  # induct[1, 0] = 1 too
    np.testing.assert_allclose(previous_token_scores(A), want_prev, rtol=1e-6)
    np.testing.assert_allclose(
        induction_scores(A, n), [0, np.mean(1 / np.arange(n + 1, T + 1)), 1], rtol=1e-6
    )
    with pytest.raises(ValueError, match="segment length"):
        induction_scores(A, T)


def test_repeated_tokens():
    r = np.asarray(repeated_tokens(jax.random.key(0), V=50, n=7, reps=3, batch=4))
    assert r.shape == (4, 21) and r.dtype == np.int32 and r.min() >= 0 and r.max() < 50
    np.testing.assert_array_equal(r[:, :7], r[:, 7:14])
    np.testing.assert_array_equal(r[:, :7], r[:, 14:])


def test_a_written_induction_circuit_is_found_from_patterns_and_from_weights():
    m, p = induction_model()
    tokens = jnp.array([0, 3, 1, 5, 0, 3, 1, 5])  # a segment of 4 distinct tokens, twice
    A = m.trace(p, tokens)[1]["blocks"]["attn.pattern"]  # [L, H, T, T]
    prev, induct = previous_token_scores(A), induction_scores(A, 4)
    assert prev[0, 0] > 0.99 and induct[1, 0] > 0.85  # position 4 also matches 0's self-copy
    assert np.argmax(induct) == 2 and np.argmax(prev) == 0  # flat index of (1, 0) and (0, 0)
    copy = np.asarray(copying_scores(m, p))
    np.testing.assert_allclose(copy, [[0, 0], [1, 0]], atol=1e-5)
    prev_w = np.asarray(previous_token_scores_from_weights(m, p, T))
    assert prev_w[0, 0] > 0.99 and prev_w[1].max() < 0.5
    match = np.asarray(matching_scores(m, p))
    assert match[0, 0, 1, 0] == 1.0
    induct_w = np.asarray(induction_scores_from_weights(m, p, T))
    assert induct_w[1, 0] > 0.99 and np.delete(induct_w.ravel(), 2).max() < 0.1
