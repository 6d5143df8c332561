"""Qwen3-MoE: Qwen3 (per-head QK-RMSNorm, k ≠ d/H) with each MLP a mixture of experts.

U ∘ N_f ∘ B^L ∘ E,      B = (id + M ∘ N_2) ∘ (id + A ∘ N_1)
M(x)_t = Σ_{e ∈ S_t} g_te E_e(x_t),  S_t = top-k of p_t = softmax(x_t W_R) over all E,
         g_t = p_t[S_t] / Σ p_t[S_t] with ``norm_topk`` (HF's norm_topk_prob), else p_t[S_t]
E_e(u) = (silu(u W_gate^e) ⊙ u W_in^e) W_out^e,  m = ``d_mlp`` (HF's moe_intermediate_size)

Every layer is sparse (HF's decoder_sparse_step = 1, no mlp_only_layers). The auxiliary
losses are Mixtral's (``mixtral.py``).
"""

from __future__ import annotations

from .. import parts
from ..config import Config
from ..family import FAMILIES, family
from .llama import llama_like
from .mixtral import MOE


def check(c: Config) -> None:
    llama_like(c, "qwen3_moe", qk_norm="head", out_bias=c.bias)


@family(
    "qwen3_moe",
    defaults=FAMILIES["qwen3"].defaults | MOE | dict(n_experts=128, top_k=8, norm_topk=False),
    check=check,
)  # fmt: skip
def block(c: Config):
    return parts.pre_norm(c, parts.attention(c), parts.moe(c))


PRESETS = {  # Qwen/Qwen3-30B-A3B's config.json: 30,532,122,624 parameters, 3.3B active
    "qwen3-30b-a3b": Config(
        family="qwen3_moe", vocab_size=151936, context=40960, n_layers=48, d_model=2048,
        n_heads=32, n_kv_heads=4, d_head=128, d_mlp=768, n_experts=128, top_k=8,
        norm_topk=True, norm_eps=1e-6, rope_theta=1e6, tied=False,
    ),
}  # fmt: skip
