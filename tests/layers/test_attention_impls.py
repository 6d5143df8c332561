"""Attention computed blockwise (flash) or chunked is the dense map: values and gradients,
through the layer and through a whole model, for every variant the layer has; "auto" picks
by T."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformer import Config, build
from jaxformer.layers import Attention
from jaxformer.layers.attention import BLOCKWISE_FROM

VARIANTS = {
    "mha": dict(),
    "gqa-window": dict(G=2, window=5),
    "mqa-softcap-scale": dict(G=1, softcap=3.0, scale=0.3),
    "qk_norm-partial-rope": dict(G=2, qk_norm="head", rope_theta=1e4, rotary_dim=4),
    "bias-no-out-bias": dict(bias=True, out_bias=False, qk_norm="all"),
}


@pytest.mark.parametrize("impl", ["blockwise", "chunked"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_blockwise_and_chunked_attention_are_the_dense_map(name, impl):
    kw = dict(d=16, H=4, k=8) | VARIANTS[name]
    dense, flash = Attention(**kw, impl="dense"), Attention(**kw, impl=impl, block=4)
    params = dense.init(jax.random.key(1))
    params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.key(2), a.shape), params)
    x = jax.random.normal(jax.random.key(3), (13, 16))  # 13: not a multiple of the block
    np.testing.assert_allclose(flash(params, x), dense(params, x), rtol=1e-5, atol=1e-5)
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m(p, x)))
    g_flash = jax.grad(loss(flash), argnums=(0, 1))(params, x)
    g_dense = jax.grad(loss(dense), argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree.leaves(g_flash), jax.tree.leaves(g_dense)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", ["blockwise", "chunked"])
def test_a_model_trains_the_same_blockwise_or_chunked_and_auto_picks_by_length(impl):
    c = Config(family="mistral", vocab_size=40, context=32, n_layers=2, d_model=16, n_heads=4,
               n_kv_heads=2, sliding_window=6)  # fmt: skip
    dense, flash = build(c.replace(attention="dense")), build(c.replace(attention=impl))
    params = dense.init(jax.random.key(0))
    t = jax.random.randint(jax.random.key(1), (20,), 0, 40)
    loss = lambda m: lambda p: jnp.mean(jax.nn.log_softmax(m(p, t[:-1]))[jnp.arange(19), t[1:]])
    np.testing.assert_allclose(loss(flash)(params), loss(dense)(params), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(jax.grad(loss(flash))(params)),
                    jax.tree.leaves(jax.grad(loss(dense))(params))):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    auto = Attention(16, 4, 4, impl="auto")
    assert auto.how(BLOCKWISE_FROM - 1) == "chunked" and auto.how(BLOCKWISE_FROM) == "blockwise"
