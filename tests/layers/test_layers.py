"""Each layer against the numpy formula in tests/reference.py, to ≤ 1e-5."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

from jaxformer.core import tokenwise
from jaxformer.layers import (
    MLP,
    Attention,
    Embedding,
    LayerNorm,
    LearnedPositions,
    RMSNorm,
    SinusoidalPositions,
    SwiGLU,
    Unembedding,
    rope,
)

TOL = dict(atol=1e-5, rtol=1e-5)


def rand(shape, seed=0, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape, np.float32))


def randomize(params, seed=1, scale=0.3):
    """Replace every parameter (zero biases, unit gains included) by noise."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: scale * rng.standard_normal(x.shape, np.float32), params)


def test_embedding_is_a_row_lookup():
    e = Embedding(11, 6)
    p = e.init(jax.random.key(0))
    t = np.array([3, 0, 10, 3])
    np.testing.assert_array_equal(e(p, t), np.asarray(p["W_E"])[t])


def test_learned_positions_add_rows():
    pos = LearnedPositions(8, 6)
    p = pos.init(jax.random.key(0))
    x = rand((5, 6))
    np.testing.assert_allclose(pos(p, x), np.asarray(x) + np.asarray(p["W_pos"])[:5], **TOL)


def test_sinusoidal_positions_match_the_formula():
    pos = SinusoidalPositions(16, 6)
    x = np.zeros((7, 6), np.float32)
    y = np.asarray(pos({}, x))
    for i in range(7):
        for j in range(3):
            assert y[i, 2 * j] == pytest.approx(np.sin(i / 10000 ** (2 * j / 6)), abs=1e-6)
            assert y[i, 2 * j + 1] == pytest.approx(np.cos(i / 10000 ** (2 * j / 6)), abs=1e-6)


def test_rope_matches_pairwise_rotation_and_is_relative():
    x = rand((9, 8))
    np.testing.assert_allclose(rope(x, jnp.arange(9), 500.0), ref.rope(ref.f64(x), 500.0), **TOL)
    # ⟨rope(q, i), rope(k, j)⟩ depends only on i − j
    q, k = rand((1, 8), 1), rand((1, 8), 2)
    dot = lambda i, j: float((rope(q, jnp.array([i])) @ rope(k, jnp.array([j])).T)[0, 0])
    assert dot(5, 2) == pytest.approx(dot(13, 10), abs=1e-5)


def test_layer_norm_and_rms_norm():
    x = rand((5, 6), scale=3.0)
    ln = tokenwise(LayerNorm(6, 1e-5))
    p = randomize(ln.init(jax.random.key(0)))
    want = ref.layer_norm(ref.f64(x), *(ref.f64(p["ln"][k]) for k in ("gamma", "beta")), 1e-5)
    np.testing.assert_allclose(ln(p, x), want, **TOL)
    rms = tokenwise(RMSNorm(6, 1e-6))
    p = randomize(rms.init(jax.random.key(0)))
    np.testing.assert_allclose(
        rms(p, x), ref.rms_norm(ref.f64(x), ref.f64(p["ln"]["gamma"]), 1e-6), **TOL
    )


def _numeric_grad(f, args, h=1e-6):
    """Central differences of the scalar f at args (float64 numpy arrays), one per arg."""
    grads = []
    for i, a in enumerate(args):
        g = np.zeros_like(a)
        for j in np.ndindex(a.shape):
            up, down = [b.copy() for b in args], [b.copy() for b in args]
            up[i][j] += h
            down[i][j] -= h
            g[j] = (f(*up) - f(*down)) / (2 * h)
        grads.append(g)
    return grads


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_norm_gradients_equal_finite_differences_of_the_formula(kind):
    """The norms' closed-form VJP (what training runs) against central differences of the
    numpy formula in float64."""
    x, w = rand((4, 6), scale=3.0), rand((4, 6))
    m = tokenwise(LayerNorm(6, 1e-5) if kind == "layer" else RMSNorm(6, 1e-6))
    p = randomize(m.init(jax.random.key(0)))["ln"]
    if kind == "layer":
        names = ("gamma", "beta")
        formula = lambda x, g, b: np.sum(ref.f64(w) * ref.layer_norm(x, g, b, 1e-5))
    else:
        names = ("gamma",)
        formula = lambda x, g: np.sum(ref.f64(w) * ref.rms_norm(x, g, 1e-6))
    loss = lambda x, p: jnp.sum(w * m({"ln": p}, x))
    dx, dp = jax.jit(jax.grad(loss, (0, 1)))(x, p)
    want = _numeric_grad(formula, [ref.f64(x)] + [ref.f64(p[k]) for k in names])
    for got, exp in zip([dx] + [dp[k] for k in names], want, strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("act", ["gelu_tanh", "gelu", "relu", "relu2"])
def test_mlp(act):
    m = tokenwise(MLP(6, 10, act))
    p = randomize(m.init(jax.random.key(0)), scale=0.5)
    x = rand((5, 6))
    np.testing.assert_allclose(m(p, x), ref.mlp(ref.f64(x), ref.f64(p["mlp"]), act), **TOL)


def test_swiglu():
    m = tokenwise(SwiGLU(6, 10))
    p = randomize(m.init(jax.random.key(0)), scale=0.5)
    x = rand((5, 6))
    np.testing.assert_allclose(m(p, x), ref.swiglu(ref.f64(x), ref.f64(p["mlp"])), **TOL)


def test_unembedding():
    u = Unembedding(6, 13, bias=True)
    p = randomize(u.init(jax.random.key(0)))
    x = rand((5, 6))
    np.testing.assert_allclose(u(p, x), ref.f64(x) @ ref.f64(p["W_U"]) + ref.f64(p["b_U"]), **TOL)


ATTENTION_CASES = {
    "mha": dict(H=3, G=None, bias=True, rope_theta=None),
    "gqa+rope": dict(H=4, G=2, bias=False, rope_theta=10000.0),
    "mqa": dict(H=4, G=1, bias=True, rope_theta=None),
}


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_one_head_and_multi_head_attention(case):
    kw = ATTENTION_CASES[case]
    a = Attention(d=8, k=4, **kw)
    p = randomize(a.init(jax.random.key(0)), scale=0.5)
    x = rand((7, 8))
    pn, xn = ref.f64(p), ref.f64(x)
    heads = np.asarray(a.heads(p, x))
    for h in range(kw["H"]):  # each head alone
        np.testing.assert_allclose(
            heads[h], ref.head(xn, pn, h, rope_theta=kw["rope_theta"]), **TOL
        )
    want = ref.attention(xn, pn, rope_theta=kw["rope_theta"])
    np.testing.assert_allclose(a(p, x), want, **TOL)
    # MHA = Σ_h heads (+ b_O)
    b_O = pn.get("b_O", 0)
    np.testing.assert_allclose(heads.sum(0) + b_O, a(p, x), **TOL)


def test_attention_is_causal_and_patterns_are_distributions():
    a = Attention(d=8, H=2, k=4)
    p = randomize(a.init(jax.random.key(0)))
    x = rand((6, 8))
    _, tr = a.trace(p, x)
    A = np.asarray(tr["attn.pattern"])
    np.testing.assert_allclose(A.sum(-1), 1, atol=1e-6)
    assert np.all(np.triu(A, 1) == 0)
    # changing a later token leaves earlier outputs unchanged
    y1, y2 = a(p, x), a(p, x.at[4].add(1.0))
    np.testing.assert_allclose(y1[:4], y2[:4], atol=1e-6)


def test_per_head_circuit_matrices():
    a = Attention(d=8, H=4, k=2, G=2)
    p = randomize(a.init(jax.random.key(0)))
    pn = ref.f64(p)
    for h in range(4):
        g = h // 2
        np.testing.assert_allclose(a.W_QK(p)[h], pn["W_Q"][h] @ pn["W_K"][g].T, **TOL)
        np.testing.assert_allclose(a.W_OV(p)[h], pn["W_V"][g] @ pn["W_O"][h], **TOL)


def test_bad_layer_configs_raise():
    with pytest.raises(ValueError, match="G=3"):
        Attention(d=8, H=4, k=2, G=3)
    with pytest.raises(ValueError, match="even head"):
        Attention(d=8, H=4, k=3, rope_theta=1e4)
    with pytest.raises(ValueError, match="unknown activation"):
        MLP(4, 8, "swish!")
