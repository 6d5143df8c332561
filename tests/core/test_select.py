"""Selective traces: ``trace(params, x, points=...)`` keeps the named points alone, equal
to the full trace's, and computes nothing past the last one; ``points()`` names exactly
what the full trace records, for every family (stacks, patterns of kinds, parallel
blocks, mixtures of experts)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformer import Config, build
from jaxformer.models.family import FAMILIES

TOKENS = jnp.asarray([1, 5, 36, 0, 7, 1, 5, 36, 2], jnp.int32)


def tiny(family, **kw):
    base = dict(vocab_size=37, context=16, n_layers=3, d_model=32, n_heads=4, family=family)
    m = build(Config(**(base | kw)))
    return m, m.init(jax.random.key(0))


def flat(points: dict, stacked: set[str]) -> dict:
    """The full trace's points by flat name: a repeat's stacked points one per layer."""
    out = {}
    for k, v in points.items():
        if isinstance(v, dict) and k in stacked:
            for key, a in v.items():
                out |= {f"{k}.{l}.{key}": a[l] for l in range(a.shape[0])}
        elif isinstance(v, dict):
            out |= {f"{k}.{n}": a for n, a in flat(v, stacked).items()}
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_points_name_the_full_trace_and_a_selection_equals_it(family):
    m, p = tiny(family)
    y, full = jax.jit(m.trace)(p, TOKENS)
    full = flat(full, {"blocks"})
    assert sorted(m.points()) == sorted(full)
    rng = np.random.default_rng(len(family))
    names = list(full)
    for pick, stop in (
        (["blocks.*.attn.z", names[0]], True),
        ([*rng.choice(names, 4, replace=False), "blocks.1.attn"], False),
    ):
        trace = jax.jit(lambda p, x, pick=pick, stop=stop: m.trace(p, x, points=pick, stop=stop))
        out, got = trace(p, TOKENS)
        assert set(got) == m.resolve(pick)
        for n, v in got.items():
            np.testing.assert_allclose(v, full[n], rtol=1e-5, atol=1e-6, err_msg=n)
        if not stop:
            np.testing.assert_allclose(out, y, rtol=1e-5, atol=1e-6)


def test_a_selection_stops_after_its_last_point():
    m, p = tiny("gpt2")
    # the last layer's MLP and the unembedding are never computed
    early = jax.jit(lambda p, x: m.trace(p, x, points=["blocks.1.resid_mid"]))
    out, got = early(p, TOKENS)
    assert out is None and list(got) == ["blocks.1.resid_mid"]
    selective = jax.make_jaxpr(lambda p, x: m.trace(p, x, points=["blocks.1.resid_mid"]))
    full = str(jax.make_jaxpr(m)(p, TOKENS))
    assert "f32[9,37]" not in str(selective(p, TOKENS)) and "f32[9,37]" in full  # no logits
    # asked to go on, it returns the output too
    out, _ = m.trace(p, TOKENS, points=["blocks.1.resid_mid"], stop=False)
    np.testing.assert_allclose(out, m(p, TOKENS), rtol=1e-5, atol=1e-6)


def test_one_point_keeps_no_other_layer_and_its_peak_is_the_plain_passs():
    """XLA's own accounting of the compiled functions (bytes of temporaries and outputs):
    a trace of one point is within 1.2× the plain forward pass; a full trace is not."""
    m, p = tiny("gpt2", n_layers=6, d_model=64, vocab_size=256, context=256)
    x = jnp.zeros(256, jnp.int32)

    def peak(f):
        a = jax.jit(f).lower(p, x).compile().memory_analysis()
        return a.temp_size_in_bytes + a.output_size_in_bytes

    plain = peak(m)
    one = peak(lambda p, x: m.trace(p, x, points=["blocks.4.resid_post"])[1])
    all_layers = peak(lambda p, x: m.trace(p, x, points=["blocks.*.resid_post"])[1])
    full = peak(lambda p, x: m.trace(p, x)[1])
    assert one <= 1.2 * plain, (one, plain)
    assert all_layers < full / 4, (all_layers, full)
    assert full > 2 * plain


def test_unknown_points_are_refused_with_their_names():
    m, _ = tiny("gpt2")
    with pytest.raises(KeyError, match=r"no point matches 'blocks.\*.resid_pst'.*resid"):
        m.resolve("blocks.*.resid_pst")
    with pytest.raises(KeyError, match="no point matches 'blocks.9.attn'"):
        m.resolve(["blocks.0.attn", "blocks.9.attn"])
