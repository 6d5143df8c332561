"""Qwen2: LLaMA with biases on the queries, keys and values (none on the output).

U ∘ N_f ∘ B^L ∘ E,      B = (id + M ∘ N_2) ∘ (id + A ∘ N_1)
q^h = R(x W_Q^h + b_Q^h),  k^h = R(x W_K^g + b_K^g),  v^h = x W_V^g + b_V^g,  no b_O
M(x) = (silu(x W_gate) ⊙ x W_in) W_out;  GQA, tied or untied; a sliding window optional
(on every layer: ``use_sliding_window`` with ``max_window_layers=0`` in HF's terms).
"""

from __future__ import annotations

from ..config import Config
from ..family import FAMILIES, family
from . import llama
from .llama import llama_like


def check(c: Config) -> None:
    llama_like(c, "qwen2", bias=True, out_bias=False, qk_norm=None)


@family("qwen2", defaults=FAMILIES["llama"].defaults | dict(bias=True, out_bias=False), check=check)
def block(c: Config):
    """LLaMA's block; its attention reads ``c.bias`` and ``c.out_bias``."""
    return llama.block(c)


def _qwen2(V, T, L, d, H, G, m, tied):
    return Config("qwen2", V, T, L, d, H, G, d_mlp=m, norm_eps=1e-6, rope_theta=1e6, tied=tied)


PRESETS = {  # the config.json of Qwen/Qwen2-0.5B (494,032,768 parameters) and Qwen/Qwen2-7B
    # (7,615,616,512)
    "qwen2-0.5b": _qwen2(151936, 131072, 24, 896, 14, 2, 4864, tied=True),
    "qwen2-7b": _qwen2(152064, 131072, 28, 3584, 28, 4, 18944, tied=False),
}
