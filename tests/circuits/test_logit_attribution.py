"""Direct logit attribution is exact under the frozen final norm and is the path expansion
grouped by each path's last writer; the logit lens reads each stage through the real
final norm."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from circuit_models import TOKENS, make

from jaxformer.circuits import direct_logit_attribution, group, logit_lens, logit_terms, writes


def last_writer(label):
    """ "L1H2∘L0H3∘embed" → "L1H2";  "L0H1.b_V" → "L0H1" (b_V reaches the stream via z)."""
    return re.sub(r"\.b_V$", "", label.split("∘")[0])


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_attribution_sums_to_the_logits_and_groups_the_paths(kind):
    m, p = make(kind)
    y, points = jax.jit(m.trace)(p, jnp.asarray(TOKENS))
    dla = direct_logit_attribution(m, p, TOKENS, points=points)
    heads = [f"L{l}H{h}" for l in range(2) for h in range(4)]
    assert set(heads) | {"embed", "L0.mlp", "L1.mlp"} <= set(dla)
    np.testing.assert_allclose(sum(dla.values()), y, atol=2e-4)
    by_writer = group(logit_terms(m, p, TOKENS, points=points), last_writer)
    assert sorted(by_writer) == sorted(dla)
    for label, x in dla.items():
        np.testing.assert_allclose(x, by_writer[label], atol=2e-4, err_msg=label)
    w = writes(m, p, TOKENS, points=points)
    last = "resid_post" if "resid_post" in points["blocks"] else "resid_mid"
    np.testing.assert_allclose(sum(w.values()), points["blocks"][last][-1], atol=1e-5)


def test_logit_lens_reads_each_stage_through_the_final_norm():
    m, p = make("gpt2")
    y, points = jax.jit(m.trace)(p, jnp.asarray(TOKENS))
    lens = np.asarray(logit_lens(m, p, TOKENS, points=points))
    assert lens.shape == (3, len(TOKENS), 37)
    np.testing.assert_allclose(lens[-1], y, atol=1e-5)  # the last stage is the model's output
    P = ref.f64(p)
    x0 = P["embed"]["W_E"][TOKENS] + P["pos"]["W_pos"][: len(TOKENS)]
    want = ref.layer_norm(x0, P["ln_f"]["gamma"], P["ln_f"]["beta"], 1e-5) @ P["embed"]["W_E"].T
    np.testing.assert_allclose(lens[0], want, atol=1e-4)


def test_inputs_are_validated_before_tracing():
    m, p = make("gpt2")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        direct_logit_attribution(m, p, [1, 2, 99])
    with pytest.raises(ValueError, match=r"shape \[T\]"):
        logit_lens(m, p, [[1, 2, 3]])
