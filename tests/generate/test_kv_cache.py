"""The cached composite against full recomputes: at every position, decoding with the
cache gives the logits of the whole prefix run from scratch (numpy float64 reference)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

from jaxformer import Config, build
from jaxformer.generate import decode_step, empty_cache, prefill

TOL = dict(atol=1e-5, rtol=1e-5)
CTX, PROMPT = 48, 5


def config(family, **kw):
    base = dict(vocab_size=64, context=CTX, n_layers=2, d_model=32, n_heads=4, init_std=0.1)
    return Config(family=family, **(base | kw))


def noisy(params, seed=3, scale=0.1):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: x + scale * rng.standard_normal(x.shape, np.float32), params)


@functools.cache
def decoded(c: Config):
    """(params, tokens [CTX], logits [CTX, V]): PROMPT tokens prefilled, the rest decoded
    one at a time up to the last slot of the cache, each from the cache the last left."""
    m = build(c)
    p = noisy(m.init(jax.random.key(0)))
    t = np.random.default_rng(1).integers(0, c.vocab_size, CTX).astype(np.int32)
    logits, cache = jax.jit(lambda p, t: prefill(m, p, t))(p, t[:PROMPT])
    rows = list(logits)
    step = jax.jit(lambda p, cache, t, i: decode_step(m, p, cache, t, i))
    for i in range(PROMPT, CTX):
        row, cache = step(p, cache, t[i], i)
        rows.append(row)
    return p, t, np.stack(rows)


@pytest.mark.parametrize(
    "family,kw",
    [("gpt2", {}), ("gpt2", {"n_kv_heads": 2}), ("llama", {}), ("llama", {"n_kv_heads": 2})],
    ids=["gpt2", "gpt2-gqa", "llama", "llama-gqa"],
)
def test_cached_decode_equals_recompute_of_the_prefix(family, kw):
    c = config(family, **kw)
    p, t, got = decoded(c)
    full = ref.gpt2 if family == "gpt2" else ref.llama
    for i in range(CTX):  # position i: the model run from scratch on t[:i+1]
        np.testing.assert_allclose(got[i], full(p, t[: i + 1], c)[-1], **TOL, err_msg=f"pos {i}")


def test_cached_decode_follows_the_composite_not_the_family():
    """A block without an MLP, sinusoidal positions, no final norm, GQA, untied: the
    cached composite walks whatever composite it is given. At every position, the numpy
    forward pass of the prefix (``reference.forward`` reads that layout off the params)."""
    c = config(
        "gpt2", attn_only=True, positional="sinusoidal", final_norm=False, tied=False, n_kv_heads=2
    )
    p, t, got = decoded(c)
    assert "mlp" not in p["blocks"] and "ln_f" not in p and not p["pos"]  # as described
    for i in range(CTX):
        want = ref.forward(p, t[: i + 1], c)[-1]
        np.testing.assert_allclose(got[i], want, **TOL, err_msg=f"pos {i}")
    np.testing.assert_allclose(got, build(c)(p, jnp.asarray(t)), **TOL)  # and the full pass


def test_cache_holds_only_the_kv_heads_stacked_over_layers():
    m = build(config("llama", n_kv_heads=2))
    cache = empty_cache(m, 40)
    assert jax.tree.map(jnp.shape, cache) == {
        "blocks": {"attn": {"k": (2, 2, 8, 40), "v": (2, 2, 40, 8)}}
    }  # k [L, G, k, S] (as the scores read it), v [L, G, S, k]


def test_prefill_needs_room_for_the_prompt():
    m = build(config("gpt2"))
    p = m.init(jax.random.key(0))
    with pytest.raises(ValueError, match="cannot hold"):
        prefill(m, p, jnp.arange(10), size=8)


def test_the_unrolled_composite_decodes_with_one_cache_per_scope():
    c = config("llama", n_kv_heads=2, n_layers=3)
    m = build(c)
    p = m.init(jax.random.key(0))
    blocks = m.find("blocks")
    unrolled = m.replace("blocks", blocks.unroll())
    q = {k: v for k, v in p.items() if k != "blocks"} | blocks.unstack(p["blocks"])
    assert sorted(empty_cache(unrolled, 8)) == ["blocks_0", "blocks_1", "blocks_2"]
    t = jnp.arange(10)
    want = np.asarray(jax.jit(m)(p, t))
    logits, cache = jax.jit(lambda q, t: prefill(unrolled, q, t))(q, t[:4])
    np.testing.assert_allclose(logits, want[:4], **TOL)
    step = jax.jit(lambda q, cache, t, i: decode_step(unrolled, q, cache, t, i))
    for i in range(4, 10):
        row, cache = step(q, cache, t[i], i)
        np.testing.assert_allclose(row, want[i], **TOL)
