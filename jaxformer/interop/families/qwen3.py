"""Qwen3: HF ``Qwen3ForCausalLM`` ↔ jaxformer ``family="qwen3"``, LLaMA's mapping plus the
per-head RMSNorms of the queries and keys. Per layer ``l`` (under ``model.``):

    layers.l.self_attn.q_norm.weight   [k] → blocks.attn.gamma_Q [k]   (ε = rms_norm_eps)
    layers.l.self_attn.k_norm.weight   [k] → blocks.attn.gamma_K [k]

and every other tensor as in ``llama.py`` (``attention_bias`` puts biases on q, k, v and
o alike, as LLaMA's). ``head_dim`` defaults to 128, not d/H; the window is Qwen2's.
"""

from __future__ import annotations

import numpy as np

from ...models import Config
from ..mapping import Checkpoint, stack, unstack
from . import llama, qwen2

MODEL_TYPE, FAMILY = "qwen3", "qwen3"
ARCHITECTURE = "Qwen3ForCausalLM"
PREFIX, IGNORE = llama.PREFIX, llama.IGNORE
HF_DEFAULTS = qwen2.HF_DEFAULTS | dict(head_dim=128)  # Qwen3Config's
NORMS = (("gamma_Q", "q_norm"), ("gamma_K", "k_norm"))


def config_from_hf(hf: dict, where: str) -> Config:
    """The jaxformer ``Config`` of an HF Qwen3 ``config.json``."""
    bias = hf.get("attention_bias", False)
    return qwen2.config_from_hf(
        hf, where, HF_DEFAULTS, family=FAMILY, bias=bias, out_bias=None, qk_norm="head"
    )


def config_to_hf(c: Config) -> dict:
    """The HF ``config.json`` of ``c`` (``models.families.qwen3.check`` has refused what
    Qwen3 does not compute)."""
    return qwen2.config_to_hf(c, MODEL_TYPE, ARCHITECTURE) | dict(attention_bias=c.bias)


def params_from_hf(ckpt: Checkpoint, c: Config, mlp=None) -> dict:
    """HF Qwen3 tensors → the params pytree of ``build(c)`` (``mlp``: as llama's)."""
    take = lambda l, n: ckpt.take(f"{PREFIX}layers.{l}.self_attn.{n}.weight", c.d_head)
    norms = stack([{g: take(l, n) for g, n in NORMS} for l in range(c.n_layers)])
    params = llama.params_from_hf(ckpt, qwen2.as_llama(c), mlp)  # after: it checks none is left
    params["blocks"]["attn"] |= norms
    return params


def params_to_hf(p: dict, c: Config, mlp=None) -> dict[str, np.ndarray]:
    """The params pytree of ``build(c)`` (numpy) → HF Qwen3 tensors (the inverse map)."""
    out = llama.params_to_hf(p, qwen2.as_llama(c), mlp)
    for l, a in enumerate(unstack(p["blocks"]["attn"], c.n_layers)):
        out |= {f"{PREFIX}layers.{l}.self_attn.{n}.weight": a[g] for g, n in NORMS}
    return out
