"""LLaMA: RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases, untied.

U ∘ N_f ∘ B^L ∘ E,      B = (id + M ∘ N_2) ∘ (id + A ∘ N_1)    (RoPE inside A)
M(x) = (silu(x W_gate) ⊙ x W_in) W_out,  m = 256·⌈(8d/3)/256⌉ by default
"""

from __future__ import annotations

from .. import parts
from ..config import Config
from ..family import family

LLAMA = dict(positional="rope", norm="rmsnorm", rotary_fraction=1.0, parallel_residual=False)


def llama_like(c: Config, name: str, **want) -> None:
    """Refuse, naming the field, a config that family ``name`` does not compute: RoPE on
    whole heads, RMSNorm, one residual step after the other, and the fields ``want``
    (``out_bias`` compared as the b_O the model has: None is as ``bias``)."""
    b_O = c.bias if c.out_bias is None else c.out_bias
    for field, value in (LLAMA | want).items():
        if (b_O if field == "out_bias" else getattr(c, field)) != value:
            raise ValueError(
                f"Config.{field}={getattr(c, field)!r} is not available for family {name!r}, "
                f"which has {field}={value!r}"
            )


def check(c: Config) -> None:
    if c.d_head % 2:
        raise ValueError(f"Config: RoPE needs an even d_head, got {c.d_head}")
    llama_like(c, "llama", qk_norm=None, sliding_window=None, out_bias=c.bias)


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
