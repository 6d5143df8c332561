"""Small random models of both families, shared by the circuits tests (built once per
worker process: ``make`` is cached)."""

import functools

import jax
import numpy as np

from jaxformer import Config, build
from jaxformer.core import compose, repeat, residual
from jaxformer.layers import Attention, Embedding, LearnedPositions, Unembedding

V, CTX, L, D, H = 37, 16, 2, 16, 4
TOKENS = np.array([1, 5, 36, 0, 7, 1, 5, 36, 2], np.int32)


def noisy(params, seed=3, scale=0.2):
    """Perturb every leaf so gains ≠ 1 and biases ≠ 0 are exercised."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: x + scale * rng.standard_normal(x.shape, np.float32), params)


def pure_attention_only():
    """The paper's toy model: U ∘ (id + A_2) ∘ (id + A_1) ∘ P ∘ E, no norms, no biases."""
    block = residual(Attention(D, H, D // H, std=0.3), name="resid_mid")
    return compose(
        Unembedding(D, V, std=0.3),
        repeat(block, L),
        LearnedPositions(CTX, D, std=0.3),
        Embedding(V, D, CTX, std=0.3),
        name="attn_only",
    )


CONFIGS = {
    "gpt2": dict(family="gpt2"),
    "gpt2_attn": dict(family="gpt2", attn_only=True, tied=False),
    "gpt2_gqa": dict(family="gpt2", n_kv_heads=2),  # grouped query heads with value biases
    "llama": dict(family="llama", n_kv_heads=2, d_mlp=24, rope_theta=500.0),
    "llama_attn": dict(family="llama", attn_only=True, tied=True, n_kv_heads=2),
}


def config(kind) -> Config:
    """The config of a named kind ("pure" has none: ``pure_attention_only``)."""
    base = dict(vocab_size=V, context=CTX, n_layers=L, d_model=D, n_heads=H, init_std=0.3)
    return Config(**(base | CONFIGS[kind]))


@functools.cache
def make(kind):
    """(model, params) of a named kind, params perturbed."""
    m = pure_attention_only() if kind == "pure" else build(config(kind))
    return m, noisy(m.init(jax.random.key(0)))
