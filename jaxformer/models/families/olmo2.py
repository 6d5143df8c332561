"""OLMo 2: the norms on the writes, inside the residual (post-norm), and QK-norm over all heads.

U ∘ N_f ∘ B^L ∘ E,      B = (id + N_2' ∘ M) ∘ (id + N_1' ∘ A)      (x + N_1'(A(x)), then
                                                                x + N_2'(M(x)))
q = R(N_Q(x W_Q)),  k = R(N_K(x W_K)),  N_Q over all H·k query coordinates at once,
N_K over all G·k key coordinates (before the split into heads and before RoPE)
M(x) = (silu(x W_gate) ⊙ x W_in) W_out;  RMSNorm everywhere; GQA; untied by default.

The block reads the stream as it is (no norm before A or M) and normalises what each
branch writes: a write's size no longer grows with the stream's. Its norms are the
layout's norms of the writes, N_1' ``ln1_post`` and N_2' ``ln2_post`` (those of Gemma's
sandwich block, without its N_1 and N_2): nothing that reads ``ln1`` as the N_1 of
A ∘ N_1 finds one here.
"""

from __future__ import annotations

from ...core import compose, residual, tokenwise
from .. import layout as N
from .. import parts
from ..config import Config
from ..family import FAMILIES, family
from .llama import llama_like


def check(c: Config) -> None:
    if c.d_head % 2:
        raise ValueError(f"Config: RoPE needs an even d_head, got {c.d_head}")
    llama_like(c, "olmo2", qk_norm="all", sliding_window=None, out_bias=c.bias, attn_only=False)


@family(
    "olmo2",
    defaults=FAMILIES["llama"].defaults | dict(qk_norm="all", norm_eps=1e-6),
    check=check,
)  # fmt: skip
def block(c: Config):
    """(id + N_2' ∘ M) ∘ (id + N_1' ∘ A): each branch's write normalised before it is added."""
    attn_write = compose(parts.norm(c, N.LN1_POST), parts.attention(c))
    mlp_write = compose(parts.norm(c, N.LN2_POST), tokenwise(parts.swiglu(c)))
    mid = residual(attn_write, name=N.RESID_MID)
    return compose(residual(mlp_write, name=N.RESID_POST), mid, name="block")


PRESETS = {  # allenai/OLMo-2-0425-1B's config.json: 1,484,916,736 parameters
    "olmo-2-1b": Config(
        "olmo2", 100352, 4096, 16, 2048, 16, 16, d_mlp=8192, norm_eps=1e-6, rope_theta=5e5,
    ),
}  # fmt: skip
