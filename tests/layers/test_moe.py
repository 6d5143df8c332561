"""The mixture of experts against the formula in plain numpy (float64), and its two
evaluations against each other: routed (tiles of the chosen experts only) and dense (every
expert on every token), values and gradients; the trace's router, gates, load and
auxiliary losses; the FLOPs against XLA's count of each evaluation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformer.layers.moe import MoE

D, M = 12, 20
CASES = [  # T, E, k, renormalize, tile
    (16, 8, 2, True, None),
    (5, 4, 1, False, None),
    (33, 8, 3, True, 8),  # several tiles per group
    (1, 8, 2, True, None),  # one token: decode
    (24, 4, 4, False, None),  # k = E: every expert
    (40, 16, 2, True, 8),  # groups left empty
]


def _model(E, k, renormalize, tile, impl="routed"):
    return MoE(D, M, E, k, renormalize=renormalize, tile=tile, impl=impl)


def _draw(moe, T, seed=0):
    params = jax.tree.map(lambda w: 8 * w, moe.init(jax.random.key(seed)))  # decisive routers
    return params, jax.random.normal(jax.random.key(seed + 1), (T, D))


def numpy_moe(params, x, k, renormalize):
    """y_t = Σ_{e ∈ top-k p_t} g_te E_e(x_t), token by token, expert by expert, float64."""
    P = {n: np.asarray(v, np.float64) for n, v in params.items()}
    X = np.asarray(x, np.float64)
    logits = X @ P["W_R"]
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    Y, chosen, gates = np.zeros_like(X), [], []
    for t, u in enumerate(X):
        S = np.argsort(-p[t], kind="stable")[:k]
        g = p[t, S] / p[t, S].sum() if renormalize else p[t, S]
        for e, g_e in zip(S, g):
            a = u @ P["W_gate"][e]
            Y[t] += g_e * (((a / (1 + np.exp(-a))) * (u @ P["W_in"][e])) @ P["W_out"][e])
        chosen.append(S)
        gates.append(g)
    return Y, logits, p, np.array(chosen), np.array(gates)


@pytest.mark.parametrize("T,E,k,renormalize,tile", CASES)
def test_routed_and_dense_are_the_formula(T, E, k, renormalize, tile):
    moe = _model(E, k, renormalize, tile)
    params, x = _draw(moe, T)
    want = numpy_moe(params, x, k, renormalize)[0]
    scale = np.abs(want).max()
    for impl in ("routed", "dense"):
        got = jax.jit(dataclasses.replace(moe, impl=impl))(params, x)
        assert np.abs(np.asarray(got) - want).max() <= 1e-5 * scale, impl


@pytest.mark.parametrize("T,E,k,renormalize,tile", CASES[2:3])  # several tiles per group
def test_routed_gradients_equal_dense_gradients(T, E, k, renormalize, tile):
    moe = _model(E, k, renormalize, tile)
    params, x = _draw(moe, T)
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m(p, x)))
    routed = jax.grad(loss(moe), (0, 1))(params, x)
    dense = jax.grad(loss(dataclasses.replace(moe, impl="dense")), (0, 1))(params, x)
    for r, d in zip(jax.tree.leaves(routed), jax.tree.leaves(dense)):
        assert np.abs(r - d).max() <= 1e-5 * np.abs(d).max()


def test_a_batch_under_vmap_routes_each_sequence():
    moe = _model(8, 2, True, None)
    params, _ = _draw(moe, 1)
    xs = jax.random.normal(jax.random.key(7), (3, 10, D))
    got = jax.vmap(moe, in_axes=(None, 0))(params, xs)
    for x, y in zip(xs, got):
        want = numpy_moe(params, x, 2, True)[0]
        assert np.abs(np.asarray(y) - want).max() <= 1e-5 * np.abs(want).max()


def test_the_trace_shows_router_gates_experts_load_and_the_auxiliary_losses():
    T, E, k = 32, 8, 2
    moe = _model(E, k, True, None)
    params, x = _draw(moe, T)
    _, logits, p, chosen, gates = numpy_moe(params, x, k, True)
    _, points = moe.trace(params, x)
    assert set(points) == set(moe.trace_points())
    assert float(points["moe.aux"]) == 0.0  # no weights: no term in the objective
    assert np.allclose(points["moe.router"], logits, rtol=1e-5, atol=1e-4)
    assert (np.asarray(points["moe.experts"]) == chosen).all()
    assert np.allclose(points["moe.gates"], gates, atol=1e-6)
    load = np.bincount(chosen.reshape(-1), minlength=E) / (T * k)
    assert np.allclose(points["moe.load"], load)
    # Switch / Mixtral balance: E · Σ_e (fraction routed to e) · (mean router probability)
    assert np.isclose(points["moe.balance"], E * np.sum(load * p.mean(0)), rtol=1e-5)
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    assert np.isclose(points["moe.z"], np.mean(lse**2), rtol=1e-4)


def _xla_flops(moe, T):
    params = jax.eval_shape(moe.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((T, moe.d), jnp.float32)
    return jax.jit(moe).lower(params, x).cost_analysis()["flops"] / T


@pytest.mark.parametrize("impl", ["routed", "dense"])
def test_flops_per_token_agree_with_xla_and_routed_ones_scale_with_k_not_e(impl):
    T, d, m = 256, 64, 128
    flops = {}
    for E, k in ((8, 2), (32, 2), (8, 1)):
        moe = MoE(d, m, E, k, impl=impl)
        flops[E, k] = moe.term(T, "x").flops
        assert flops[E, k] == pytest.approx(_xla_flops(moe, T), rel=0.01)
    expert = 6 * d * m
    if impl == "dense":
        assert flops[32, 2] / flops[8, 2] == pytest.approx(4, rel=0.01)
    else:  # 4× the experts: only the router and the tiles' padding grow
        assert flops[32, 2] - flops[8, 2] < 1.0 * expert
        assert flops[8, 2] / flops[8, 1] == pytest.approx(2, rel=0.3)
        assert flops[8, 2] < 1.3 * 2 * expert + 2 * d * 8 + 64 * d  # ≤ 30% padding


def test_bad_sizes_are_refused_with_the_value():
    with pytest.raises(ValueError, match="top_k=9 must lie in 1..n_experts=8"):
        MoE(D, M, 8, 9)
    with pytest.raises(ValueError, match="impl must be one of"):
        MoE(D, M, 8, 2, impl="sparse")


def test_a_batch_under_vmap_has_the_dense_gradients():
    """The batch routed as one set of tokens (routing.py's batching rule) and its VJP."""
    moe = _model(8, 2, True, None)
    params, _ = _draw(moe, 1)
    xs = jax.random.normal(jax.random.key(8), (3, 12, D))
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(jax.vmap(m, in_axes=(None, 0))(p, x)))
    routed = jax.jit(jax.grad(loss(moe), (0, 1)))(params, xs)
    dense = jax.grad(loss(dataclasses.replace(moe, impl="dense")), (0, 1))(params, xs)
    for r, d in zip(jax.tree.leaves(routed), jax.tree.leaves(dense)):
        assert np.abs(r - d).max() <= 1e-5 * np.abs(d).max()
