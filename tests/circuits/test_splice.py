"""Splices: each edit spliced in at a point gives the logits of the same edit written out
by hand in numpy on the forward pass (``reference.forward``'s patch at that site); the
spaces are checked when the composite is built; a layer of a repeat is spliced without
unrolling the others."""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from circuit_models import D, H, L, config, make

from jaxformer.circuits import ablate, ablate_head, reconstruct, steer
from jaxformer.core import (
    Map,
    Param,
    Pattern,
    Real,
    Repeat,
    ShapeError,
    space_at,
    splice,
    tokenwise,
    with_splice,
)

TOKENS = np.array([3, 1, 4, 1, 5, 9, 2, 6], np.int32)
OTHER = np.array([7, 7, 2, 8, 1, 8, 2, 8], np.int32)
T = len(TOKENS)
RNG = np.random.default_rng(0)


@dataclass(frozen=True, repr=False)
class SAE(Map):
    """A ReLU sparse autoencoder R^d → R^d: W_dec relu(W_enc (x − b_dec) + b_enc) + b_dec."""

    d: int
    n: int
    name: str = "sae"

    domain = property(lambda self: Real(self.d))
    codomain = property(lambda self: Real(self.d))

    def spec(self):
        return {
            "W_enc": Param((self.d, self.n), ("d", "n"), 0.5),
            "b_enc": Param((self.n,), ("n",), 0.1),
            "W_dec": Param((self.n, self.d), ("n", "d"), 0.5),
            "b_dec": Param((self.d,), ("d",), 0.1),
        }

    def forward(self, p, x):
        f = jax.nn.relu((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"])
        y = f @ p["W_dec"] + p["b_dec"]
        return y, {self.name: y, f"{self.name}.latents": f}

    def trace_points(self):
        return (self.name, f"{self.name}.latents")

    def apply(self, p, x):
        return self.forward(p, x)[0]


def numpy_sae(p, x):
    p = ref.f64(p)
    f = np.maximum((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"], 0)
    return f @ p["W_dec"] + p["b_dec"]


def at(site, l, edit):
    """A ``reference.forward`` patch editing ``site`` of layer l (every layer for l=None)."""
    return lambda s, i, x: edit(x, i) if s == site and l in (None, i) else x


def check(kind, point, g, g_params, patch, op="insert"):
    model, params = make(kind)
    m = splice(model, point, g, op=op)
    got = jax.jit(m)(with_splice(params, point, g_params), jnp.asarray(TOKENS))
    want = ref.forward(params, TOKENS, config(kind), patch=patch)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    plain = ref.forward(params, TOKENS, config(kind))
    assert np.abs(want - plain).max() > 1e-2  # the edit changes the logits
    return m


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_a_steering_vector(kind):
    c = RNG.standard_normal(D).astype(np.float32)
    S = space_at(make(kind)[0], "blocks.1.resid_mid")
    assert S.same_as(Real("T", D))
    edit = at("resid_mid", 1, lambda x, _: x + c)
    check(kind, "blocks.1.resid_mid", steer(S), {"c": c[None]}, edit)


def test_a_steering_vector_per_layer_at_every_layer():
    c = RNG.standard_normal((L, 1, D)).astype(np.float32)
    S = space_at(make("gpt2")[0], "blocks.*.resid_post")
    model, params = make("gpt2")
    m = splice(model, "blocks.*.resid_post", steer(S), per_layer=True)
    got = m(with_splice(params, "blocks.*.resid_post", {"c": c}), jnp.asarray(TOKENS))
    patch = at("resid_post", None, lambda x, i: x + c[i, 0])
    np.testing.assert_allclose(got, ref.forward(params, TOKENS, config("gpt2"), patch=patch),
                               rtol=2e-4, atol=2e-5)  # fmt: skip
    assert isinstance(m.find("blocks"), Repeat) and not isinstance(m.find("blocks"), Pattern)


def test_zero_ablation_of_a_layers_mlp():
    S = space_at(make("gpt2")[0], "blocks.0.mlp")
    check("gpt2", "blocks.0.mlp", ablate(S), {}, at("mlp", 0, lambda x, _: 0 * x))


def test_mean_ablation_with_the_mean_over_a_batch_of_traces():
    model, params = make("llama")
    batch = RNG.integers(0, 37, (6, T)).astype(np.int32)
    points = [{} for _ in batch]
    for b, pts in zip(batch, points):
        ref.forward(params, b, config("llama"), points=pts)
    mu = np.mean([pts["blocks"]["attn"][1] for pts in points], axis=(0, 1))  # [d]
    S = space_at(model, "blocks.1.attn")
    check("llama", "blocks.1.attn", ablate(S, "mean"), {"mean": mu[None].astype(np.float32)},
          at("attn", 1, lambda x, _: np.broadcast_to(mu, x.shape)))  # fmt: skip


def test_resample_ablation_with_the_point_on_another_input():
    model, params = make("gpt2")
    pts = {}
    ref.forward(params, OTHER, config("gpt2"), points=pts)
    other = pts["blocks"]["resid_post"][0]
    S = space_at(model, "blocks.0.resid_post")
    check("gpt2", "blocks.0.resid_post", ablate(S, "resample", T=T),
          {"value": other.astype(np.float32)}, at("resid_post", 0, lambda x, _: other))  # fmt: skip


@pytest.mark.parametrize("kind", ["gpt2", "llama"])  # llama: grouped key/value heads
def test_ablation_of_one_head(kind):
    S = space_at(make(kind)[0], "blocks.1.attn.z")
    assert S.same_as(Real(H, "T", D // H))

    def zero_head(z, _):
        z = z.copy()
        z[2] = 0
        return z

    check(kind, "blocks.1.attn.z", ablate_head(S, 2), {}, at("z", 1, zero_head))


def test_an_sae_reconstruction_and_with_its_error_term():
    sae = tokenwise(SAE(D, 24))
    g_params = sae.init(jax.random.key(1))
    inner = g_params["sae"]
    m = check("gpt2", "blocks.1.resid_mid", reconstruct(sae), g_params,
              at("resid_mid", 1, lambda x, _: numpy_sae(inner, x)))  # fmt: skip
    # the trace records the SAE's latents under the point's name
    model, params = make("gpt2")
    p = with_splice(params, "blocks.1.resid_mid", g_params)
    _, got = m.trace(p, jnp.asarray(TOKENS), points=["blocks.1.resid_mid.sae.latents"])
    pts = {}
    ref.forward(params, TOKENS, config("gpt2"), points=pts)
    x = ref.f64(pts)["blocks"]["resid_mid"][1]
    latents = np.maximum((x - inner["b_dec"]) @ inner["W_enc"] + inner["b_enc"], 0)
    np.testing.assert_allclose(got["blocks.1.resid_mid.sae.latents"], latents, rtol=2e-4, atol=2e-5)
    # with the error term: the model's own logits, and gradients that reach the SAE
    e = splice(model, "blocks.1.resid_mid", reconstruct(sae, error=True))
    np.testing.assert_allclose(e(p, jnp.asarray(TOKENS)), model(params, jnp.asarray(TOKENS)),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    grad = jax.grad(lambda q: e(with_splice(params, "blocks.1.resid_mid", q), TOKENS).sum())
    assert float(jnp.abs(grad(g_params)["sae"]["W_enc"]).max()) > 0


def test_replace_a_layers_mlp():
    W = (0.3 * RNG.standard_normal((D, D))).astype(np.float32)

    @dataclass(frozen=True, repr=False)
    class Linear(Map):
        name: str = "lin"
        domain = property(lambda self: Real(D))
        codomain = property(lambda self: Real(D))

        def spec(self):
            return {"W": Param((D, D), ("d", "d"))}

        def apply(self, p, x):
            return x @ p["W"]

    model, params = make("gpt2")
    b = ref.f64(params)["blocks"]

    pts = {}  # the MLP's output becomes ln2(resid_mid) W

    def patch(site, l, x):
        if site == "resid_mid" and l == 0:
            pts["x"] = x
        if site == "mlp" and l == 0:
            return ref.norm(pts["x"], ref.layer(b["ln2"], 0), config("gpt2"))[0] @ W
        return x

    check("gpt2", "blocks.0.mlp", tokenwise(Linear()), {"lin": {"W": W}}, patch, op="replace")


def test_a_splice_at_one_layer_keeps_the_others_stacked_and_the_model_unchanged():
    model, params = make("gpt2")
    S = space_at(model, "blocks.1.resid_mid")
    m = splice(model, "blocks.1.resid_mid", steer(S))
    stack = m.find("blocks")
    assert isinstance(stack, Pattern) and stack.kind == (0, 1) and stack.L == L
    spec = m.spec()
    assert spec["blocks"]["attn"]["W_Q"].shape[0] == L  # the block's params stay stacked
    assert spec["blocks"]["splice:blocks.1.resid_mid"]["c"].shape == (1, D)  # filed once
    assert "splice:blocks.1.resid_mid" not in model.spec()["blocks"]
    twice = splice(m, "blocks.0.attn.z", ablate_head(space_at(m, "blocks.0.attn.z"), 0))
    assert twice.find("blocks").kind == (2, 1)
    with pytest.raises(KeyError, match="parameters of steer are missing"):
        m(params, jnp.asarray(TOKENS))


def test_the_spaces_are_checked_when_the_composite_is_built():
    model, _ = make("gpt2")
    wrong = r"splice at 'blocks.1.resid_mid': the point is ℝ\^\{T×16\} but sae is ℝ\^\{T×8\}"
    with pytest.raises(ShapeError, match=wrong):
        splice(model, "blocks.1.resid_mid", reconstruct(tokenwise(SAE(8, 24))))
    with pytest.raises(ShapeError, match=r"blocks.0.attn.z.*ℝ\^\{4×T×4\} but steer is ℝ\^\{T×16\}"):
        splice(model, "blocks.0.attn.z", steer(Real("T", D)))
    with pytest.raises(ValueError, match="blocks has layers 0 … 1"):
        splice(model, "blocks.5.resid_mid", steer(Real("T", D)))
    with pytest.raises(KeyError, match="no point matches 'blocks.0.resid_mdi'"):
        splice(model, "blocks.0.resid_mdi", steer(Real("T", D)))
    with pytest.raises(ValueError, match="cannot be split at its point 'attn.pattern'"):
        splice(model, "blocks.0.attn.pattern", steer(Real("T", D)))
