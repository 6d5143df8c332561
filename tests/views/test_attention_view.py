"""attention_view: the page carries the pattern as given, picks layers and heads, and
refuses what it cannot draw with a line naming the value and the fix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformer.core import compose, residual, tokenwise
from jaxformer.layers import Attention, Embedding, LayerNorm, Unembedding
from jaxformer.views import attention_view, read_payload


def _pattern(L, H, T, seed=0):
    s = np.random.default_rng(seed).normal(size=(L, H, T, T))
    s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def test_payload_is_the_pattern():
    p = _pattern(2, 3, 5)
    payload = read_payload(attention_view(p, list("abcde")).html)
    assert payload["tokens"] == list("abcde")
    assert payload["layers"] == ["L0", "L1"] and payload["heads"] == ["H0", "H1", "H2"]
    np.testing.assert_array_equal(np.array(payload["pattern"], dtype=np.float32), p)


def test_one_layer_and_a_choice_of_heads():
    p = _pattern(3, 4, 4)
    payload = read_payload(attention_view(p[1], list("wxyz"), heads=[3, 0]).html)
    assert payload["layers"] is None and payload["heads"] == ["H3", "H0"]
    np.testing.assert_array_equal(np.array(payload["pattern"], dtype=np.float32)[0], p[1][[3, 0]])
    payload = read_payload(attention_view(p, list("wxyz"), layers=[2], heads=[1]).html)
    assert payload["layers"] == ["L2"] and payload["heads"] == ["H1"]
    np.testing.assert_array_equal(np.array(payload["pattern"], dtype=np.float32), p[2:3, 1:2])


def test_a_trace_pattern_goes_straight_in():
    V, T, d, H = 16, 8, 16, 2
    model = compose(
        Unembedding(d, V),
        tokenwise(LayerNorm(d, name="ln_f")),
        residual(compose(Attention(d, H, d // H), tokenwise(LayerNorm(d, name="ln1")))),
        Embedding(V, d, context=T),
    )
    params = model.init(jax.random.key(0))
    _, points = model.trace(params, jnp.array([1, 2, 3, 4]))
    pattern = points["attn.pattern"]  # a jax array [H, 4, 4]
    assert isinstance(pattern, jax.Array) and pattern.shape == (H, 4, 4)
    payload = read_payload(attention_view(pattern, list("abcd")).html)
    np.testing.assert_array_equal(np.array(payload["pattern"], dtype=np.float32)[0], pattern)


@pytest.mark.parametrize(
    "pattern, tokens, kwargs, match",
    [
        (np.full((2, 3, 4), 0.25), list("abc"), {}, r"3 queries but 4 keys; give the square"),
        (np.full((3, 3), 0.3), list("abc"), {}, r"shape \(3, 3\); give \[H, T, T\]"),
        (np.full((1, 3, 3), 0.3), list("ab"), {}, r"tokens has 2 entries but pattern has T=3"),
        (np.full((1, 2, 2), 0.5), [1, 2], {}, r"tokens\[0\] is int 1; give token strings"),
        (np.full((1, 2, 2), 0.5), "ab", {}, r"tokens is one string"),
        (np.array([[[0.5, np.nan], [1, 0]]]), list("ab"), {}, r"pattern\[0, 0, 0, 1\] is nan"),
        (np.array([[[3.0, -2], [1, 0]]]), list("ab"), {}, r"outside \[0, 1\].*not the scores"),
        (np.full((1, 2, 2), 0.5), list("ab"), {"heads": [1]}, r"heads holds 1, outside \[0, 1\)"),
        (np.full((1, 1, 2, 2), 0.5), list("ab"), {"layers": []}, r"layers=\[\] selects nothing"),
        (np.full((1, 2, 2), 0.5 + 0j), list("ab"), {}, r"dtype complex128; give real"),
        (np.zeros((0, 2, 2)), list("ab"), {}, r"at least one head"),
    ],
)
def test_refusals_name_the_value_and_the_fix(pattern, tokens, kwargs, match):
    with pytest.raises(ValueError, match=match):
        attention_view(pattern, tokens, **kwargs)
