"""Mixtral: Mistral with each MLP a mixture of E SwiGLU experts, k chosen per token.

U ∘ N_f ∘ B^L ∘ E,      B = (id + M ∘ N_2) ∘ (id + A ∘ N_1)    (A: Mistral's, GQA, RoPE)
M(x)_t = Σ_{e ∈ S_t} g_te E_e(x_t),  S_t = top-k of p_t = softmax(x_t W_R),
         g_t = p_t[S_t] / Σ p_t[S_t]     (the softmax of the k chosen logits)
E_e(u) = (silu(u W_gate^e) ⊙ u W_in^e) W_out^e,  m = ``d_mlp`` each (``layers/moe.py``)

The objective adds, per layer, ``balance_weight`` · E Σ_e f_e P̄_e (Switch's load-balancing
loss: α = 0.01 by default) and ``z_weight`` · mean (logsumexp x W_R)² (ST-MoE's router
z-loss: 10⁻³), both in ``layers/moe.py``.
"""

from __future__ import annotations

from .. import parts
from ..config import Config
from ..family import FAMILIES, family
from .llama import llama_like

MOE = dict(n_experts=8, top_k=2, balance_weight=0.01, z_weight=1e-3, capacity_factor=0.0)


def check(c: Config) -> None:
    llama_like(c, "mixtral", bias=False, out_bias=False, qk_norm=None, norm_topk=True)


@family("mixtral", defaults=FAMILIES["llama"].defaults | MOE | dict(norm_topk=True),
        check=check)  # fmt: skip
def block(c: Config):
    return parts.pre_norm(c, parts.attention(c), parts.moe(c))


PRESETS = {  # mistralai/Mixtral-8x7B-v0.1's config.json: 46,702,792,704 parameters
    "mixtral-8x7b": Config(
        family="mixtral", vocab_size=32000, context=32768, n_layers=32, d_model=4096,
        n_heads=32, n_kv_heads=8, d_mlp=14336, norm_eps=1e-5, rope_theta=1e6,
    ),
    "mixtral-tiny": Config(
        family="mixtral", vocab_size=2048, context=256, n_layers=2, d_model=128, n_heads=4,
        n_kv_heads=2, d_mlp=256, n_experts=4, top_k=2,
    ),
}  # fmt: skip
