"""LLaMA: RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases, untied.

U ∘ N_f ∘ B^L ∘ E,      B = (id + M ∘ N_2) ∘ (id + A ∘ N_1)    (RoPE inside A)
M(x) = (silu(x W_gate) ⊙ x W_in) W_out,  m = 256·⌈(8d/3)/256⌉ by default
"""

from __future__ import annotations

from .. import parts
from ..config import Config
from ..family import family


def check(c: Config) -> None:
    if c.positional != "rope":
        raise ValueError(
            f"Config.positional={c.positional!r} is not available for family 'llama'; "
            "choose one of ('rope',)"
        )
    if c.d_head % 2:
        raise ValueError(f"Config: RoPE needs an even d_head, got {c.d_head}")


@family(
    "llama",
    defaults=dict(
        norm="rmsnorm", tied=False, bias=False, positional="rope", norm_eps=1e-6,
        d_mlp=lambda c: -(-8 * c.d_model // 3 // 256) * 256,
    ),
    check=check,
)  # fmt: skip
def block(c: Config):
    return parts.pre_norm(c, parts.attention(c), parts.swiglu(c))
