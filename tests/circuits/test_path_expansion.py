"""Path expansion: each labelled term recomputed by hand (numpy, float64) from the weights
and the patterns and norm scales of the numpy forward pass; the terms sum to the logits
and the scores."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference
from circuit_models import TOKENS, config, make
from frozen_reference import Frozen

from jaxformer.circuits import group, logit_terms, order, score_terms, source, stream_terms

# the papers' toy model (``pure_attention_only``): no norms, learned positions
PURE = SimpleNamespace(family="gpt2", positional="learned", norm_eps=None)

EXACT = 1e-10  # float64, patterns and scales frozen
ROPE = 1e-7  # scores under RoPE: the code's angles are float32 (rope_angles), numpy's float64
F32 = 2e-4  # against the model's own float32 forward pass


def setup(kind):
    """(model, params, f32 logits, points, numpy reference): the points (patterns, norm
    scales, MLP outputs) and RoPE's angles i·θ^(−2j/k) are numpy's own, from
    ``reference.forward``; both the circuits code and the reference read those points."""
    m, p = make(kind)
    y = jax.jit(m)(p, jnp.asarray(TOKENS))
    c = PURE if kind == "pure" else config(kind)
    points = {}
    want = reference.forward(p, TOKENS, c, points=points)
    np.testing.assert_allclose(y, want, atol=F32)  # the model is the numpy forward pass
    angles = None
    if c.positional == "rope":
        angles = reference.rope_angles(len(TOKENS), c.d_head, c.rope_theta)
    return m, p, np.asarray(y), points, Frozen(p, TOKENS, points, angles)


def in_f64(fn, m, p, points, *args):
    """Run a circuits function on float64 params and points, x64 on only inside."""
    with jax.enable_x64(True):
        cast = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), t)
        out = fn(m, cast(p), TOKENS, *args, points=cast(points))
        return jax.tree.map(np.asarray, out)


@pytest.mark.parametrize("kind", ["pure", "gpt2_attn", "gpt2", "llama"])
def test_logit_terms_are_the_paths_and_sum_to_the_logits(kind):
    m, p, y, points, ref = setup(kind)
    terms = in_f64(logit_terms, m, p, points)
    assert sorted(terms) == sorted(ref.labels())
    for label, x in terms.items():
        assert x.dtype == np.float64
        np.testing.assert_allclose(x, ref.logit_term(label), atol=EXACT, rtol=0, err_msg=label)
    total = sum(terms.values())
    np.testing.assert_allclose(total, ref.logits(), atol=EXACT, rtol=0)
    np.testing.assert_allclose(total, y, atol=F32)  # the frozen pass is the model's pass


def test_attention_only_paths_are_the_papers_expansion():
    """No norms, no biases: logits = x₀W_U + Σ_h A^h x₀ W_OV^h W_U + Σ A^{h₂}A^{h₁} x₀ … ."""
    m, p, y, points, ref = setup("pure")
    terms = in_f64(logit_terms, m, p, points)
    by_order = group(terms, order)
    assert sorted(by_order) == [0, 1, 2]
    assert len(terms) == 2 * (1 + 4) ** 2  # (embed, pos) × (id + 4 heads) per layer
    W_U = np.asarray(p["unembed"]["W_U"], np.float64)
    np.testing.assert_allclose(by_order[0], ref.x0() @ W_U, atol=EXACT)
    by_source = group(terms, source)
    assert sorted(by_source) == ["embed", "pos"]
    np.testing.assert_allclose(sum(by_source.values()), y, atol=F32)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_stream_terms_sum_to_the_stream_at_every_block(kind):
    m, p, _, points, ref = setup(kind)
    for n in range(3):
        terms = in_f64(stream_terms, m, p, points, n)
        np.testing.assert_allclose(sum(terms.values()), ref.stream(n), atol=EXACT, rtol=0)


@pytest.mark.parametrize("kind", ["pure", "gpt2", "llama"])
def test_score_terms_split_the_scores_by_composition(kind):
    m, p, _, points, ref = setup(kind)
    causal = np.tril(np.ones((len(TOKENS),) * 2, bool))
    for l in range(2):
        terms = in_f64(score_terms, m, p, points, l)
        want = ref.score_terms(l)
        tol = EXACT if ref.angles is None else ROPE
        for k in ("direct", "Q", "K", "QK"):
            np.testing.assert_allclose(terms[k], want[k], atol=tol, rtol=0, err_msg=k)
        traced = np.asarray(points["blocks"]["attn.scores"][l])
        np.testing.assert_allclose(sum(terms.values())[:, causal], traced[:, causal], atol=F32)
        if l == 0:  # nothing has been written before the first block
            assert all(np.abs(terms[k]).max() == 0 for k in ("Q", "K", "QK"))


def test_expansion_runs_in_float32_and_checks_its_layer():
    m, p, y, points, _ = setup("gpt2")
    total = sum(logit_terms(m, p, TOKENS).values())
    np.testing.assert_allclose(total, y, atol=F32)
    with pytest.raises(ValueError, match="layer must be in"):
        score_terms(m, p, TOKENS, 2, points=points)
