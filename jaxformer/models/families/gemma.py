"""Gemma: LLaMA's shape with Gemma's three pieces: a √d-scaled embedding, RMSNorm with the
gain 1 + γ, and a GeGLU MLP; multi-query attention in the 2B model, tied, k = 256.

    U ∘ N_f ∘ B^L ∘ E,      E(t)_i = √d · W_E[t_i],     B = (id + M ∘ N_2) ∘ (id + A ∘ N_1)
    N(x) = (1 + γ) ⊙ x / √(mean(x²) + ε)          (γ stored as HF stores it: 0 is the identity)
    M(x) = (gelu_tanh(x W_gate) ⊙ x W_in) W_out,  A^h = softmax(causal(q^h k^hᵀ / √k))

The pieces (``norm``, ``geglu``, ``stem``, ``head``) are Gemma 2's and Gemma 3's too.
"""

from __future__ import annotations

from ...core import compose, residual, tokenwise
from ...layers import Embedding, GeGLU, RMSNorm, Unembedding
from .. import layout as N
from .. import parts
from ..config import Config
from ..family import family
from .llama import llama_like

GEMMA = dict(
    norm="rmsnorm", tied=True, bias=False, positional="rope", norm_eps=1e-6,
    d_mlp=lambda c: 8 * c.d_model, activation="gelu_tanh",
)  # fmt: skip


def norm(c: Config, name: str):
    """Gemma's RMSNorm, x ↦ (1 + γ) ⊙ x / √(mean(x²) + ε), lifted to the sequence."""
    return tokenwise(RMSNorm(c.d_model, c.norm_eps, name=name, offset=1.0))


def geglu(c: Config) -> GeGLU:
    return GeGLU(c.d_model, c.d_mlp, c.init_std, parts.out_std(c), name=N.MLP)


def stem(c: Config) -> Embedding:
    """E(t)_i = √d · W_E[t_i] (HF: the normalizer hidden_size ** 0.5, in W_E's dtype)."""
    return Embedding(c.vocab_size, c.d_model, c.context, c.init_std, N.EMBED, c.d_model**0.5)


def head(c: Config):
    """U ∘ N_f, the logits soft-capped at ``c.logit_softcap`` if set (Gemma 2)."""
    U = Unembedding(
        c.d_model, c.vocab_size, std=c.init_std, name=N.UNEMBED, softcap=c.logit_softcap
    )
    return compose(U, norm(c, N.LN_F))


def check(c: Config) -> None:
    if c.d_head % 2:
        raise ValueError(f"Config: RoPE needs an even d_head, got {c.d_head}")
    llama_like(c, "gemma", qk_norm=None, sliding_window=None, activation="gelu_tanh",
               out_bias=c.bias, final_norm=True)  # fmt: skip


@family("gemma", defaults=GEMMA, check=check, stem=stem, head=head)
def block(c: Config):
    attn_read = compose(parts.attention(c), norm(c, N.LN1))
    mlp_read = compose(tokenwise(geglu(c)), norm(c, N.LN2))
    mlp_branch = residual(mlp_read, name=N.RESID_POST)
    return compose(mlp_branch, residual(attn_read, name=N.RESID_MID), name="block")


def _gemma(L, d, H, G, m):
    return Config("gemma", 256000, 8192, L, d, H, G, d_head=256, d_mlp=m)


PRESETS = {  # the config.json of google/gemma-2b (2,506,172,416 parameters) and gemma-7b
    # (8,537,680,896)
    "gemma-2b": _gemma(18, 2048, 8, 1, 16384),
    "gemma-7b": _gemma(28, 3072, 16, 16, 24576),
    "gemma-tiny": Config(
        "gemma", 32000, 512, 4, 256, 4, 1, d_head=64, d_mlp=1024
    ),  # a smoke-test size, as llama-tiny
}
