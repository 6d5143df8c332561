"""Weight processing: each transform returns a new composite computing the same function
(center_unembed: the same log-probabilities) and does what it says — its new weights
recomputed in numpy from the old ones — on random models of both families, grouped-query
attention with value biases included."""

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
KINDS = ["gpt2", "gpt2_attn", "gpt2_gqa", "llama", "llama_attn"]
# everything that writes to the residual stream, as (namespace, leaf)
WRITERS = [("embed", "W_E"), ("pos", "W_pos"), ("blocks/attn", "W_O"), ("blocks/attn", "b_O"),
           ("blocks/mlp", "W_out"), ("blocks/mlp", "b_out")]  # fmt: skip


def get(p, path, name):
    for key in path.split("/"):
        p = p.get(key, {})
    return None if name not in p else np.asarray(p[name], np.float64)


def W_U(p):
    """The unembedding, W_Eᵀ when tied."""
    w = get(p, "unembed", "W_U")
    return get(p, "embed", "W_E").T if w is None else w


def mean_free(W):
    return W - W.mean(-1, keepdims=True)


def value_biases_folded(p):
    """b_O + Σ_h b_V^{g(h)} W_O^h per layer, g(h) = h // (H/G): the query heads of a group
    are consecutive and share its value head."""
    b_O, b_V, W_O = (get(p, "blocks/attn", k) for k in ("b_O", "b_V", "W_O"))
    L, H = W_O.shape[:2]
    G = b_V.shape[1]
    return np.stack([b_O[l] + sum(b_V[l, h // (H // G)] @ W_O[l, h] for h in range(H))
                     for l in range(L)])  # fmt: skip


def check_same_function(m, p, m2, p2, log_probs=False):
    t = jnp.asarray(TOKENS)
    y, y2 = jax.jit(m)(p, t), jax.jit(m2)(p2, t)  # one compile each, not one per op
    if log_probs:
        y, y2 = jax.nn.log_softmax(y), jax.nn.log_softmax(y2)
    np.testing.assert_allclose(y2, y, **TOL)


def check_it_does_what_it_says(f, m, p, m2, p2):
    """The transform's own claim, its new weights recomputed in numpy from the old ones."""
    close = lambda got, want, what: np.testing.assert_allclose(got, want, **TOL, err_msg=what)
    if f in (fold_ln, process_weights):
        a = Anatomy.of(m2)
        for norm in (a.ln1, a.ln2, a.ln_f):
            assert norm is None or isinstance(norm, Normalise)
        assert all(p2["blocks"].get(n, {}) == {} for n in ("ln1", "ln2")) and not p2.get("ln_f")
    if f is fold_ln:  # W ← diag(γ) W for every reader of a norm
        g1 = get(p, "blocks/ln1", "gamma")
        for W in ("W_Q", "W_K", "W_V"):
            close(get(p2, "blocks/attn", W), g1[:, None, :, None] * get(p, "blocks/attn", W), W)
        if "mlp" in p["blocks"]:
            g2 = get(p, "blocks/ln2", "gamma")
            for W in ("W_gate", "W_in"):
                if get(p, "blocks/mlp", W) is not None:
                    close(get(p2, "blocks/mlp", W), g2[:, :, None] * get(p, "blocks/mlp", W), W)
        close(W_U(p2), get(p, "ln_f", "gamma")[:, None] * W_U(p), "W_U")
    if f is center_writing_weights:  # every writer (all six in gpt2), mean-free over d
        for w in WRITERS:
            if get(p, *w) is not None:
                close(get(p2, *w), mean_free(get(p, *w)), "/".join(w))
    if f is center_unembed:  # mean-free over the vocabulary
        close(W_U(p2), mean_free(W_U(p)), "W_U")
        if get(p, "unembed", "b_U") is not None:
            close(get(p2, "unembed", "b_U"), mean_free(get(p, "unembed", "b_U")), "b_U")
    if f is fold_value_biases:
        if get(p, "blocks/attn", "b_V") is None:  # nothing to fold: the same weights
            assert jax.tree.structure(p2) == jax.tree.structure(p)
            assert all(map(np.array_equal, jax.tree.leaves(p2), jax.tree.leaves(p)))
        else:
            close(get(p2, "blocks/attn", "b_O"), value_biases_folded(p), "b_O")
            assert not np.any(get(p2, "blocks/attn", "b_V"))
    if f is process_weights:  # all four (the writers centered where the norms center)
        if "beta" in p["blocks"]["ln1"]:
            for w in WRITERS:
                if get(p, *w) is not None:
                    close(get(p2, *w).mean(-1), 0, "/".join(w) + " mean over d")
        close(W_U(p2).mean(-1), 0, "W_U mean over V")
        assert get(p2, "blocks/attn", "b_V") is None or not np.any(get(p2, "blocks/attn", "b_V"))


@pytest.mark.parametrize("kind", KINDS)
def test_each_transform_keeps_the_function_and_does_what_it_says(kind):
    m, p = make(kind)
    for f in TRANSFORMS:
        if f is center_writing_weights and kind.startswith("llama"):
            with pytest.raises(ValueError, match="LayerNorm models only"):
                f(m, p)
            continue
        m2, p2 = f(m, p)
        uncentered = f in (center_unembed, process_weights)
        check_same_function(m, p, m2, p2, log_probs=uncentered)
        check_it_does_what_it_says(f, m, p, m2, p2)


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
    for w in WRITERS:  # all six writers are there, and mean-free over d
        np.testing.assert_allclose(get(p, *w).mean(-1), 0, atol=1e-6, err_msg="/".join(w))
    np.testing.assert_allclose(W_U(p).mean(-1), 0, atol=1e-6)
    assert not np.any(get(p, "blocks/attn", "b_V"))
    for kind in ("gpt2", "gpt2_gqa"):  # H = G = 4; H = 4 query heads over G = 2 value heads
        m2, p2 = make(kind)
        assert p2["blocks"]["attn"]["b_V"].shape[1] == (4 if kind == "gpt2" else 2)
        got = fold_value_biases(m2, p2)[1]["blocks"]["attn"]["b_O"]
        np.testing.assert_allclose(got, value_biases_folded(p2), **TOL, err_msg=kind)


def test_processed_models_still_expand():
    """The folded norms freeze like the originals: the path terms still sum to the logits."""
    m, p = process_weights(*make("gpt2_attn"))
    terms = logit_terms(m, p, TOKENS)
    assert "L0.ln1.beta" not in terms and "L0H0.b_V" in terms
    np.testing.assert_allclose(sum(terms.values()), m(p, jnp.asarray(TOKENS)), atol=2e-4)
