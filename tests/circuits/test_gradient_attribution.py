"""Gradient attribution against real activation patching.

Where the metric is linear in the point (the last layer of a model with no norm after
it) the first-order estimate is exact, so attribution patching and integrated gradients
both equal ``patch_sweep`` to float error. Where it is not, the gradient is checked as a
directional derivative of the patched model (a central difference, a second algorithm)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from circuit_models import H, L, make

from jaxformer.circuits import (
    attribution_patching,
    integrated_gradients,
    logit_difference,
    patch_sweep,
    patched,
    with_patch,
)

CLEAN = jnp.asarray([1, 5, 36, 0, 7, 1, 5, 36, 2], jnp.int32)
CORRUPT = CLEAN.at[2].set(11).at[6].set(3)
METRIC = logit_difference(36, 11)


@pytest.mark.parametrize("estimate", ["attribution", "ig"])
def test_linear_in_the_point_the_estimate_is_real_patching(estimate):
    model, params = make("pure")  # U ∘ (id + A_2) ∘ (id + A_1) ∘ P ∘ E: no norm after layer 1
    points = [f"blocks.{L - 1}.attn.z", f"blocks.{L - 1}.resid_mid"]
    if estimate == "attribution":
        got = attribution_patching(model, params, CLEAN, CORRUPT, METRIC, points)
    else:
        got = integrated_gradients(model, params, CLEAN, CORRUPT, METRIC, points, steps=4)
    base = METRIC(model(params, CORRUPT))
    heads = patch_sweep(model, params, CLEAN, CORRUPT, "z", METRIC)[L - 1] - base  # [H]
    stream = patch_sweep(model, params, CLEAN, CORRUPT, "resid_mid", METRIC)[L - 1] - base  # [T]
    assert got[points[0]].shape == (H, len(CLEAN)) and got[points[1]].shape == (len(CLEAN),)
    np.testing.assert_allclose(got[points[0]].sum(-1), heads, atol=2e-5)
    np.testing.assert_allclose(got[points[1]], stream, atol=2e-5)
    assert np.abs(heads).max() > 0.05  # the corruption matters


def test_away_from_linear_it_is_the_patched_models_directional_derivative():
    model, params = make("gpt2")
    points = ["blocks.0.resid_mid", "blocks.*.attn.z", "embed"]
    got = attribution_patching(model, params, CLEAN, CORRUPT, METRIC, points)
    assert set(got) == {"blocks.0.resid_mid", "embed", *(f"blocks.{l}.attn.z" for l in range(L))}
    _, clean = model.trace(params, CLEAN)
    m = patched(model, "blocks.resid_mid")
    value = clean["blocks"]["resid_mid"]
    T, eps = len(CLEAN), 1e-2

    @jax.jit
    def moved(t, e):  # corrupt, with position t of layer 0's stream moved e of the way
        mask = jnp.zeros((L, T, 1)).at[0, t].set(e)
        return METRIC(m(with_patch(params, "blocks.resid_mid", value, mask), CORRUPT))

    fd = [(moved(t, eps) - moved(t, -eps)) / (2 * eps) for t in range(T)]
    np.testing.assert_allclose(got["blocks.0.resid_mid"], fd, rtol=2e-2, atol=2e-3)
    assert np.abs(np.asarray(fd)).max() > 0.05


def test_integrated_gradients_approach_the_total_effect_of_the_inputs():
    """Summed over the input point, IG is the path integral of ∂m/∂e along the path
    (completeness): the whole change m(clean) − m(corrupt), to the midpoint rule's error."""
    model, params = make("llama")
    ig = integrated_gradients(model, params, CLEAN, CORRUPT, METRIC, ["embed"], steps=64)
    total = METRIC(model(params, CLEAN)) - METRIC(model(params, CORRUPT))
    np.testing.assert_allclose(float(ig["embed"].sum()), float(total), rtol=1e-2, atol=1e-3)
    one = attribution_patching(model, params, CLEAN, CORRUPT, METRIC, ["embed"])
    assert abs(float(one["embed"].sum()) - float(total)) > 1e-2  # first order is not enough


def test_integrated_gradients_on_each_points_own_path_sum_to_patching_the_point():
    """path="points": along x_r + α (x_c − x_r) of one point, the gradient integrates to the
    change of patching that whole point (every head, every position) into the corrupt run."""
    model, params = make("gpt2")
    names = [f"blocks.{l}.attn.z" for l in range(L)]
    ig = integrated_gradients(model, params, CLEAN, CORRUPT, METRIC, names, 64, path="points")
    _, clean = model.trace(params, CLEAN)
    m = patched(model, "blocks.attn", at="z")
    base = METRIC(model(params, CORRUPT))
    for l in range(L):
        mask = jnp.zeros((L, H, 1, 1)).at[l].set(1.0)
        p = with_patch(params, "blocks.attn", clean["blocks"]["attn.z"], mask)
        real = METRIC(m(p, CORRUPT)) - base
        np.testing.assert_allclose(float(ig[names[l]].sum()), float(real), rtol=1e-2, atol=1e-3)
    att = attribution_patching(model, params, CLEAN, CORRUPT, METRIC, names[:1])
    assert abs(float(att[names[0]].sum() - ig[names[0]].sum())) > 1e-3  # not the first order


def test_refusals():
    model, params = make("gpt2")
    with pytest.raises(ValueError, match="two single sequences of one length"):
        attribution_patching(model, params, CLEAN, CLEAN[:5], METRIC, ["embed"])
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        integrated_gradients(model, params, CLEAN, CORRUPT, METRIC, ["embed"], steps=0)
    with pytest.raises(ValueError, match="path must be one of"):
        integrated_gradients(model, params, CLEAN, CORRUPT, METRIC, ["embed"], path="edges")
    with pytest.raises(KeyError, match="no point matches 'blocks.0.resid'"):
        attribution_patching(model, params, CLEAN, CORRUPT, METRIC, ["blocks.0.resid"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        attribution_patching(model, params, CLEAN.at[0].set(99), CORRUPT, METRIC, ["embed"])
