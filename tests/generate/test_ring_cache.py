"""The ring cache of a windowed attention layer: w slots written at p mod w, the mask read
from the stored positions. A prompt longer than the window, padding after the prompt (never
written over the window), and a position decoded again (a stale slot is unseen) all give
the logits of the whole sequence recomputed (the window as the full forward pass applies
it). A ring cannot go back further than the w positions it holds."""

import jax
import numpy as np
import pytest

from jaxformer import Config, build
from jaxformer.generate import decode_step, empty_cache, prefill

W, CTX = 3, 24
C = Config("mistral", 40, CTX, 2, 16, 4, 2, d_mlp=24, sliding_window=W)


@pytest.fixture(scope="module")
def windowed():
    model = build(C)
    params = model.init(jax.random.key(0))
    t = np.random.default_rng(0).integers(0, 40, CTX).astype(np.int32)
    step = jax.jit(lambda c, x, i: decode_step(model, params, c, x, i))
    return model, params, t, np.asarray(jax.jit(model)(params, t)), step


def prompt(model, params, t, n, pad=16):
    """The prefill of t[:n] padded to ``pad`` tokens with junk (id 5): one compile."""
    padded = np.concatenate([t[:n], np.full(pad - n, 5, np.int32)])
    return _prefill(model, params, padded, n)


@jax.jit(static_argnums=0)
def _prefill(model, params, padded, n):
    return prefill(model, params, padded, CTX, length=n)


def test_the_ring_holds_the_window_and_decodes_as_the_full_pass(windowed):
    model, params, t, full, step = windowed
    n = 7  # a prompt of 7 > w tokens, padded to 16 with junk
    head, cache = prompt(model, params, t, n)
    assert cache["blocks"]["attn"]["k"].shape == (2, 2, W, 4)  # [L, G, w, k]
    assert np.allclose(head[:n], full[:n], rtol=1e-5, atol=1e-5)
    for i in range(n, CTX):  # the padding never reached the ring
        row, cache = step(cache, t[i], i)
        assert np.allclose(row, full[i], rtol=1e-5, atol=1e-5), i
    _, cache = prompt(model, params, t, 12)  # then position 11 again, as generate
    for i in range(11, 14):  # does: the stored 11 is stale (not seen), then overwritten
        row, cache = step(cache, t[i], i)
        assert np.allclose(row, full[i], rtol=1e-5, atol=1e-5), i
    assert sorted(np.asarray(cache["blocks"]["attn"]["pos"][0]) - 1) == [11, 12, 13]


def test_an_empty_ring_is_unseen(windowed):
    model, params, t, full, step = windowed
    row, _ = step(empty_cache(model, CTX), t[0], 0)
    assert np.allclose(row, full[0], rtol=1e-5, atol=1e-5)


def test_a_pattern_with_one_kind_present_decodes():
    """Gemma 2 with a window on every layer: only the local kind has a cache."""
    c = Config("gemma2", 40, 16, 2, 16, 2, 1, d_head=8, d_mlp=24, sliding_window=W)
    model = build(c)
    params = model.init(jax.random.key(1))
    t = np.random.default_rng(1).integers(0, 40, 9).astype(np.int32)
    logits, cache = jax.jit(lambda p, x: prefill(model, p, x, 16))(params, t[:8])
    assert sorted(cache["blocks"]) == ["local"]
    row, _ = decode_step(model, params, cache, t[8], 8)
    full = np.asarray(model(params, t))
    assert np.allclose(logits, full[:8], rtol=1e-5, atol=1e-5)
    assert np.allclose(row, full[8], rtol=1e-5, atol=1e-5)
