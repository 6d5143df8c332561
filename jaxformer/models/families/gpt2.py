"""GPT-2: learned positions, pre-LN LayerNorm, a GELU MLP, biases, tied unembedding.

    U ∘ N_f ∘ B^L ∘ P ∘ E,      B = (id + M ∘ N_2) ∘ (id + A ∘ N_1)
    M(x) = φ(x W_in + b_in) W_out + b_out,  m = 4d by default

Also the circuits papers' models: sinusoidal positions, ``attn_only`` (no MLPs) and
no final norm are options of this family.
"""

from __future__ import annotations

from .. import parts
from ..config import Config
from ..family import family

POSITIONALS = ("learned", "sinusoidal")


def check(c: Config) -> None:
    if c.positional not in POSITIONALS:
        raise ValueError(
            f"Config.positional={c.positional!r} is not available for family 'gpt2'; "
            f"choose one of {POSITIONALS}"
        )


@family(
    "gpt2",
    defaults=dict(
        norm="layernorm", tied=True, bias=True, positional="learned", norm_eps=1e-5,
        d_mlp=lambda c: 4 * c.d_model,
    ),
    check=check,
)  # fmt: skip
def block(c: Config):
    return parts.pre_norm(c, parts.attention(c), parts.mlp(c))
