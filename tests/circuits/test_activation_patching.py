"""Activation patching: the patched composite equals a forward pass with the activation
replaced by hand (numpy, ``reference.forward``), and every cell of every sweep is that
forward pass with one clean activation put in place of the corrupt one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from circuit_models import V, config, make

from jaxformer.circuits import Patched, logit_difference, patch_sweep, patched, with_patch

CLEAN = np.array([3, 1, 4, 1, 5, 9, 2, 6], np.int32)
CORRUPT = np.array([3, 1, 4, 7, 5, 9, 8, 6], np.int32)
STREAM = ["resid_pre", "attn", "resid_mid", "mlp", "resid_post"]  # [L, T] sweeps; "z": [L, H]
# A metric that reads every logit at every position, so that every cell of a sweep moves it
# (the logit difference at the last position is blind to the last block's MLP elsewhere).
W = np.random.default_rng(0).standard_normal((len(CLEAN), V))
METRIC = lambda logits: jnp.sum(logits * W)


def replaced(site, l, cell, value):
    """A ``reference.forward`` patch: ``site`` of layer l with ``cell`` (a position, or for
    "z" a head) set to ``value``; every other site as computed."""

    def patch(s, i, x):
        if (s, i) != (site, l):
            return x
        x = x.copy()
        x[cell] = value
        return x

    return patch


def numpy_sweep(kind, site):
    """What patch_sweep(…, site, METRIC) must return, cell by cell in numpy."""
    _, p = make(kind)
    c = config(kind)
    clean = {}
    ref.forward(p, CLEAN, c, points=clean)
    v = clean["blocks"]["attn.z" if site == "z" else site]  # [L, T, d] or [L, H, T, k]
    out = np.empty(v.shape[:2])
    for l, cell in np.ndindex(out.shape):
        y = ref.forward(p, CORRUPT, c, patch=replaced(site, l, cell, v[l, cell]))
        out[l, cell] = (y * W).sum()
    return out


def test_patched_composites_equal_hand_patched_forward_passes():
    m, p = make("gpt2_attn")
    c = config("gpt2_attn")
    _, clean = jax.jit(m.trace)(p, jnp.asarray(CLEAN))
    v_attn, v_z = clean["blocks"]["attn"], clean["blocks"]["attn.z"]
    mask = np.zeros((2, 8, 1), np.float32)
    mask[1, 3] = 1  # layer 1, position 3
    y = patched(m, "blocks.attn")(with_patch(p, "blocks.attn", v_attn, mask), CORRUPT)
    want = ref.forward(p, CORRUPT, c, patch=replaced("attn", 1, 3, np.asarray(v_attn[1, 3])))
    np.testing.assert_allclose(y, want, atol=1e-4)
    mask = np.zeros((2, 4, 1, 1), np.float32)
    mask[0, 2] = 1  # layer 0, head 2, every position
    y = patched(m, "blocks.attn", "z")(with_patch(p, "blocks.attn", v_z, mask), CORRUPT)
    want = ref.forward(p, CORRUPT, c, patch=replaced("z", 0, 2, np.asarray(v_z[0, 2])))
    np.testing.assert_allclose(y, want, atol=1e-4)


SWEEPS = [("gpt2_attn", s) for s in ("resid_pre", "attn", "resid_mid", "z")]
SWEEPS += [("gpt2", s) for s in (*STREAM, "z")]


@pytest.mark.parametrize("kind,site", SWEEPS, ids=[f"{k}-{s}" for k, s in SWEEPS])
def test_every_cell_of_every_sweep_is_the_hand_patched_forward_pass(kind, site):
    m, p = make(kind)
    S = np.asarray(patch_sweep(m, p, CLEAN, CORRUPT, site, METRIC))
    assert S.shape == ((2, 4) if site == "z" else (2, 8))
    want = numpy_sweep(kind, site)
    np.testing.assert_allclose(S, want, atol=1e-3, rtol=1e-5)
    assert np.ptp(want) > 1  # the metric sees the patches (cells differ by units of logits)


def test_the_stream_entering_block_0_is_the_embedding():
    m, p = make("gpt2_attn")
    run = jax.jit(lambda t: METRIC(m(p, t)))
    S = np.asarray(patch_sweep(m, p, CLEAN, CORRUPT, "resid_pre", METRIC))
    for t in range(8):  # patching position t there is running with token t clean
        mixed = CORRUPT.copy()
        mixed[t] = CLEAN[t]
        np.testing.assert_allclose(S[0, t], run(jnp.asarray(mixed)), atol=1e-3, rtol=1e-5)


def test_full_model_sites_and_errors():
    m, p = make("gpt2")
    metric = logit_difference(CLEAN[3], CORRUPT[3])  # two tokens (the last ones are equal)
    S = np.asarray(patch_sweep(m, p, CLEAN, CORRUPT, "resid_post", metric))
    clean_diff = metric(m(p, jnp.asarray(CLEAN)))
    assert abs(clean_diff - metric(m(p, jnp.asarray(CORRUPT)))) > 0.1
    np.testing.assert_allclose(S[1, -1], clean_diff, atol=1e-4)  # the last stream at the end
    with pytest.raises(ValueError, match="patch point must be one of"):
        patch_sweep(m, p, CLEAN, CORRUPT, "ln1", metric)
    with pytest.raises(ValueError, match="patch point must be one of"):
        patch_sweep(*make("gpt2_attn"), CLEAN, CORRUPT, "mlp", metric)  # no MLP there
    with pytest.raises(ValueError, match="two single sequences"):
        patch_sweep(m, p, CLEAN, CORRUPT[:5], "attn", metric)
    with pytest.raises(ValueError, match="patches attention heads"):
        Patched(m.find("blocks.mlp"), "z")
