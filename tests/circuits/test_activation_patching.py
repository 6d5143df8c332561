"""Activation patching: the patched composite equals a forward pass with the activation
replaced by hand (numpy), and a sweep is one vmapped function over the masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from circuit_models import make

from jaxformer.circuits import Patched, logit_difference, patch_sweep, patched, with_patch

CLEAN = np.array([3, 1, 4, 1, 5, 9, 2, 6], np.int32)
CORRUPT = np.array([3, 1, 4, 7, 5, 9, 8, 6], np.int32)


def numpy_forward(p, tokens, attn_out=None, z=None):
    """gpt2 attention-only forward (float64) with layer l's attention output replaced at
    ``attn_out = (l, position, row)`` or head h's result at ``z = (l, h, z_Tk)``."""
    P = ref.f64(p)
    b = P["blocks"]
    x = P["embed"]["W_E"][tokens] + P["pos"]["W_pos"][: len(tokens)]
    for l in range(2):
        ln1, a = ref.layer(b["ln1"], l), ref.layer(b["attn"], l)
        h_in = ref.layer_norm(x, ln1["gamma"], ln1["beta"], 1e-5)
        heads = [ref.head(h_in, a, h) for h in range(4)]
        if z is not None and z[0] == l:
            heads[z[1]] = z[2] @ a["W_O"][z[1]]
        out = sum(heads) + a["b_O"]
        if attn_out is not None and attn_out[0] == l:
            out[attn_out[1]] = attn_out[2]
        x = x + out
    x = ref.layer_norm(x, P["ln_f"]["gamma"], P["ln_f"]["beta"], 1e-5)
    return x @ P["unembed"]["W_U"]


def test_patched_composites_equal_hand_patched_forward_passes():
    m, p = make("gpt2_attn")
    _, clean = jax.jit(m.trace)(p, jnp.asarray(CLEAN))
    v_attn, v_z = clean["blocks"]["attn"], clean["blocks"]["attn.z"]
    mask = np.zeros((2, 8, 1), np.float32)
    mask[1, 3] = 1  # layer 1, position 3
    y = patched(m, "blocks.attn")(with_patch(p, "blocks.attn", v_attn, mask), CORRUPT)
    want = numpy_forward(p, CORRUPT, attn_out=(1, 3, np.asarray(v_attn[1, 3], np.float64)))
    np.testing.assert_allclose(y, want, atol=1e-4)
    mask = np.zeros((2, 4, 1, 1), np.float32)
    mask[0, 2] = 1  # layer 0, head 2, every position
    y = patched(m, "blocks.attn", "z")(with_patch(p, "blocks.attn", v_z, mask), CORRUPT)
    want = numpy_forward(p, CORRUPT, z=(0, 2, np.asarray(v_z[0, 2], np.float64)))
    np.testing.assert_allclose(y, want, atol=1e-4)


def test_sweeps_patch_one_site_at_a_time():
    m, p = make("gpt2_attn")
    metric = logit_difference(CLEAN[-1], CORRUPT[-1])
    run = jax.jit(lambda t: metric(m(p, t)))
    S = np.asarray(patch_sweep(m, p, CLEAN, CORRUPT, "resid_pre", metric))
    assert S.shape == (2, 8)
    for t in range(8):  # the stream entering block 0 at t is token t's embedding
        mixed = CORRUPT.copy()
        mixed[t] = CLEAN[t]
        np.testing.assert_allclose(S[0, t], run(jnp.asarray(mixed)), atol=1e-4)
    Z = np.asarray(patch_sweep(m, p, CLEAN, CORRUPT, "z", metric))
    assert Z.shape == (2, 4)
    _, clean = jax.jit(m.trace)(p, jnp.asarray(CLEAN))
    z = np.asarray(clean["blocks"]["attn.z"][1, 3], np.float64)
    want = numpy_forward(p, CORRUPT, z=(1, 3, z))[-1]
    np.testing.assert_allclose(Z[1, 3], want[CLEAN[-1]] - want[CORRUPT[-1]], atol=1e-4)


def test_full_model_sites_and_errors():
    m, p = make("gpt2")
    metric = logit_difference(CLEAN[-1], CORRUPT[-1])
    S = np.asarray(patch_sweep(m, p, CLEAN, CORRUPT, "resid_post", metric))
    clean_diff = metric(m(p, jnp.asarray(CLEAN)))
    np.testing.assert_allclose(S[1, -1], clean_diff, atol=1e-4)  # the last stream at the end
    with pytest.raises(ValueError, match="patch point must be one of"):
        patch_sweep(m, p, CLEAN, CORRUPT, "ln1", metric)
    with pytest.raises(ValueError, match="two single sequences"):
        patch_sweep(m, p, CLEAN, CORRUPT[:5], "attn", metric)
    with pytest.raises(ValueError, match="patches attention heads"):
        Patched(m.find("blocks.mlp"), "z")
