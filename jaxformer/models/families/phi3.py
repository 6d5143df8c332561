"""Phi-3: LLaMA with RoPE on a fraction of each head and an optional sliding window.

U ∘ N_f ∘ B^L ∘ E,      B = (id + M ∘ N_2) ∘ (id + A ∘ N_1)    (RoPE and the window inside A)
q^h = R_r(x W_Q^h),  k^h = R_r(x W_K^g(h)):  RoPE on the first r = ⌊rotary_fraction · k⌋
coordinates of each head (HF's ``partial_rotary_factor``), the rest passed through;
A^h sees the keys j with i − w < j ≤ i (``sliding_window`` w; None: every j ≤ i)
M(x) = (silu(x W_gate) ⊙ x W_in) W_out;  RMSNorm; no biases; GQA; untied.

The checkpoint fuses W_Q, W_K, W_V into one ``qkv_proj`` and W_gate, W_in into one
``gate_up_proj``: a layout of the tensors, not of the function (``interop/families/phi3.py``
splits them on import and fuses them on export).
"""

from __future__ import annotations

from ..config import Config
from ..family import FAMILIES, family
from . import llama
from .llama import llama_like


def check(c: Config) -> None:
    if c.rotary_dim % 2:
        raise ValueError(f"Config: RoPE needs an even rotary_dim, got {c.rotary_dim}")
    llama_like(c, "phi3", rotary_fraction=c.rotary_fraction, bias=False, out_bias=False,
               qk_norm=None)  # fmt: skip


@family("phi3", defaults=FAMILIES["llama"].defaults | dict(norm_eps=1e-5), check=check)
def block(c: Config):
    """LLaMA's block; its attention reads ``c.rotary_dim`` and ``c.sliding_window``."""
    return llama.block(c)


PRESETS = {  # microsoft/Phi-3-mini-4k-instruct's config.json: 3,821,079,552 parameters
    "phi-3-mini": Config(
        "phi3", 32064, 4096, 32, 3072, 32, 32, d_mlp=8192, norm_eps=1e-5, sliding_window=2047,
    ),
}  # fmt: skip
