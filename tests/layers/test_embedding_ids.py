"""Out-of-range ids under ``jit``: NaN rows and NaN logits, never another token's row."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformer import Config, build
from jaxformer.layers import Embedding

V, d = 11, 6


@pytest.mark.parametrize("bad", [-1, -V, -V - 3, V, V + 5, 2**31 - 1, -(2**31)])
def test_an_id_outside_the_vocabulary_embeds_as_nan_under_jit(bad):
    e = Embedding(V, d)
    p = e.init(jax.random.key(0))
    t = jnp.array([3, bad, 0], jnp.int32)
    x = np.asarray(jax.jit(e.apply)(p, t))
    np.testing.assert_array_equal(x[[0, 2]], np.asarray(p["W_E"])[[3, 0]])  # the others: rows
    assert np.isnan(x[1]).all()  # not row V-1 (clamped) nor row V+bad (wrapped)


def test_a_jitted_model_gives_nan_logits_for_a_sequence_with_a_bad_id():
    c = Config(vocab_size=V, context=8, n_layers=1, d_model=8, n_heads=2)
    model = build(c)
    params = model.init(jax.random.key(0))
    f = jax.jit(jax.vmap(model, in_axes=(None, 0)))
    good = np.asarray(f(params, jnp.array([[1, 2, 3, 4]])))[0]
    assert np.isfinite(good).all()
    for bad in (-1, V):
        z = np.asarray(f(params, jnp.array([[1, 2, 3, 4], [1, 2, bad, 4]])))
        np.testing.assert_allclose(z[0], good, rtol=1e-6)  # another sequence: untouched
        # NaN reaches every position: attention weighs the NaN values by 0, and 0 · NaN = NaN
        assert np.isnan(z[1]).all()


def test_in_range_ids_and_gradients_are_unchanged():
    e = Embedding(V, d)
    p = e.init(jax.random.key(0))
    t = jnp.array([0, 10, 3, 3])
    np.testing.assert_array_equal(e(p, t), np.asarray(p["W_E"])[np.asarray(t)])
    g = jax.grad(lambda p: e.apply(p, t).sum())(p)["W_E"]
    np.testing.assert_array_equal(np.asarray(g)[:, 0], [1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1])
