"""The loss, the optimizer and the jitted step: accumulation, remat, bf16, donation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

from jaxformer.models import Config, build
from jaxformer.train import TrainConfig
from jaxformer.train import loss as L
from jaxformer.train.optim import decay_mask, optimizer, schedule
from jaxformer.train.remat import build_model
from jaxformer.train.step import loss_and_grad, make_eval_step, make_train_step

C = Config(vocab_size=64, context=16, n_layers=2, d_model=32, n_heads=2)
T = C.context


@pytest.fixture(scope="module")
def setup():
    model = build(C)
    params = model.init(jax.random.key(0))
    x = jax.random.randint(jax.random.key(1), (8, T + 1), 0, C.vocab_size, jnp.int32)
    return model, params, x


@pytest.fixture(scope="module")
def grads_M1(setup):
    model, params, x = setup
    return jax.jit(loss_and_grad(model))(params, x[None])


def _max_diff(a, b):
    diffs = jax.tree.map(lambda u, v: float(jnp.max(jnp.abs(u - v))), a, b)
    return max(jax.tree.leaves(diffs))


def test_loss_is_the_cross_entropy_of_the_reference_model(setup):
    model, params, x = setup
    xs = np.asarray(x)
    logits = np.stack([ref.gpt2(params, row[:-1], C) for row in xs])  # float64, no jaxformer
    logz = logits.max(-1) + np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1))
    nll = logz - np.take_along_axis(logits, xs[:, 1:, None], -1)[..., 0]
    got = jax.jit(lambda p, x: L.batch_nll(model, p, x))(params, x)
    np.testing.assert_allclose(got, nll, rtol=1e-5, atol=1e-5)
    # the eval step sums the masked NLL
    mask = np.arange(T) % 3 > 0
    mask = np.broadcast_to(mask, (8, T))
    total = make_eval_step(model, "float32")(params, x, mask)
    np.testing.assert_allclose(float(total), nll[mask].sum(), rtol=1e-5)


def test_bits_per_byte():
    assert L.bits_per_byte(math.log(2) * 300, 100) == pytest.approx(3.0)


def test_accumulating_k_micro_batches_of_b_is_one_batch_of_kb(setup, grads_M1):
    model, params, x = setup
    (m1, g1), (m4, g4) = grads_M1, jax.jit(loss_and_grad(model))(params, x.reshape(4, 2, T + 1))
    # a float32 mean summed in another order: equal to a few ulps (1 ulp at 4 is 4.8e-7)
    assert abs(float(m4["loss"]) - float(m1["loss"])) <= 1e-6 * abs(float(m1["loss"]))
    assert _max_diff(g4, g1) <= 1e-6


@pytest.mark.parametrize("policy", ["full", "names"])  # "dots" is jax's own policy
def test_remat_policies_give_the_same_gradient(setup, grads_M1, policy):
    _, params, x = setup
    model = build_model(C, policy)
    m, g = jax.jit(loss_and_grad(model))(params, x[None])
    assert float(m["loss"]) == pytest.approx(float(grads_M1[0]["loss"]), abs=1e-6)
    assert _max_diff(g, grads_M1[1]) <= 1e-6


def test_names_policy_marks_attention_and_mlp_outputs(setup):
    _, params, x = setup
    model = build_model(C, "names")
    jaxpr = str(jax.make_jaxpr(lambda p: model(p, x[0, :-1]))(params))
    assert "name=attn" in jaxpr and "name=mlp" in jaxpr
    assert build_model(C, "names").init(jax.random.key(0)).keys() == params.keys()


OPT = optimizer(TrainConfig(steps=20, warmup_steps=2, lr=3e-3, min_lr=3e-4))


@pytest.fixture(scope="module")
def f32_step(setup):
    return make_train_step(setup[0], OPT, "float32")


def test_bf16_compute_tracks_f32(setup, f32_step):
    model, params, x = setup
    opt = OPT
    runs = {}
    for dt in ("float32", "bfloat16"):
        step = f32_step if dt == "float32" else make_train_step(model, opt, dt)
        p = jax.tree.map(jnp.copy, params)
        s = opt.init(p)
        losses = []
        # one fixed batch: the loss must fall as the model memorises it
        batch = jax.random.randint(jax.random.key(0), (1, 8, T + 1), 0, C.vocab_size)
        for _ in range(20):
            p, s, m = step(p, s, batch)
            losses.append(float(m["loss"]))
        runs[dt] = np.array(losses)
        assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(p))  # f32 masters
    assert np.all(np.isfinite(runs["bfloat16"]))
    np.testing.assert_allclose(runs["bfloat16"], runs["float32"], rtol=0.02)
    assert runs["float32"][-1] < runs["float32"][0] - 0.05  # it trains


def test_step_donates_params_and_optimizer_state(setup, f32_step):
    _, params, x = setup
    p = jax.tree.map(jnp.copy, params)
    s = OPT.init(p)
    p2, s2, _ = f32_step(p, s, x[None])
    assert all(a.is_deleted() for a in jax.tree.leaves(p))
    assert not any(a.is_deleted() for a in jax.tree.leaves(p2))


def test_weight_decay_reaches_matrices_only(setup):
    _, params, _ = setup
    mask = decay_mask(params)
    flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(mask)}
    assert flat["['embed']['W_E']"] and flat["['blocks']['attn']['W_Q']"]
    assert not flat["['blocks']['ln1']['gamma']"] and not flat["['blocks']['attn']['b_Q']"]
    assert not flat["['blocks']['mlp']['b_in']"]  # 2-D when stacked [L, m], still a bias
    # with zero gradients, AdamW moves exactly the decayed leaves, by lr · λ · θ
    cfg = TrainConfig(steps=10, warmup_steps=0, grad_clip=1.0, weight_decay=0.5, lr=0.1)
    opt = optimizer(cfg)
    small = {"W_x": jnp.ones((2, 3)), "b_x": jnp.ones((4, 3)), "ln": {"gamma": jnp.ones(3)}}
    updates, _ = jax.jit(opt.update)(jax.tree.map(jnp.zeros_like, small), opt.init(small), small)
    np.testing.assert_allclose(updates["W_x"], -0.1 * 0.5 * small["W_x"], rtol=1e-6)
    assert not jnp.any(updates["b_x"]) and not jnp.any(updates["ln"]["gamma"])


def test_schedule_warms_up_then_decays_to_min_lr():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4, schedule="cosine")
    lr = schedule(cfg)
    assert float(lr(0)) == 0 and float(lr(5)) == pytest.approx(5e-4)
    assert float(lr(10)) == pytest.approx(1e-3)
    mid = 1e-4 + (1e-3 - 1e-4) * (1 + math.cos(math.pi * 45 / 90)) / 2
    assert float(lr(55)) == pytest.approx(mid, rel=1e-5)
    assert float(lr(100)) == pytest.approx(1e-4)


def test_gradients_are_clipped_to_the_global_norm():
    cfg = TrainConfig(steps=10, warmup_steps=0, weight_decay=0.0, grad_clip=0.5, lr=1.0, beta1=0.0)
    opt = optimizer(cfg)
    w = {"W_x": jnp.zeros(4)}
    g = {"W_x": jnp.array([3.0, 4.0, 0.0, 0.0])}  # norm 5 → clipped to 0.5
    _, state = jax.jit(opt.update)(g, opt.init(w), w)
    nu = state[1][0].nu["W_x"]  # Adam's second moment saw the clipped gradient
    np.testing.assert_allclose(nu, (1 - cfg.beta2) * (g["W_x"] / 10) ** 2, rtol=1e-6)
