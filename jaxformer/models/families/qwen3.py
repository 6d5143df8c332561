"""Qwen3: LLaMA with an RMSNorm on each head's query and key (before RoPE), k ≠ d/H.

U ∘ N_f ∘ B^L ∘ E,      B = (id + M ∘ N_2) ∘ (id + A ∘ N_1)
q^h = R(N_Q(x W_Q^h)),  k^h = R(N_K(x W_K^g)),  N(u) = γ ⊙ u / √(mean(u²) + ε) over k
M(x) = (silu(x W_gate) ⊙ x W_in) W_out;  GQA; biases on q, k, v and o, or on none;
a sliding window optional (on every layer, as for Qwen2).
"""

from __future__ import annotations

from ..config import Config
from ..family import FAMILIES, family
from . import llama
from .llama import llama_like


def check(c: Config) -> None:
    llama_like(c, "qwen3", qk_norm="head", out_bias=c.bias)


@family("qwen3", defaults=FAMILIES["llama"].defaults | dict(qk_norm="head"), check=check)
def block(c: Config):
    """LLaMA's block; its attention reads ``c.qk_norm``."""
    return llama.block(c)


def _qwen3(L, d, H, G, m, tied):
    return Config(
        "qwen3", 151936, 40960, L, d, H, G, d_head=128, d_mlp=m, norm_eps=1e-6,
        rope_theta=1e6, tied=tied,
    )  # fmt: skip


PRESETS = {  # the config.json of Qwen/Qwen3-0.6B (596,049,920 parameters) and Qwen/Qwen3-8B
    # (8,190,735,360)
    "qwen3-0.6b": _qwen3(28, 1024, 16, 8, 3072, tied=True),
    "qwen3-8b": _qwen3(36, 4096, 32, 8, 12288, tied=False),
}
