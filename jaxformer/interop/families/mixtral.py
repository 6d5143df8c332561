"""Mixtral: HF ``MixtralForCausalLM`` ↔ jaxformer ``family="mixtral"``: Mistral's mapping
with each layer's MLP a mixture. Per layer ``l`` (under ``model.layers.l.``; E experts
of width m, HF's ``nn.Linear`` weights [out, in]):

    block_sparse_moe.gate.weight          [E, d] → ᵀ blocks.mlp.W_R [d, E]
    block_sparse_moe.experts.e.w1.weight  [m, d] → ᵀ W_gate[e] [d, m]
    block_sparse_moe.experts.e.w3.weight  [m, d] → ᵀ W_in[e]   [d, m]
    block_sparse_moe.experts.e.w2.weight  [d, m] → ᵀ W_out[e]  [m, d]

(transformers ≥ 5 fuses the experts in memory, ``experts.gate_up_proj`` [E, 2m, d], but
saves and loads them per expert, as above.) ``router_jitter_noise`` > 0 is refused: it
perturbs training only, and jaxformer's router is deterministic. HF's
``router_aux_loss_coef`` weighs its pooled balance loss; jaxformer's is per layer
(``layers/moe.py``), so it is not carried across: ``balance_weight`` keeps its default.
"""

from __future__ import annotations

import numpy as np

from ...models import Config
from ...models.config import EXPERT_FIELDS
from ..hf_config import reject
from ..mapping import Checkpoint
from . import llama, mistral

MODEL_TYPE, FAMILY = "mixtral", "mixtral"
ARCHITECTURE = "MixtralForCausalLM"
PREFIX, IGNORE = llama.PREFIX, llama.IGNORE
MOE = "block_sparse_moe"
EXPERT = (("W_gate", "w1"), ("W_in", "w3"))  # [d, m] ← [m, d]; W_out ← w2 [d, m]
HF_DEFAULTS = mistral.HF_DEFAULTS | dict(num_local_experts=8, num_experts_per_tok=2)


def config_from_hf(hf: dict, where: str) -> Config:
    """The jaxformer ``Config`` of an HF Mixtral ``config.json``."""
    if hf.get("router_jitter_noise", 0.0):
        raise reject(where, "router_jitter_noise", hf["router_jitter_noise"],
                     "jaxformer's router adds no noise")  # fmt: skip
    hf = HF_DEFAULTS | {"sliding_window": None} | hf
    c = mistral.config_from_hf(hf, where)
    return c.replace(family=FAMILY, n_experts=hf["num_local_experts"],
                     top_k=hf["num_experts_per_tok"])  # fmt: skip


def dense(c: Config, family: str) -> Config:
    """``c`` with its MLPs plain: the config of ``family`` whose mapping this one extends."""
    return c.replace(family=family, **dict.fromkeys(EXPERT_FIELDS))


def config_to_hf(c: Config) -> dict:
    """The HF ``config.json`` of ``c`` (``models.families.mixtral.check`` has refused what
    Mixtral does not compute)."""
    hf = mistral.config_to_hf(dense(c, "mistral"))
    return hf | dict(
        architectures=[ARCHITECTURE], model_type=MODEL_TYPE, num_local_experts=c.n_experts,
        num_experts_per_tok=c.top_k, router_jitter_noise=0.0, output_router_logits=False,
    )  # fmt: skip


def moe_from_hf(ckpt: Checkpoint, c: Config, l: int, at: str, names=EXPERT, out="w2") -> dict:
    """One layer's mixture: the router ``at.gate`` and E experts ``at.experts.e.*``."""
    d, m, E = c.d_model, c.d_mlp, c.n_experts
    t = lambda name, *shape: ckpt.take(f"{PREFIX}layers.{l}.{at}.{name}.weight", *shape)
    experts = {w: np.stack([t(f"experts.{e}.{hf}", m, d).T for e in range(E)]) for w, hf in names}
    experts["W_out"] = np.stack([t(f"experts.{e}.{out}", d, m).T for e in range(E)])
    return {"W_R": t("gate", E, d).T, **experts}


def moe_to_hf(mlp: dict, c: Config, l: int, at: str, names=EXPERT, out="w2") -> dict:
    """The inverse of ``moe_from_hf`` (names under ``model.``)."""
    s = f"layers.{l}.{at}."
    hf = {s + "gate.weight": mlp["W_R"].T}
    for e in range(c.n_experts):
        hf |= {f"{s}experts.{e}.{n}.weight": mlp[w][e].T for w, n in names}
        hf[f"{s}experts.{e}.{out}.weight"] = mlp["W_out"][e].T
    return hf


def params_from_hf(ckpt: Checkpoint, c: Config) -> dict:
    """HF Mixtral tensors → the params pytree of ``build(c)``."""
    return llama.params_from_hf(ckpt, c, mlp=lambda l: moe_from_hf(ckpt, c, l, MOE))


def params_to_hf(p: dict, c: Config) -> dict[str, np.ndarray]:
    """The params pytree of ``build(c)`` (numpy) → HF Mixtral tensors (the inverse map)."""
    return llama.params_to_hf(p, c, mlp=lambda mlp, l: moe_to_hf(mlp, c, l, MOE))
