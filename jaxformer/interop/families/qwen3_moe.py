"""Qwen3-MoE: HF ``Qwen3MoeForCausalLM`` ↔ jaxformer ``family="qwen3_moe"``: Qwen3's mapping
(q_norm, k_norm) with each layer's MLP a mixture. Per layer ``l`` (under
``model.layers.l.``; E experts of width m = ``moe_intermediate_size``):

    mlp.gate.weight                       [E, d] → ᵀ blocks.mlp.W_R [d, E]
    mlp.experts.e.gate_proj / up_proj     [m, d] → ᵀ W_gate[e], W_in[e] [d, m]
    mlp.experts.e.down_proj               [d, m] → ᵀ W_out[e] [m, d]

Refused at import: dense layers among the sparse ones (``mlp_only_layers``,
``decoder_sparse_step`` ≠ 1), whose MLP would be of another width.
"""

from __future__ import annotations

import numpy as np

from ...models import Config
from ..hf_config import reject
from ..mapping import Checkpoint
from . import llama, mixtral, qwen3

MODEL_TYPE, FAMILY = "qwen3_moe", "qwen3_moe"
ARCHITECTURE = "Qwen3MoeForCausalLM"
PREFIX, IGNORE = llama.PREFIX, llama.IGNORE
EXPERT = (("W_gate", "gate_proj"), ("W_in", "up_proj"))
HF_DEFAULTS = qwen3.HF_DEFAULTS | dict(
    moe_intermediate_size=768, num_experts_per_tok=8, norm_topk_prob=False
)


def config_from_hf(hf: dict, where: str) -> Config:
    """The jaxformer ``Config`` of an HF Qwen3-MoE ``config.json``."""
    if hf.get("mlp_only_layers"):
        raise reject(where, "mlp_only_layers", hf["mlp_only_layers"],
                     "every layer of jaxformer's qwen3_moe is a mixture")  # fmt: skip
    if hf.get("decoder_sparse_step", 1) != 1:
        raise reject(where, "decoder_sparse_step", hf["decoder_sparse_step"],
                     "every layer of jaxformer's qwen3_moe is a mixture (1)")  # fmt: skip
    hf = HF_DEFAULTS | hf
    E = hf.get("num_experts", hf.get("num_local_experts", 128))
    dense = hf | dict(model_type="qwen3", intermediate_size=hf["moe_intermediate_size"])
    c = qwen3.config_from_hf(dense, where)
    return c.replace(family=FAMILY, n_experts=E, top_k=hf["num_experts_per_tok"],
                     norm_topk=hf["norm_topk_prob"])  # fmt: skip


def config_to_hf(c: Config) -> dict:
    """The HF ``config.json`` of ``c`` (``models.families.qwen3_moe.check`` has refused what
    Qwen3-MoE does not compute)."""
    return qwen3.config_to_hf(mixtral.dense(c, "qwen3")) | dict(
        architectures=[ARCHITECTURE], model_type=MODEL_TYPE, moe_intermediate_size=c.d_mlp,
        num_experts=c.n_experts, num_local_experts=c.n_experts, num_experts_per_tok=c.top_k,
        norm_topk_prob=c.norm_topk, decoder_sparse_step=1, mlp_only_layers=[],
        output_router_logits=False,
    )  # fmt: skip


def params_from_hf(ckpt: Checkpoint, c: Config) -> dict:
    """HF Qwen3-MoE tensors → the params pytree of ``build(c)``."""
    moe = lambda l: mixtral.moe_from_hf(ckpt, c, l, "mlp", EXPERT, "down_proj")
    return qwen3.params_from_hf(ckpt, c, mlp=moe)


def params_to_hf(p: dict, c: Config) -> dict[str, np.ndarray]:
    """The params pytree of ``build(c)`` (numpy) → HF Qwen3-MoE tensors (the inverse map)."""
    moe = lambda mlp, l: mixtral.moe_to_hf(mlp, c, l, "mlp", EXPERT, "down_proj")
    return qwen3.params_to_hf(p, c, mlp=moe)
