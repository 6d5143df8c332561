"""Phi-3: HF ``Phi3ForCausalLM`` ↔ jaxformer ``family="phi3"``.

LLaMA's tensors (``llama.py``), two of them fused. Per layer ``l`` (under ``model.``; H
query and G key/value heads of size k, MLP width m):

    layers.l.self_attn.qkv_proj.weight  [(H + 2G)·k, d]: rows [0, H·k) are q_proj's,
                                        [H·k, (H+G)·k) k_proj's, the last G·k v_proj's
    layers.l.mlp.gate_up_proj.weight    [2m, d]: rows [0, m) gate_proj's (W_gate),
                                        [m, 2m) up_proj's (W_in)

split on import into LLaMA's q_proj, k_proj, v_proj, gate_proj and up_proj (then mapped
as ``llama.py`` maps them), fused again on export; every other tensor is LLaMA's. RoPE
turns the first r = ⌊partial_rotary_factor · k⌋ coordinates of each head (rotate-half
on those, as jaxformer's ``rotary_dim``); ``sliding_window`` w applies on every layer.
Refused, by name: a scaled RoPE (``longrope``, the old ``su``/``yarn``), which the 128k
models use.
"""

from __future__ import annotations

import numpy as np

from ...models import Config
from ..hf_config import make_config, reject
from ..mapping import Checkpoint
from . import llama, qwen2

MODEL_TYPE, FAMILY = "phi3", "phi3"
ARCHITECTURE = "Phi3ForCausalLM"
PREFIX, IGNORE = llama.PREFIX, llama.IGNORE

# Phi3Config's defaults, for the fields that llama.config_from_hf reads.
HF_DEFAULTS = dict(
    vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
    num_attention_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)  # fmt: skip


def rotary_fraction(hf: dict) -> float:
    """``partial_rotary_factor`` where Phi3Config reads it: rope_parameters (or the older
    rope_scaling), else the top level; 1 without one."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    return float(rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)))


def config_from_hf(hf: dict, where: str) -> Config:
    """The jaxformer ``Config`` of an HF Phi-3 ``config.json``."""
    fraction = rotary_fraction(hf)
    plain = {k: v for k, v in (HF_DEFAULTS | hf).items() if k not in ("mlp_bias", "attention_bias")}
    plain.pop("partial_rotary_factor", None)
    for field in ("rope_parameters", "rope_scaling"):  # read above; the rest is plain RoPE's
        if isinstance(plain.get(field), dict):
            plain[field] = {k: v for k, v in plain[field].items() if k != "partial_rotary_factor"}
    if plain.get("layer_types"):
        raise reject(where, "layer_types", plain["layer_types"], "Phi3Model masks all layers alike")
    c = llama.config_from_hf(plain, where).to_dict()
    fields = dict(family=FAMILY, rotary_fraction=fraction, sliding_window=hf.get("sliding_window"))
    return make_config(where, **(c | fields))


def config_to_hf(c: Config) -> dict:
    """The HF ``config.json`` of ``c`` (``models.families.phi3.check`` has refused what
    Phi-3 does not compute)."""
    hf = {k: v for k, v in llama.config_to_hf(c).items() if k not in ("mlp_bias", "attention_bias")}
    rope = hf["rope_parameters"] | dict(partial_rotary_factor=c.rotary_fraction)
    return hf | dict(
        architectures=[ARCHITECTURE], model_type=MODEL_TYPE, rope_parameters=rope,
        partial_rotary_factor=c.rotary_fraction, sliding_window=c.sliding_window,
        original_max_position_embeddings=c.context, resid_pdrop=0.0, embd_pdrop=0.0,
    )  # fmt: skip


def _names(l: int) -> tuple[str, str]:
    s = f"{PREFIX}layers.{l}."
    return s + "self_attn.", s + "mlp."


def params_from_hf(ckpt: Checkpoint, c: Config) -> dict:
    """HF Phi-3 tensors → the params pytree of ``build(c)``: the fused tensors split into
    LLaMA's, then LLaMA's mapping (which checks that none is left over)."""
    H, G, k, d, m = c.n_heads, c.n_kv_heads, c.d_head, c.d_model, c.d_mlp
    for l in range(c.n_layers):
        attn, mlp = _names(l)
        qkv = ckpt.take(attn + "qkv_proj.weight", (H + 2 * G) * k, d)
        q, kk, v = np.split(qkv, [H * k, (H + G) * k])
        gate, up = np.split(ckpt.take(mlp + "gate_up_proj.weight", 2 * m, d), [m])
        parts = {attn + "q_proj": q, attn + "k_proj": kk, attn + "v_proj": v,
                 mlp + "gate_proj": gate, mlp + "up_proj": up}  # fmt: skip
        ckpt.tensors |= {f"{name}.weight": W for name, W in parts.items()}
    return llama.params_from_hf(ckpt, qwen2.as_llama(c, rotary_fraction=1.0))


def params_to_hf(p: dict, c: Config) -> dict[str, np.ndarray]:
    """The params pytree of ``build(c)`` (numpy) → HF Phi-3 tensors (the inverse map)."""
    out = llama.params_to_hf(p, qwen2.as_llama(c, rotary_fraction=1.0))
    for l in range(c.n_layers):
        attn, mlp = _names(l)
        take = lambda *names: np.concatenate([out.pop(f"{n}.weight") for n in names])
        out[attn + "qkv_proj.weight"] = take(attn + "q_proj", attn + "k_proj", attn + "v_proj")
        out[mlp + "gate_up_proj.weight"] = take(mlp + "gate_proj", mlp + "up_proj")
    return out
