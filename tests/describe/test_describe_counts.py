"""describe's parameter counts: equal to the parameter pytree, and to the published sizes."""

import math

import jax
import pytest

from jaxformer import Config, build, compose, repeat, residual, scope, tie, tokenwise
from jaxformer.core import parallel
from jaxformer.describe import chain
from jaxformer.layers import MLP, Attention, Embedding, LayerNorm, RMSNorm, Unembedding
from jaxformer.models.presets import PRESETS

# Independent references: the sizes the model cards and papers report.
PUBLISHED = {
    "gpt2-small": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "llama2-7b": 6_738_415_616,
    "pythia-160m": 162_322_944,  # the Pythia paper (Biderman et al. 2023), table 1
    "pythia-410m": 405_334_016,
    "mistral-7b": 7_241_732_096,  # the Hugging Face checkpoints, their parameter totals
    "qwen2-0.5b": 494_032_768,
    "qwen2-7b": 7_615_616_512,
    "qwen3-0.6b": 596_049_920,
    "qwen3-8b": 8_190_735_360,
    "olmo-2-1b": 1_484_916_736,  # allenai/OLMo-2-0425-1B
    "phi-3-mini": 3_821_079_552,  # microsoft/Phi-3-mini-4k-instruct
    "gemma-2b": 2_506_172_416,  # google/gemma-2b, …: the checkpoints' parameter totals
    "gemma-7b": 8_537_680_896,
    "gemma-2-2b": 2_614_341_888,
    "gemma-2-9b": 9_241_705_984,
    "gemma-2-27b": 27_227_128_320,
    "gemma-3-1b": 999_885_952,
    "mixtral-8x7b": 46_702_792_704,  # mistralai/Mixtral-8x7B-v0.1
    "qwen3-30b-a3b": 30_532_122_624,  # Qwen/Qwen3-30B-A3B
}


def closed_form(c) -> int:
    """The parameter count from the config alone (the layers' shapes, written out):
    gpt2  V·d (+ d·V untied) + T·d + L·(2d + 4d² + 4d  [+ 2d + 2dm + m + d]) + 2d
    llama V·d (+ d·V untied) + L·(d + 2d·Hk + 2d·Gk  [+ d + 3dm]) + d
    (the brackets: the MLP and its norm, absent when attention-only)."""
    V, T, L, d, m = c.vocab_size, c.context, c.n_layers, c.d_model, c.d_mlp
    Hk, Gk = c.n_heads * c.d_head, c.n_kv_heads * c.d_head
    embed = V * d * (1 if c.tied else 2)
    if c.family == "gpt2":
        attn = 2 * d + 2 * d * Hk + 2 * d * Gk + (2 * Hk + Gk + d) * c.bias  # ln1, W, b
        mlp = 0 if c.attn_only else 2 * d + 2 * d * m + (m + d) * c.bias
        return embed + T * d + L * (attn + mlp) + 2 * d
    attn = d + 2 * d * Hk + 2 * d * Gk
    mlp = 0 if c.attn_only else d + 3 * d * m
    return embed + L * (attn + mlp) + d


# The presets without a published size, by hand from closed_form.
CLOSED_FORM = {
    # 2048·256 + 256·256 + 4·(2·256 + 4·256² + 4·256 + 2·256 + 2·256·1024 + 1024 + 256) + 2·256
    "shakespeare-small": 3_749_376,
    # 50257·512 + 2048·512 + 2·(2·512 + 4·512² + 4·512) + 2·512
    "toy-attn-only": 28_884_480,
    # 2·32000·256 + 4·(256 + 2·256·256 + 2·256·64 + 256 + 3·256·768) + 256
    "llama-tiny": 19_400_960,
    # 32000·256 + 4·(2·4·256·64 + 2·1·256·64 + 2·256 + 3·256·1024) + 256  (tied, MQA)
    "gemma-tiny": 11_995_392,
    # 32000·256 + 4·(2·4·256·64 + 2·2·256·64 + 4·256 + 3·256·1024) + 256  (four norms)
    "gemma2-tiny": 12_128_512,
    # 32000·256 + 6·(2·4·256·64 + 2·1·256·64 + 2·64 + 4·256 + 3·256·1024) + 256  (γ_Q, γ_K)
    "gemma3-tiny": 13_900_800,
    # 2·2048·128 + 2·(2·128 + 2·128·128 + 2·128·64 + 128·4 + 4·3·128·256) + 128  (4 experts)
    "mixtral-tiny": 1_410_688,
}


def pytree_size(model) -> int:
    """The number of parameters ``model.init`` makes, without materialising them."""
    return sum(x.size for x in jax.tree.leaves(jax.eval_shape(model.init, jax.random.key(0))))


def leaf_rows(c):
    """Rows without members, each with the product of the repeats above it."""
    copies, out = {}, []
    for r in c.rows:
        parent = r.number.rpartition(".")[0]
        copies[r.number] = copies.get(parent, 1) * r.copies
        if not r.map.children():
            out.append((r, copies.get(parent, 1)))
    return out


def test_every_preset_has_an_independent_count():
    assert set(PUBLISHED) | set(CLOSED_FORM) == set(PRESETS)  # a new preset brings its count
    for name, n in (PUBLISHED | CLOSED_FORM).items():  # the formula meets the papers too
        if PRESETS[name].family in ("gpt2", "llama"):  # closed_form's two families
            assert closed_form(PRESETS[name]) == n, name


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_counts_its_pytree(name):
    model = build(PRESETS[name])
    c = chain(model)
    assert c.count == pytree_size(model)
    # the rows add up to the total: each leaf once per copy, tied parameters once
    assert sum(r.count * n for r, n in leaf_rows(c)) == c.count
    assert c.count == (PUBLISHED | CLOSED_FORM)[name]  # what the model cards or the shapes say


def test_gpt2_small_rows():
    c = chain(build(PRESETS["gpt2-small"]))
    rows = {r.name: r for r in c.rows}
    assert c.count == 124_439_808 and c.T == 1024
    assert rows["blocks"].copies == 12 and rows["blocks"].count == 12 * 7_087_872
    attn = {p.name: p.shape for p in rows["attn"].params}
    assert attn["W_Q"] == (12, 768, 64) and attn["W_O"] == (12, 64, 768)
    (W_U,) = rows["unembed"].params
    assert W_U.tied == "W_U = W_Eᵀ" and W_U.size == 0  # counted once, under embed
    assert rows["embed"].count == 50257 * 768
    assert [t.text[0] for t in c.ties] == ["W_U = W_Eᵀ"]


def test_llama_gqa_shapes():
    cfg = Config(family="llama", vocab_size=300, context=32, n_layers=2, d_model=64, n_heads=8,
                 n_kv_heads=2)  # fmt: skip
    c = chain(build(cfg))
    attn = {p.name: p.shape for p in next(r for r in c.rows if r.name == "attn").params}
    assert attn == {"W_Q": (8, 64, 8), "W_K": (2, 64, 8), "W_V": (2, 64, 8), "W_O": (8, 8, 64)}
    assert not c.ties and c.count == pytree_size(build(cfg))


def hand_built():
    """Every combinator: parallel, scope, a tokenwise composite, a tie inside a composite."""
    d, V, T = 16, 40, 8
    ln = lambda n: tokenwise(LayerNorm(d, name=n))
    heads = parallel(Attention(d, 2, 8, name="a1"), Attention(d, 4, 4, name="a2"))
    mlp = tokenwise(compose(MLP(d, 32, name="up"), RMSNorm(d, name="n")), "T")
    block = compose(residual(mlp), residual(compose(heads, ln("ln1"))), name="blk")
    body = scope(repeat(block, 3, name="layers"), "body")
    inner = tie(compose(Unembedding(d, V), body, Embedding(V, d, T)),
                dst=("unembed", "W_U"), src=("embed", "W_E"))  # fmt: skip
    return compose(inner, name="model")


def test_hand_built_composite():
    model = hand_built()
    c = chain(model, T=8)
    assert c.count == pytree_size(model)
    names = [r.name for r in c.rows]
    assert names.index("embed") < names.index("body") < names.index("unembed")  # data flow
    assert {"a1", "a2", "up", "n", "ln1", "a1+a2"} <= set(names)
    # the tokenwise composite keeps its members; the tokenwise layer ln1 is one row
    up = next(r for r in c.rows if r.name == "up")
    assert up.term.text[0].startswith("x ↦ φ(") and up.domain.shape == (16,)
    assert next(r for r in c.rows if r.name == "ln1").term.text[0].startswith("x_t ↦")


def test_leaf_alone():
    attn = Attention(32, 4, 8)
    c = chain(attn, T=16)
    assert [r.name for r in c.rows] == ["attn"]
    assert c.count == pytree_size(attn) == 4 * 32 * 32
    assert math.prod(c.rows[0].params[0].shape) == 4 * 32 * 8
