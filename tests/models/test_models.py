"""Whole composites against numpy, identities of the residual stream, and the boundary."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

from jaxformer import Config, ShapeError, build, logits
from jaxformer.core import Repeat

TOL = dict(atol=1e-5, rtol=1e-5)


def small(family, **kw):
    base = dict(vocab_size=37, context=16, n_layers=2, d_model=12, n_heads=3, init_std=0.3)
    if family == "llama":
        base |= dict(n_heads=4, n_kv_heads=2, d_model=16, d_mlp=24, rope_theta=500.0)
    return Config(family=family, **(base | kw))


def noisy(params, seed=3, scale=0.2):
    """Perturb every leaf so gains ≠ 1 and biases ≠ 0 are exercised."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: x + scale * rng.standard_normal(x.shape, np.float32), params)


@pytest.mark.parametrize(
    "family,kw",
    [("gpt2", {}), ("gpt2", {"tied": False}), ("llama", {}), ("llama", {"tied": True})],
)
def test_model_matches_numpy(family, kw):
    c = small(family, **kw)
    m = build(c)
    p = noisy(m.init(jax.random.key(0)))
    t = np.array([1, 5, 36, 0, 7, 7, 2, 11, 30])
    want = (ref.gpt2 if family == "gpt2" else ref.llama)(p, t, c)
    np.testing.assert_allclose(m(p, jnp.asarray(t)), want, **TOL)
    np.testing.assert_allclose(logits(m, p, t[None]), want[None], **TOL)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_residual_stream_is_x0_plus_every_write(family):
    c = small(family)
    m = build(c)
    p = noisy(m.init(jax.random.key(1)))
    t = jnp.array([3, 1, 4, 1, 5, 9, 2, 6])
    _, tr = m.trace(p, t)
    x0 = tr["pos"] if "pos" in tr else tr["embed"]
    writes = tr["blocks"]["attn"] + tr["blocks"]["mlp"]  # [L, T, d], the inner outputs
    x_L = tr["blocks"]["resid_post"][-1]
    np.testing.assert_allclose(x_L, x0 + writes.sum(0), atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_scan_equals_unrolled(family):
    c = small(family)
    m = build(c)
    p = noisy(m.init(jax.random.key(2)))
    blocks: Repeat = m.find("blocks")
    unrolled = m.replace("blocks", blocks.unroll())
    q = dict(p, **{"blocks": None})
    q = {k: v for k, v in q.items() if k != "blocks"} | blocks.unstack(p["blocks"])
    t = jnp.arange(10) % c.vocab_size
    np.testing.assert_allclose(unrolled(q, t), m(p, t), **TOL)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_jit_equals_no_jit(family):
    """On random params far from the init (gains ≠ 1, biases ≠ 0, wide logits)."""
    m = build(small(family))
    p = noisy(m.init(jax.random.key(4)), seed=5, scale=0.5)
    t = jnp.arange(7)
    y = m(p, t)
    assert float(jnp.std(y)) > 0.3  # not the near-zero logits of the default init
    np.testing.assert_allclose(jax.jit(m)(p, t), y, atol=1e-5, rtol=1e-5)


def test_param_tree_is_named_by_the_math():
    p = build(small("gpt2")).init(jax.random.key(0))
    assert p["blocks"]["attn"]["W_Q"].shape == (2, 3, 12, 4)  # [L, H, d, k]
    assert p["blocks"]["attn"]["W_O"].shape == (2, 3, 4, 12)
    assert p["blocks"]["mlp"]["W_in"].shape == (2, 12, 48)
    assert "W_U" not in p["unembed"]  # tied to W_E
    q = build(small("llama")).init(jax.random.key(0))
    assert q["blocks"]["attn"]["W_K"].shape == (2, 2, 16, 4)  # G = 2 key/value heads
    assert q["unembed"]["W_U"].shape == (16, 37)


def test_bad_tokens_raise_named_errors():
    m = build(small("gpt2"))
    p = m.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"token id 37 is outside the vocabulary \[0, 37\)"):
        logits(m, p, [1, 2, 37])
    with pytest.raises(ValueError, match=r"token id -2"):
        logits(m, p, [[1, -2]])
    with pytest.raises(ValueError, match="exceeds the context 16"):
        logits(m, p, np.zeros(17, int))
    with pytest.raises(ValueError, match="must be integer token ids"):
        logits(m, p, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"shape \[T\] or \[B, T\]"):
        logits(m, p, np.zeros((1, 2, 3), int))
    with pytest.raises(ValueError, match="empty"):
        logits(m, p, np.zeros(0, int))
    # and through the map's own call, for concrete arrays
    with pytest.raises(ValueError, match="token id 99"):
        m(p, jnp.array([99]))
    with pytest.raises(ShapeError, match="above its limit 16"):
        m(p, jnp.zeros(20, jnp.int32))


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="d_model=10 is not divisible by n_heads=3"):
        Config(d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="n_kv_heads"):
        Config(family="llama", d_model=16, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="family"):
        Config(family="bert")
    with pytest.raises(ValueError, match="positive integer"):
        Config(n_layers=0)
    with pytest.raises(ValueError, match="positional='rope'"):
        Config(family="gpt2", positional="rope")
    with pytest.raises(ValueError, match="no field"):
        Config().replace(n_layer=3)
