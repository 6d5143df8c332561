"""The objectives and metrics against plain numpy: ReLU's L1 loss, JumpReLU's L0 loss,
aux-k, FVE and L0; the decoder's rows unit-norm after every step; resampling."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxformer.sae import SAE, SAETrainConfig
from jaxformer.sae.losses import aux_k, fve, l0, objective
from jaxformer.sae.train import _Run

D, N, B = 6, 24, 16


def _params(sae, seed=0):
    rng = np.random.default_rng(seed)
    p = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in sae.spec().items()}
    p["W_dec"] /= np.linalg.norm(p["W_dec"], axis=1, keepdims=True) / rng.uniform(0.5, 2, (N, 1))
    if "log_threshold" in p:
        p["log_threshold"] = np.log(rng.uniform(0.1, 0.8, N)).astype(np.float32)
    return p


def _x(seed=1):
    return np.random.default_rng(seed).standard_normal((B, D)).astype(np.float32)


def _pre(p, x):
    return (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]


def test_relu_l1_objective():
    sae = SAE(D, N, "relu")
    p, x = _params(sae), _x()
    z = np.maximum(_pre(p, x), 0)
    xhat = z @ p["W_dec"] + p["b_dec"]
    mse = np.mean(np.sum((x - xhat) ** 2, 1))
    l1 = np.mean(np.sum(z * np.linalg.norm(p["W_dec"], axis=1), 1))
    loss, parts = objective(sae, p, x, np.zeros(N, bool), {"l1": 0.3})
    np.testing.assert_allclose(float(loss), mse + 0.3 * l1, rtol=1e-5)
    np.testing.assert_allclose(float(parts["l1"]), l1, rtol=1e-5)
    np.testing.assert_allclose(float(parts["l0"]), np.mean(np.sum(z > 0, 1)), rtol=1e-6)


def test_jumprelu_l0_objective():
    sae = SAE(D, N, "jumprelu")
    p, x = _params(sae), _x()
    u, theta = _pre(p, x), np.exp(p["log_threshold"])
    xhat = (u * (u > theta)) @ p["W_dec"] + p["b_dec"]
    want = np.mean(np.sum((x - xhat) ** 2, 1)) + 0.2 * np.mean(np.sum(u > theta, 1))
    loss, _ = objective(sae, p, x, np.zeros(N, bool), {"l0": 0.2})
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)


def _aux_reference(p, x, xhat, pre, dead, k_aux):
    e = x - xhat
    u = np.where(dead, pre, -np.inf)
    z = np.zeros_like(pre)
    for b in range(len(u)):
        top = np.argsort(-u[b], kind="stable")[:k_aux]
        z[b, top] = np.maximum(np.where(np.isfinite(u[b, top]), u[b, top], 0), 0)
    ehat = z @ p["W_dec"]
    nmse = np.sum((e - ehat) ** 2) / np.sum((e - e.mean(0)) ** 2)
    return min(1.0, dead.sum() / k_aux) * nmse


def test_aux_k_against_numpy():
    sae = SAE(D, N, "topk", k=3)
    p, x = _params(sae), _x()
    pre = _pre(p, x)
    z = np.maximum(pre, 0) * (pre >= np.sort(pre, 1)[:, -3:-2])
    xhat = z @ p["W_dec"] + p["b_dec"]
    rng = np.random.default_rng(5)
    for n_dead, k_aux in ((0, 3), (2, 3), (10, 3), (10, 8)):
        dead = np.zeros(N, bool)
        dead[rng.choice(N, n_dead, replace=False)] = True
        got = float(aux_k(sae, p, x, xhat, pre, dead, k_aux))
        np.testing.assert_allclose(got, _aux_reference(p, x, xhat, pre, dead, k_aux), rtol=1e-5)
    # no gradient through the residual: aux-k trains the dead latents' encoder and decoder
    dead = np.zeros(N, bool)
    dead[:10] = True
    g = jax.grad(lambda q: aux_k(sae, q, x, jnp.asarray(xhat), sae.pre(q, x), dead, 4))(p)
    assert not np.asarray(g["W_dec"])[~dead].any() and np.asarray(g["W_dec"])[dead].any()


def test_fve_and_l0():
    x = _x()
    xhat = x + 0.3 * np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    want = 1 - np.sum((x - xhat) ** 2) / np.sum((x - x.mean(0)) ** 2)
    np.testing.assert_allclose(float(fve(x, xhat)), want, rtol=1e-5)
    z = np.array([[0, 1.0, 0, 2], [0, 0, 0, 0], [3, 3, 3, 0]], np.float32)
    np.testing.assert_allclose(float(l0(z)), (2 + 0 + 3) / 3, rtol=1e-6)


def test_decoder_rows_unit_norm_after_every_step_and_resampling():
    for variant in ("topk", "relu", "jumprelu"):
        cfg = SAETrainConfig(at="embed", latents=N, variant=variant, k=3, dead_tokens=B)
        sae = SAE(D, N, variant, k=3)
        run = _Run(cfg, sae)
        p = sae.init(jax.random.key(0))
        opt, since = run.opt.init(p), jnp.zeros(N, jnp.int32)
        for i in range(3):
            before = np.asarray(p["W_dec"])
            p, opt, since, m = run.step(p, opt, since, jnp.asarray(_x(i)), 1e-2)
            W = np.asarray(p["W_dec"])
            np.testing.assert_allclose(np.linalg.norm(W, axis=1), 1, rtol=1e-5)
            assert not np.array_equal(W, before)
        # latents never fired since the start are dead; resampling gives each a drawn input's
        # direction (from b_dec), and zeroes its Adam moments
        since = jnp.where(jnp.arange(N) < 5, 10, 0).astype(jnp.int32)
        x = _x(7)
        p0 = jax.tree.map(np.asarray, p)
        p, opt, since = run.resample(p, opt, since, jnp.asarray(x), jax.random.key(1))
        W = np.asarray(p["W_dec"])
        dirs = (x - p0["b_dec"]) / np.linalg.norm(x - p0["b_dec"], axis=1, keepdims=True)
        for i in range(5):
            assert np.isclose(np.abs(dirs @ W[i]).max(), 1, atol=1e-5)
            assert float(p["b_enc"][i]) == 0
        np.testing.assert_array_equal(W[5:], p0["W_dec"][5:])
        assert not np.asarray(opt.mu["W_dec"])[:5].any() and np.asarray(opt.mu["W_dec"])[5:].any()
        assert not np.asarray(since).any()
