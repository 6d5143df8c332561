"""Mistral: LLaMA with a sliding window, the query at i seeing the keys j with i − w < j ≤ i.

U ∘ N_f ∘ B^L ∘ E,      B = (id + M ∘ N_2) ∘ (id + A ∘ N_1)    (RoPE and the window inside A)
A^h = softmax(mask_w(q^h k^hᵀ / √k)),  mask_w(s)_ij = s_ij if i − w < j ≤ i, else −∞
M(x) = (silu(x W_gate) ⊙ x W_in) W_out;  no biases, GQA.  ``sliding_window=None``: every
j ≤ i (Mistral 7B v0.2 on).
"""

from __future__ import annotations

from ..config import Config
from ..family import FAMILIES, family
from . import llama
from .llama import llama_like


def check(c: Config) -> None:
    llama_like(c, "mistral", bias=False, out_bias=False, qk_norm=None)


@family("mistral", defaults=FAMILIES["llama"].defaults, check=check)
def block(c: Config):
    """LLaMA's block; its attention reads ``c.sliding_window``."""
    return llama.block(c)


PRESETS = {  # Mistral 7B v0.1 (mistralai/Mistral-7B-v0.1's config.json): 7,241,732,096
    "mistral-7b": Config(
        family="mistral", vocab_size=32000, context=32768, n_layers=32, d_model=4096,
        n_heads=32, n_kv_heads=8, d_mlp=14336, norm_eps=1e-5, sliding_window=4096,
    ),
}  # fmt: skip
