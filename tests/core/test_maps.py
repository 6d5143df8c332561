"""The map, compose, residual, parallel, tokenwise, repeat, scope, tie, trace, replace."""

from dataclasses import dataclass

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformer.core import (
    Map,
    Param,
    Real,
    ShapeError,
    Tokens,
    compose,
    parallel,
    repeat,
    residual,
    scope,
    tie,
    tokenwise,
)


@dataclass(frozen=True, repr=False)
class Linear(Map):
    """x ↦ x W (rows of x are points of R^n)."""

    n: int
    m: int
    name: str = "lin"

    domain = property(lambda self: Real("T", self.n))
    codomain = property(lambda self: Real("T", self.m))

    def spec(self):
        return {"W": Param((self.n, self.m), ("n", "m"), 1 / np.sqrt(self.n))}

    def apply(self, params, x):
        return jnp.tanh(x @ params["W"])


@dataclass(frozen=True, repr=False)
class Square(Map):
    """A token map R^n → R^n, x ↦ x ⊙ x + b."""

    n: int
    name: str = "sq"

    domain = property(lambda self: Real(self.n))
    codomain = property(lambda self: Real(self.n))

    def spec(self):
        return {"b": Param((self.n,), ("n",), 1.0)}

    def apply(self, params, x):
        return x * x + params["b"]


def x_T(n=4, T=5, seed=0):
    return jax.random.normal(jax.random.key(seed), (T, n))


def test_compose_is_g_after_f():
    f, g = Linear(4, 3, name="f"), Linear(3, 2, name="g")
    h = compose(g, f)
    p = h.init(jax.random.key(1))
    assert set(p) == {"f", "g"}
    x = np.asarray(x_T(), np.float64)
    want = np.tanh(np.tanh(x @ np.asarray(p["f"]["W"])) @ np.asarray(p["g"]["W"]))
    np.testing.assert_allclose(h(p, x_T()), want, atol=1e-6)
    assert h.domain == f.domain and h.codomain == g.codomain


def test_compose_mismatch_names_both_maps_and_shapes():
    f, g = Linear(4, 3, name="f"), Linear(5, 2, name="g")
    with pytest.raises(ShapeError) as e:
        compose(g, f)
    msg = str(e.value)
    assert "'f'" in msg and "'g'" in msg and "ℝ^{T×3}" in msg and "ℝ^{T×5}" in msg


def test_wrong_input_shape_names_the_map_and_axis():
    f = Linear(4, 3, name="proj")
    p = f.init(jax.random.key(0))
    with pytest.raises(ShapeError, match=r"proj \(input\): axis 1 \(4\) has size 7"):
        f(p, jnp.ones((5, 7)))
    with pytest.raises(ShapeError, match="rank"):
        f(p, jnp.ones((5,)))


def test_duplicate_names_rejected():
    with pytest.raises(ValueError, match="more than once"):
        compose(Linear(4, 4), Linear(4, 4))


def test_residual_is_identity_plus_f():
    f = Linear(4, 4)
    r = residual(f, name="r")
    p = r.init(jax.random.key(0))
    np.testing.assert_allclose(r(p, x_T()), x_T() + f(p["lin"], x_T()), atol=1e-6)
    y, points = r.trace(p, x_T())
    np.testing.assert_allclose(points["lin"], f(p["lin"], x_T()), atol=1e-6)
    np.testing.assert_allclose(points["r"], y)
    with pytest.raises(ShapeError, match="domain = codomain"):
        residual(Linear(4, 3))


def test_parallel_is_a_sum():
    a, b = Linear(4, 4, name="a"), Linear(4, 4, name="b")
    s = parallel(a, b)
    p = s.init(jax.random.key(2))
    np.testing.assert_allclose(s(p, x_T()), a(p["a"], x_T()) + b(p["b"], x_T()), atol=1e-6)
    with pytest.raises(ShapeError):
        parallel(a, Linear(4, 3, name="c"))


def test_tokenwise_lifts_a_token_map():
    sq = Square(4)
    lifted = tokenwise(sq)
    assert str(lifted.domain) == "ℝ^{T×4}"
    p = lifted.init(jax.random.key(0))
    x = x_T()
    want = np.stack([np.asarray(sq(p["sq"], x[t])) for t in range(x.shape[0])])
    np.testing.assert_allclose(lifted(p, x), want, atol=1e-6)


def test_repeat_scan_equals_unrolled_and_explicit_loop():
    f = residual(Linear(4, 4), name="res")
    r = repeat(f, 3, name="layers")
    p = r.init(jax.random.key(0))
    assert p["lin"]["W"].shape == (3, 4, 4)
    x = x_T()
    y = r(p, x)
    # the unrolled composite on the unstacked params
    np.testing.assert_allclose(r.unroll()(r.unstack(p), x), y, atol=1e-6)
    # and an explicit loop, in numpy
    z = np.asarray(x, np.float64)
    for i in range(3):
        z = z + np.tanh(z @ np.asarray(p["lin"]["W"][i], np.float64))
    np.testing.assert_allclose(y, z, atol=1e-5)
    # remat changes memory, not the function or its gradient
    rr = repeat(f, 3, name="layers", remat=True)
    loss = lambda m: lambda q: jnp.sum(m(q, x) ** 2)
    # (recomputation reorders float sums: equal to rounding, ~1e-6 relative)
    chex.assert_trees_all_close(jax.grad(loss(r))(p), jax.grad(loss(rr))(p), rtol=1e-5, atol=1e-5)


def test_trace_of_repeat_is_stacked():
    r = repeat(residual(Linear(4, 4), name="res"), 3, name="layers")
    p = r.init(jax.random.key(0))
    y, points = r.trace(p, x_T())
    assert points["layers"]["res"].shape == (3, 5, 4)
    np.testing.assert_allclose(points["layers"]["res"][-1], y)


def test_scope_files_params_under_its_name():
    s = scope(Linear(4, 4), "outer")
    p = s.init(jax.random.key(0))
    assert set(p) == {"lin"}
    m = compose(s, Linear(4, 4, name="first"))
    assert set(m.init(jax.random.key(0))) == {"outer", "first"}


def test_replace_returns_a_new_composite():
    f, g = Linear(4, 4, name="f"), Linear(4, 4, name="g")
    h = compose(g, f)
    zero = Linear(4, 4, name="f")
    h2 = h.replace("f", zero)
    assert h.find("f") is f and h2.find("f") is zero
    with pytest.raises(ValueError, match="replacement"):
        h.replace("f", Linear(4, 3, name="f"))
    with pytest.raises(KeyError):
        h.find("nope")


def test_tie_defines_one_parameter_by_another():
    f, g = Linear(4, 4, name="f"), Linear(4, 4, name="g")
    t = tie(compose(g, f), dst=("g", "W"), src=("f", "W"))
    p = t.init(jax.random.key(0))
    assert "W" not in p["g"]
    x = x_T()
    want = compose(g, f)({"f": p["f"], "g": {"W": p["f"]["W"].T}}, x)
    np.testing.assert_allclose(t(p, x), want, atol=1e-6)


def test_index_space_validates_ids_on_host():
    s = Tokens(10, "T", limits={"T": 4})
    s.validate(np.array([0, 9]), "m")
    with pytest.raises(ValueError, match=r"token id 10 is outside the vocabulary \[0, 10\)"):
        s.validate(np.array([1, 10]), "m")
    with pytest.raises(ValueError, match="token id -1"):
        s.validate(np.array([-1]), "m")
    with pytest.raises(ShapeError, match="above its limit 4"):
        s.check(np.zeros(5, np.int32), "m")
    with pytest.raises(ShapeError, match="must be integers"):
        s.check(np.zeros(3, np.float32), "m")


class JitEqualsNoJit(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_composite(self):
        m = repeat(residual(compose(Linear(4, 4), tokenwise(Square(4))), name="r"), 2)
        p = m.init(jax.random.key(0))
        y = self.variant(m)(p, x_T())
        z = np.asarray(x_T(), np.float64)
        for i in range(2):
            w = z * z + np.asarray(p["sq"]["b"][i])
            z = z + np.tanh(w @ np.asarray(p["lin"]["W"][i], np.float64))
        np.testing.assert_allclose(y, z, atol=1e-5)
