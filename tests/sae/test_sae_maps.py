"""The SAE's maps against the formulas in plain numpy: TopK, ReLU and JumpReLU forward,
JumpReLU's straight-through pseudo-gradient, the decoder initialised from the encoder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sae_params import random_params

from jaxformer.core import ShapeError
from jaxformer.sae import SAE, unit_rows
from jaxformer.sae.maps import jump, step

D, N = 6, 20


def _pre(p, x):
    return (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]


def _x(seed=1, B=9):
    return np.random.default_rng(seed).standard_normal((B, D)).astype(np.float32)


def test_topk_keeps_the_k_largest_preactivations_rectified():
    sae = SAE(D, N, "topk", k=3)
    p, x = random_params(sae), _x()
    u = _pre(p, x)
    want = np.zeros_like(u)
    for b in range(len(u)):
        top = np.argsort(-u[b])[:3]
        want[b, top] = np.maximum(u[b, top], 0)
    z = np.asarray(sae.encode(p, x))
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-6)
    assert (np.count_nonzero(z, axis=1) <= 3).all()
    np.testing.assert_allclose(np.asarray(sae.apply(p, x)), want @ p["W_dec"] + p["b_dec"],
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_relu_and_jumprelu_forward():
    x = _x()
    relu = SAE(D, N, "relu")
    p = random_params(relu)
    np.testing.assert_allclose(np.asarray(relu.encode(p, x)), np.maximum(_pre(p, x), 0),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    jr = SAE(D, N, "jumprelu")
    p = random_params(jr)
    u, theta = _pre(p, x), np.exp(p["log_threshold"])
    np.testing.assert_allclose(np.asarray(jr.encode(p, x)), u * (u > theta), rtol=1e-5, atol=1e-6)
    # no b_dec subtracted when apply_b_dec_to_input is off
    off = SAE(D, N, "relu", apply_b_dec_to_input=False)
    p = random_params(off)
    want = np.maximum(x @ p["W_enc"] + p["b_enc"], 0)
    np.testing.assert_allclose(np.asarray(off.encode(p, x)), want, rtol=1e-5, atol=1e-6)


def test_jumprelu_pseudo_gradient_is_the_rectangle_kernel():
    eps = 0.5
    rng = np.random.default_rng(2)
    theta = rng.uniform(0.5, 1.5, N).astype(np.float32)
    u = (theta + rng.uniform(-0.6, 0.6, (7, N))).astype(np.float32)  # many within ε/2 of θ
    w = rng.standard_normal((7, N)).astype(np.float32)
    rect = (np.abs((u - theta) / eps) < 0.5).astype(np.float32)

    g_u, g_t = jax.grad(lambda a, t: jnp.sum(w * jump(a, t, eps)), argnums=(0, 1))(u, theta)
    np.testing.assert_allclose(np.asarray(g_u), w * (u > theta), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g_t), np.sum(w * (-theta / eps) * rect, 0), rtol=1e-5)

    g_u, g_t = jax.grad(lambda a, t: jnp.sum(w * step(a, t, eps)), argnums=(0, 1))(u, theta)
    assert not np.asarray(g_u).any()
    np.testing.assert_allclose(np.asarray(g_t), np.sum(w * (-1 / eps) * rect, 0), rtol=1e-5)
    assert 0 < rect.mean() < 1  # the test exercises both sides of the kernel's edge


def test_decoder_starts_as_the_encoder_transposed_and_normalised():
    for variant in ("topk", "relu", "jumprelu"):
        sae = SAE(D, N, variant, k=4, threshold=0.01)
        p = sae.init(jax.random.key(3))
        W = np.asarray(p["W_enc"]).T
        unit = W / np.linalg.norm(W, axis=1, keepdims=True)
        np.testing.assert_allclose(np.asarray(p["W_dec"]), unit, rtol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(np.asarray(p["W_dec"]), axis=1), 1, rtol=1e-6)
        assert not np.asarray(p["b_enc"]).any() and not np.asarray(p["b_dec"]).any()
        if variant == "jumprelu":
            np.testing.assert_allclose(np.exp(np.asarray(p["log_threshold"])), 0.01, rtol=1e-6)
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(unit_rows(jnp.ones((3, 4)) * 7)), axis=1), 1
    )


def test_encoder_and_decoder_are_checked_maps():
    sae = SAE(D, N, "topk", k=2)
    p = sae.init(jax.random.key(0))
    assert np.asarray(sae.encoder(p, jnp.ones(D))).shape == (N,)
    assert np.asarray(sae.decoder(p, jnp.ones(N))).shape == (D,)
    assert sae.encoder.domain.shape == (D,) and sae.encoder.codomain.shape == (N,)
    with pytest.raises(ShapeError, match="encoder"):
        sae.encoder(p, jnp.ones(D + 1))
    with pytest.raises(ShapeError, match="decoder"):
        sae.decoder(p, jnp.ones(D))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="variant"):
        SAE(D, N, "gated")
    with pytest.raises(ValueError, match="k=30"):
        SAE(D, N, "topk", k=30)
