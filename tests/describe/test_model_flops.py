"""Model FLOPs (what the math needs) beside hardware FLOPs (what is computed), counted by
hand: causal attention needs half the keys, a sliding window its window; dense attention
computes every key, blockwise the key blocks it visits (counted here from the T×T mask,
block by block, not from the closed form the layer uses). MFU is stated with the model's."""

import numpy as np
import pytest

from jaxformer import Config, build
from jaxformer.describe import chain, describe
from jaxformer.train.report import flops_per_token

BASE = dict(vocab_size=512, n_layers=2, d_model=64, n_heads=4)


def per_key(c: Config, window: bool) -> int:
    """FLOPs per (query, key) pair of a layer: score and mix, scale, softmax, mask(s)."""
    return 4 * c.n_heads * c.d_head + c.n_heads * (5 + 1 + window)


def visited_keys(T: int, B: int, window: int | None) -> float:
    """Keys per query that blockwise attention scores: the (query block, key block) pairs
    in which some key is visible to some query, from the mask itself."""
    i = np.arange(T)
    seen = i[None, :] <= i[:, None]
    if window is not None:
        seen &= i[None, :] > i[:, None] - window
    n = -(-T // B)
    pad = np.zeros((n * B, n * B), bool)
    pad[:T, :T] = seen
    blocks = pad.reshape(n, B, n, B).any(axis=(1, 3))
    return blocks.sum() * B * B / T


@pytest.mark.parametrize("window", [None, 16])
def test_dense_computes_every_key_and_the_math_needs_the_visible_ones(window):
    family = "mistral" if window else "gpt2"
    extra = dict(sliding_window=window) if window else {}
    c = Config(family=family, context=64, attention="dense", **BASE, **extra)
    T = 64
    ch = chain(build(c), T)
    seen = np.mean(np.minimum(np.arange(T) + 1, window or T))  # keys a query sees, by count
    want = c.n_layers * round(per_key(c, bool(window)) * (T - seen))
    assert ch.flops - ch.model_flops == want
    assert f"its math needs {ch.model_flops:,}" in describe(build(c), T=T)


@pytest.mark.parametrize("window", [None, 300])
def test_blockwise_computes_the_blocks_it_visits(window):
    family = "mistral" if window else "gpt2"
    extra = dict(sliding_window=window) if window else {}
    T = 2048
    c = Config(family=family, context=T, attention="blockwise", **BASE, **extra)
    d = Config(family=family, context=T, attention="dense", **BASE, **extra)
    blockwise, dense = chain(build(c), T), chain(build(d), T)
    skipped = T - visited_keys(T, 128, window)
    assert dense.flops - blockwise.flops == c.n_layers * round(per_key(c, bool(window)) * skipped)
    assert blockwise.model_flops == dense.model_flops  # the math is the kernel's business
    assert blockwise.model_flops < blockwise.flops < 0.9 * dense.flops


def test_mfu_counts_the_model_flops():
    c = Config(family="gpt2", context=256, **BASE)
    model = build(c)
    assert flops_per_token(model, 256) == 3 * chain(model, 256).model_flops
    assert chain(model, 256).model_flops < chain(model, 256).flops
