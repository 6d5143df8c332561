"""Gemma 3 (text): HF ``Gemma3ForCausalLM`` (``model_type="gemma3_text"``) ↔ jaxformer
``family="gemma3_text"``.

Gemma 2's tensors (``gemma2.py``: the four norms per layer) plus, per layer ``l``,

    layers.l.self_attn.q_norm.weight   [k] → blocks.attn.gamma_Q [k]   (gain 1 + w)
    layers.l.self_attn.k_norm.weight   [k] → blocks.attn.gamma_K [k]

The RoPE base per layer type: ``rope_parameters`` {"sliding_attention": {…}, "full_attention":
{…}} (transformers 5; older files: ``rope_local_base_freq`` and ``rope_theta``) →
rope_local_theta and rope_theta. Only plain RoPE is built: a scaled one (the released 4B,
12B, 27B scale their global layers' RoPE linearly) is refused, naming the field.
"""

from __future__ import annotations

import numpy as np

from ...models import Config
from ..hf_config import make_config, reject
from ..mapping import Checkpoint, unstack
from . import gemma, gemma2, llama

MODEL_TYPE, FAMILY = "gemma3_text", "gemma3_text"
ARCHITECTURE = "Gemma3ForCausalLM"
PREFIX, IGNORE = llama.PREFIX, llama.IGNORE
HF_DEFAULTS = gemma2.HF_DEFAULTS | dict(
    vocab_size=262208, max_position_embeddings=131072, final_logit_softcapping=None,
    attn_logit_softcapping=None,
)  # fmt: skip
NORMS = (("gamma_Q", "q_norm"), ("gamma_K", "k_norm"))


def thetas(hf: dict, where: str) -> dict[str, float]:
    """The RoPE base of each layer type, plain RoPE only."""
    rope = hf.get("rope_parameters")
    if rope is None:  # the older file: top-level fields
        if hf.get("rope_scaling"):
            raise reject(where, "rope_scaling", hf["rope_scaling"], "only plain RoPE is built")
        rope = {
            gemma.SLIDING: {"rope_theta": hf.get("rope_local_base_freq", 1e4)},
            gemma.FULL: {"rope_theta": hf.get("rope_theta", 1e6)},
        }
    out = {}
    for kind, default in ((gemma.SLIDING, 1e4), (gemma.FULL, 1e6)):
        r = rope.get(kind) or {}
        field = f"rope_parameters.{kind}"
        if r.get("rope_type", "default") != "default":
            raise reject(where, f"{field}.rope_type", r["rope_type"], "only plain RoPE is built")
        if r.get("partial_rotary_factor", 1.0) != 1.0:
            raise reject(where, f"{field}.partial_rotary_factor", r["partial_rotary_factor"],
                         "jaxformer rotates whole heads")  # fmt: skip
        out[kind] = float(r.get("rope_theta", default))
    return out


def config_from_hf(hf: dict, where: str) -> Config:
    """The jaxformer ``Config`` of an HF Gemma 3 text ``config.json``. Its
    ``attn_logit_softcapping`` is not read, as Gemma3Attention does not read it either."""
    f = gemma2.sandwich_fields(hf, where, HF_DEFAULTS) | dict(attn_softcap=None)
    theta = thetas(hf, where)
    if f["global_every"] is not None:  # both kinds
        rope = dict(rope_theta=theta[gemma.FULL], rope_local_theta=theta[gemma.SLIDING])
    else:  # one kind: its base
        rope = dict(rope_theta=theta[gemma.SLIDING if f["sliding_window"] else gemma.FULL])
    return make_config(where, family=FAMILY, qk_norm="head", **f, **rope)


def config_to_hf(c: Config) -> dict:
    """The HF ``config.json`` of ``c`` (``models.families.gemma3_text.check`` has refused
    what Gemma 3 does not compute)."""
    local = c.rope_local_theta or c.rope_theta
    return gemma2.sandwich_to_hf(c) | dict(
        architectures=[ARCHITECTURE], model_type=MODEL_TYPE, attn_logit_softcapping=None,
        rope_parameters={
            gemma.SLIDING: {"rope_type": "default", "rope_theta": local},
            gemma.FULL: {"rope_type": "default", "rope_theta": c.rope_theta},
        },
    )  # fmt: skip


def params_from_hf(ckpt: Checkpoint, c: Config) -> dict:
    """HF Gemma 3 tensors → the params pytree of ``build(c)``."""
    take = lambda l, n: ckpt.take(f"{PREFIX}layers.{l}.self_attn.{n}.weight", c.d_head)
    return gemma2.params_from_hf(ckpt, c, lambda l: {"attn": {g: take(l, n) for g, n in NORMS}})


def params_to_hf(p: dict, c: Config) -> dict[str, np.ndarray]:
    """The params pytree of ``build(c)`` (numpy) → HF Gemma 3 tensors (the inverse map)."""
    attn = {k: v for k, v in p["blocks"]["attn"].items() if k not in ("gamma_Q", "gamma_K")}
    out = gemma2.params_to_hf(p | {"blocks": p["blocks"] | {"attn": attn}}, c)
    for l, a in enumerate(unstack(p["blocks"]["attn"], c.n_layers)):
        out |= {f"{PREFIX}layers.{l}.self_attn.{n}.weight": a[g] for g, n in NORMS}
    return out
