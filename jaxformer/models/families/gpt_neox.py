"""GPT-NeoX / Pythia: parallel attention and MLP, partial RoPE, LayerNorm, biases, untied.

    U ∘ N_f ∘ B^L ∘ E,      B(x) = x + A(N_1 x) + M(N_2 x)         (parallel_residual)
                            B = (id + M ∘ N_2) ∘ (id + A ∘ N_1)     (parallel_residual=False)
    A: RoPE (rotate-half) on the first ⌊rotary_fraction · k⌋ coordinates of each q^h, k^h
    M(x) = φ(x W_in + b_in) W_out + b_out,  m = 4d by default,  φ = exact GELU in Pythia

``bias`` is HF's ``attention_bias``: b_Q, b_K, b_V and b_O together; the MLP always has
b_in and b_out (HF's ``dense_h_to_4h`` and ``dense_4h_to_h`` always do). The defaults are
Pythia's: exact GELU, the parallel residual, RoPE on a quarter of each head.
"""

from __future__ import annotations

import dataclasses

from .. import parts
from ..config import Config
from ..family import family


def check(c: Config) -> None:
    def refuse(field: str, why: str):
        raise ValueError(
            f"Config.{field}={getattr(c, field)!r} is not available for family 'gpt_neox': {why}"
        )

    if c.positional != "rope":
        refuse("positional", "GPT-NeoX has RoPE; choose 'rope'")
    if c.norm != "layernorm":
        refuse("norm", "GPT-NeoX normalises with LayerNorm")
    if c.qk_norm is not None:
        refuse("qk_norm", "GPT-NeoX does not normalise q and k")
    if c.sliding_window is not None:
        refuse("sliding_window", "GPT-NeoX attends to the whole prefix")
    if c.n_kv_heads != c.n_heads:
        refuse("n_kv_heads", f"GPT-NeoX has one key/value head per query head ({c.n_heads})")
    if c.d_head * c.n_heads != c.d_model:
        refuse("d_head", f"GPT-NeoX's heads split d_model: d_head = {c.d_model}/{c.n_heads}")
    if c.out_bias is not None and c.out_bias != c.bias:
        refuse("out_bias", f"GPT-NeoX's attention_bias sets b_O with b_Q, b_K, b_V (bias={c.bias})")


@family(
    "gpt_neox",
    defaults=dict(
        norm="layernorm", tied=False, bias=True, positional="rope", norm_eps=1e-5,
        d_mlp=lambda c: 4 * c.d_model, activation="gelu", parallel_residual=True,
        rotary_fraction=0.25,
    ),
    check=check,
)  # fmt: skip
def block(c: Config):
    return parts.pre_norm(c, parts.attention(c), dataclasses.replace(parts.mlp(c), bias=True))


def _pythia(L: int, d: int, H: int) -> Config:
    """A Pythia model (EleutherAI's config.json): V = 50304, T = 2048, rotary_pct = 0.25."""
    return Config(
        family="gpt_neox", vocab_size=50304, context=2048, n_layers=L, d_model=d, n_heads=H
    )


PRESETS = {"pythia-160m": _pythia(12, 768, 12), "pythia-410m": _pythia(24, 1024, 16)}
