"""Sampling transforms against numpy: which tokens each keeps, and what the draw emits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformer.generate import sample_logits, temperature, top_k, top_p

V = 50


@pytest.fixture(scope="module")
def logits():
    return np.random.default_rng(0).normal(0, 2, (8, V)).astype(np.float32)


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def nucleus(probs, p):
    """The smallest set of most probable tokens whose mass is ≥ p, one row, by a loop."""
    kept, mass = set(), 0.0
    for i in np.argsort(-probs, kind="stable"):
        kept.add(int(i))
        mass += probs[i]
        if mass >= p:
            break
    return kept


@pytest.mark.parametrize("k", [1, 3, V])
def test_top_k_keeps_the_k_largest(logits, k):
    out = np.asarray(top_k(jnp.asarray(logits), k))
    for row, got in zip(logits, out):
        keep = set(np.argsort(-row)[:k].tolist())
        assert set(np.flatnonzero(np.isfinite(got)).tolist()) == keep
        np.testing.assert_array_equal(got[list(keep)], row[list(keep)])


@pytest.mark.parametrize("p", [1e-6, 0.3, 0.9, 0.999, 1.0])
def test_top_p_keeps_the_smallest_set_with_mass_at_least_p(logits, p):
    out = np.asarray(top_p(jnp.asarray(logits), p))
    for row, got in zip(logits, out):
        assert set(np.flatnonzero(np.isfinite(got)).tolist()) == nucleus(softmax(row), p)


def test_temperature_divides_and_zero_is_argmax(logits):
    np.testing.assert_allclose(temperature(jnp.asarray(logits), 0.5), logits / 0.5, rtol=1e-6)
    got = sample_logits(jax.random.key(0), jnp.asarray(logits), 0)
    np.testing.assert_array_equal(got, logits.argmax(-1))


def test_draws_stay_inside_top_k_and_top_p_and_follow_the_distribution(logits):
    row = logits[0]
    n = 20_000
    draw = jax.jit(lambda key, t, p: sample_logits(key, jnp.broadcast_to(row, (n, V)), t, 5, p))
    # top-k alone: only the 5 largest, with frequencies ∝ exp(ℓ/τ) renormalised among them.
    got = np.asarray(draw(jax.random.key(1), 0.7, 1.0))
    top5 = np.argsort(-row)[:5]
    assert set(np.unique(got)) <= set(top5.tolist())
    want = softmax(row[top5] / 0.7)
    freq = np.array([(got == i).mean() for i in top5])
    np.testing.assert_allclose(freq, want, atol=0.02)
    # top-p after top-k: the nucleus of the renormalised top-5 distribution.
    got = np.asarray(draw(jax.random.key(2), 1.0, 0.6))
    kept = {int(top5[i]) for i in nucleus(softmax(row[top5]), 0.6)}
    assert set(np.unique(got)) <= kept


def test_the_same_key_draws_the_same_tokens(logits):
    a = sample_logits(jax.random.key(7), jnp.asarray(logits), 1.0)
    b = sample_logits(jax.random.key(7), jnp.asarray(logits), 1.0)
    c = sample_logits(jax.random.key(8), jnp.asarray(logits), 1.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
