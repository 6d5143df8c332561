"""describe's FLOPs per token against XLA's own count (``cost_analysis``) of the forward pass.

XLA's HloCostAnalysis counts a ``lax.scan`` body once, whatever the trip count, so the
reference is taken on the same model with its blocks unrolled (``Repeat.unroll``).
XLA counts 2 per multiply–add and 1 per elementwise operation, transcendentals apart:
the convention ``jaxformer.core.term`` states. Attention is computed densely here: the
terms count every T×T score, and XLA cannot count into blockwise attention's while loops.
"""

import jax
import jax.numpy as jnp
import pytest

from jaxformer import Config, build
from jaxformer.describe import chain
from jaxformer.models.presets import PRESETS

TOLERANCE = 0.01  # the issue asks for 5%; the counts agree to ~0.05%


def dense(cfg: Config):
    return build(cfg.replace(attention="dense"))


def xla_flops_per_token(model, T: int, compile: bool) -> float:
    flat = model.replace("blocks", model.find("blocks").unroll())
    params = jax.eval_shape(flat.init, jax.random.key(0))
    lowered = jax.jit(flat).lower(params, jax.ShapeDtypeStruct((T,), jnp.int32))
    return (lowered.compile() if compile else lowered).cost_analysis()["flops"] / T


MODERATE = {  # d=256, L=4, T=256: compiled, as the issue asks
    "gpt2": Config(family="gpt2", vocab_size=4096, context=256, n_layers=4, d_model=256,
                   n_heads=4),
    "llama": Config(family="llama", vocab_size=4096, context=256, n_layers=4, d_model=256,
                    n_heads=4, n_kv_heads=2),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MODERATE))
def test_compiled_forward_agrees(name):
    model = dense(MODERATE[name])
    ours = chain(model, 256).flops
    assert ours == pytest.approx(xla_flops_per_token(model, 256, compile=True), rel=TOLERANCE)


VARIANTS = {  # lowered only (XLA's count of the HLO before optimisation; no compile)
    "gpt2-small": PRESETS["gpt2-small"],
    "llama-tiny": PRESETS["llama-tiny"],
    "toy-attn-only": PRESETS["toy-attn-only"].replace(context=512),
    "relu-sinusoidal": Config(vocab_size=512, context=64, n_layers=2, d_model=64, n_heads=4,
                              activation="relu", positional="sinusoidal", bias=False, tied=False),
    "silu-short-T": Config(vocab_size=512, context=128, n_layers=2, d_model=64, n_heads=2,
                           activation="silu"),
    # gelu_tanh: XLA lowers erf (exact GELU) to a polynomial of ~60 FLOPs, which describe
    # counts as a transcendental (0), as it counts exp and tanh
    "neox-parallel-partial-rotary": Config(family="gpt_neox", vocab_size=512, context=64,
                                           n_layers=2, d_model=64, n_heads=4,
                                           activation="gelu_tanh"),
    "qwen2-qkv-bias-window": Config(family="qwen2", vocab_size=512, context=64, n_layers=2,
                                    d_model=64, n_heads=4, n_kv_heads=2, sliding_window=16),
    "qwen3-qk-norm": Config(family="qwen3", vocab_size=512, context=64, n_layers=2,
                            d_model=64, n_heads=4, n_kv_heads=1, d_head=24),
}  # fmt: skip


@pytest.mark.parametrize("name", list(VARIANTS))
def test_lowered_forward_agrees(name):
    cfg = VARIANTS[name]
    model = dense(cfg)
    T = cfg.context if name != "silu-short-T" else 16  # a T below the context
    ours = chain(model, T).flops
    assert ours == pytest.approx(xla_flops_per_token(model, T, compile=False), rel=TOLERANCE)


def test_flops_depend_on_T_through_attention_only():
    cfg = MODERATE["gpt2"]
    c1, c2 = chain(dense(cfg), 128), chain(dense(cfg), 256)
    H, k, L = cfg.n_heads, cfg.d_head, cfg.n_layers
    # per layer and token: 4·H·T·k for scores and mix, 6·H·T elementwise (scale, softmax, mask)
    assert c2.flops - c1.flops == L * (4 * H * k + 6 * H) * 128
