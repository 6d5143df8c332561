"""Composition scores against the numpy formula, and random heads against the null
baseline drawn from random matrices of the same shapes."""

import jax
import numpy as np
import pytest
from circuit_models import make

from jaxformer import Config, build
from jaxformer.circuits import composition_scores, null_composition_scores


def fro(M):
    return np.linalg.norm(M, "fro")


def test_scores_are_the_frobenius_ratio_for_every_pair():
    m, p = make("gpt2_attn")
    a = {k: np.asarray(v, np.float64) for k, v in p["blocks"]["attn"].items()}
    OV = lambda l, h: a["W_V"][l, h] @ a["W_O"][l, h]
    QK = lambda l, h: a["W_Q"][l, h] @ a["W_K"][l, h].T
    reader = {"Q": QK, "K": lambda l, h: QK(l, h).T, "V": OV}
    for kind, B in reader.items():
        C = np.asarray(composition_scores(m, p, kind))
        assert C.shape == (2, 4, 2, 4)
        for h1 in range(4):
            for h2 in range(4):
                W_A, W_B = OV(0, h1), B(1, h2)
                want = fro(W_A @ W_B) / (fro(W_A) * fro(W_B))
                np.testing.assert_allclose(C[0, h1, 1, h2], want, rtol=1e-4, err_msg=kind)
        assert np.isnan(C[1, :, 0]).all() and np.isnan(C[0, :, 0]).all()  # only l₁ < l₂
    with pytest.raises(ValueError, match="kind must be one of"):
        composition_scores(m, p, "O")


@pytest.mark.parametrize("kind", ["Q", "K", "V"])
def test_random_heads_match_the_null_baseline(kind):
    """Unrelated (random) heads compose only as much as random matrices of their shapes:
    about 1/√d, which is what the baseline is for."""
    d = 32
    c = Config(vocab_size=11, context=8, n_layers=3, d_model=d, n_heads=8, attn_only=True)
    m = build(c)
    C = np.asarray(composition_scores(m, m.init(jax.random.key(0)), kind))
    C = C[~np.isnan(C)]  # 3 layer pairs × 64 head pairs
    null = np.asarray(null_composition_scores(m, jax.random.key(1), kind, n=2000))
    assert null.shape == (2000,)
    assert abs(C.mean() - null.mean()) < 0.02  # the null's σ is ≈ 0.035; C averages 192
    assert abs(null.mean() * np.sqrt(d) - 1) < 0.1
    assert 0.5 < C.std() / null.std() < 2
