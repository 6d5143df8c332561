"""``--freeze GLOB,…``: the frozen params keep their values and hold no optimizer state, and
the rest take the updates AdamW (with its clipping) gives the trained params alone."""

import jax
import numpy as np
import optax
import pytest

from jaxformer.models import Config, build
from jaxformer.train import TrainConfig
from jaxformer.train.config import ConfigError
from jaxformer.train.optim import decay_mask, optimizer
from jaxformer.train.pretrained import check_freeze, frozen

C = Config(vocab_size=64, context=16, n_layers=2, d_model=32, n_heads=2)


def _setup(freeze: str):
    cfg = TrainConfig.preset(
        "tiny", freeze=freeze, schedule="cosine", grad_clip=0.5, warmup_steps=0
    )  # the first update at η, not 0
    params = build(C).init(jax.random.key(0))
    grads = jax.tree.map(lambda a: jax.random.normal(jax.random.key(a.size), a.shape), params)
    return cfg, params, grads


def test_frozen_params_keep_their_values_and_hold_no_state():
    cfg, params, grads = _setup("embed.*,blocks.attn.*")
    opt = optimizer(cfg)
    state = opt.init(params)
    updates, _ = opt.update(grads, state, params)
    labels = frozen(params, cfg.freeze)
    paths = lambda tree: {
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)
    }
    for path, u in jax.tree_util.tree_leaves_with_path(updates):
        is_frozen = "embed" in jax.tree_util.keystr(path) or "'attn'" in jax.tree_util.keystr(path)
        assert (not np.any(u)) == is_frozen, jax.tree_util.keystr(path)
    n_trained = sum(a.size for a, l in zip(jax.tree.leaves(params), jax.tree.leaves(labels))
                    if l == "trained")  # fmt: skip
    n_state = sum(a.size for a in jax.tree.leaves(state) if np.ndim(a) > 0)
    assert n_state == 2 * n_trained  # Adam's μ and ν, for the trained params only
    assert paths(labels) == paths(params)


def test_the_trained_params_get_adamws_updates_on_them_alone():
    cfg, params, grads = _setup("pos.*,ln_f.*")
    opt = optimizer(cfg)
    updates, _ = opt.update(grads, opt.init(params), params)
    trained = lambda tree: {k: v for k, v in tree.items() if k not in ("pos", "ln_f")}
    sched = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, cfg.warmup_steps, cfg.steps,
                                               cfg.min_lr)  # fmt: skip
    alone = optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),  # the norm of the trained grads alone
        optax.adamw(sched, b1=cfg.beta1, b2=cfg.beta2, weight_decay=cfg.weight_decay,
                    mask=decay_mask),
    )  # fmt: skip
    want, _ = alone.update(trained(grads), alone.init(trained(params)), trained(params))
    for a, b in zip(jax.tree.leaves(trained(updates)), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)


def test_globs_that_match_nothing_or_everything_are_refused():
    params = jax.eval_shape(build(C).init, jax.random.key(0))
    check_freeze("blocks.mlp.W_*", params)
    with pytest.raises(ConfigError, match=r"--freeze 'blocks.mpl.\*' matches no parameter.*W_in"):
        check_freeze("blocks.mlp.*,blocks.mpl.*", params)
    with pytest.raises(ConfigError, match="freezes every parameter"):
        check_freeze("*", params)


def test_the_step_differentiates_the_trained_params_alone():
    """The gradient of the trained leaves is the full gradient's; the frozen ones' is zero."""
    from jaxformer.train.optim import labels
    from jaxformer.train.step import loss_and_grad

    cfg = TrainConfig.preset("tiny", freeze="embed.*,blocks.attn.W_Q")
    model = build(C)
    params = model.init(jax.random.key(0))
    x = jax.random.randint(jax.random.key(1), (1, 4, C.context + 1), 0, C.vocab_size)
    m_all, g_all = jax.jit(loss_and_grad(model))(params, x)
    m_some, g_some = jax.jit(loss_and_grad(model, trained=labels(cfg)))(params, x)
    assert float(m_some["loss"]) == float(m_all["loss"])
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_all), jax.tree.leaves(g_some)):
        key = jax.tree_util.keystr(path)
        if "'embed'" in key or "'W_Q'" in key:
            assert not np.any(b), key
        else:
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9, err_msg=key)
