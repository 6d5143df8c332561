"""repeat(…, unrolled=True) is the same map as the scan: outputs, trace and gradients."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxformer.core import Repeat
from jaxformer.models import Config, build

C = Config(vocab_size=32, context=8, n_layers=3, d_model=16, n_heads=2)


def test_unrolled_scan_is_the_same_map():
    scanned = build(C)
    blocks = scanned.find("blocks")
    unrolled = scanned.replace("blocks", dataclasses.replace(blocks, unrolled=True))
    assert unrolled.find("blocks").unrolled and not blocks.unrolled
    assert jax.tree.structure(unrolled.spec()) == jax.tree.structure(scanned.spec())
    # with_children (replace, pinning) keeps the flag
    assert blocks.with_children((blocks.f,)).unrolled is False
    assert dataclasses.replace(blocks, unrolled=True).with_children((blocks.f,)).unrolled

    params = scanned.init(jax.random.key(0))
    t = jnp.asarray(np.random.default_rng(0).integers(0, C.vocab_size, (2, C.context)), jnp.int32)

    def run(model):
        def f(p):
            y, points = jax.vmap(model.trace, in_axes=(None, 0))(p, t)
            return jnp.sum(y**2), points["blocks"]["resid_post"]

        return jax.jit(jax.value_and_grad(f, has_aux=True))(params)

    (loss_s, resid_s), grads_s = run(scanned)
    (loss_u, resid_u), grads_u = run(unrolled)
    np.testing.assert_allclose(loss_u, loss_s, rtol=1e-6)
    np.testing.assert_allclose(resid_u, resid_s, atol=1e-6)  # points stacked over L as before
    for gu, gs in zip(jax.tree.leaves(grads_u), jax.tree.leaves(grads_s)):
        np.testing.assert_allclose(gu, gs, rtol=1e-5, atol=1e-7)


def test_repeat_defaults_to_the_scan():
    assert Repeat(build(C).find("blocks").f, 2).unrolled is False
