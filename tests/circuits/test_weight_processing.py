"""Weight processing: each transform returns a new composite computing the same function
(center_unembed: the same log-probabilities) on random models of both families."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from circuit_models import TOKENS, make

from jaxformer.circuits import (
    Anatomy,
    Normalise,
    center_unembed,
    center_writing_weights,
    fold_ln,
    fold_value_biases,
    logit_terms,
    process_weights,
)

TOL = dict(atol=1e-5, rtol=1e-5)
TRANSFORMS = [fold_ln, center_writing_weights, center_unembed, fold_value_biases, process_weights]


def check_same_function(m, p, m2, p2, log_probs=False):
    t = jnp.asarray(TOKENS)
    y, y2 = jax.jit(m)(p, t), jax.jit(m2)(p2, t)  # one compile each, not one per op
    if log_probs:
        y, y2 = jax.nn.log_softmax(y), jax.nn.log_softmax(y2)
    np.testing.assert_allclose(y2, y, **TOL)


@pytest.mark.parametrize("kind", ["gpt2", "gpt2_attn", "llama", "llama_attn"])
def test_each_transform_keeps_the_function(kind):
    m, p = make(kind)
    for f in TRANSFORMS:
        if f is center_writing_weights and kind.startswith("llama"):
            with pytest.raises(ValueError, match="LayerNorm models only"):
                f(m, p)
            continue
        m2, p2 = f(m, p)
        uncentered = f in (center_unembed, process_weights)
        check_same_function(m, p, m2, p2, log_probs=uncentered)


def test_fold_ln_moves_gamma_and_beta_into_the_readers():
    m, p = make("gpt2")  # LayerNorm, biases, tied unembedding
    m2, p2 = fold_ln(m, p)
    a = Anatomy.of(m2)
    assert not a.tied and "W_U" in p2["unembed"] and a.unembed.bias
    for norm in (a.ln1, a.ln2, a.ln_f):
        assert isinstance(norm, Normalise) and norm.centered
    assert p2["blocks"]["ln1"] == {} and p2["ln_f"] == {}
    g, b = (np.asarray(p["blocks"]["ln1"][k][1], np.float64) for k in ("gamma", "beta"))
    W_Q = np.asarray(p["blocks"]["attn"]["W_Q"][1, 2], np.float64)
    np.testing.assert_allclose(p2["blocks"]["attn"]["W_Q"][1, 2], g[:, None] * W_Q, **TOL)
    want_b = np.asarray(p["blocks"]["attn"]["b_Q"][1, 2]) + b @ W_Q
    np.testing.assert_allclose(p2["blocks"]["attn"]["b_Q"][1, 2], want_b, **TOL)
    with pytest.raises(ValueError, match="already folded"):
        fold_ln(m2, p2)
    m3, p3 = fold_ln(*make("llama"))  # RMSNorm: γ only, no bias appears
    assert not Anatomy.of(m3).attn.bias and not Anatomy.of(m3).ln1.centered


def test_centering_and_value_biases_do_what_they_say():
    m, p = process_weights(*make("gpt2"))
    for W in (p["embed"]["W_E"], p["blocks"]["attn"]["W_O"], p["blocks"]["mlp"]["b_out"]):
        np.testing.assert_allclose(np.asarray(W).mean(-1), 0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(p["unembed"]["W_U"]).mean(-1), 0, atol=1e-6)
    assert not np.any(np.asarray(p["blocks"]["attn"]["b_V"]))
    m2, p2 = make("gpt2")
    want = np.asarray(p2["blocks"]["attn"]["b_O"][0], np.float64) + sum(
        np.asarray(p2["blocks"]["attn"]["b_V"][0, h], np.float64)
        @ np.asarray(p2["blocks"]["attn"]["W_O"][0, h], np.float64)
        for h in range(4)
    )
    np.testing.assert_allclose(
        fold_value_biases(m2, p2)[1]["blocks"]["attn"]["b_O"][0], want, **TOL
    )


def test_processed_models_still_expand():
    """The folded norms freeze like the originals: the path terms still sum to the logits."""
    m, p = process_weights(*make("gpt2_attn"))
    terms = logit_terms(m, p, TOKENS)
    assert "L0.ln1.beta" not in terms and "L0H0.b_V" in terms
    np.testing.assert_allclose(sum(terms.values()), m(p, jnp.asarray(TOKENS)), atol=2e-4)
