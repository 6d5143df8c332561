"""Gemma 2: HF ``Gemma2ForCausalLM`` ↔ jaxformer ``family="gemma2"``.

Gemma's tensors (``gemma.py``, LLaMA's names) with the sandwich norms, per layer ``l``:

    layers.l.input_layernorm.weight            [d] → blocks.ln1.gamma       (before A)
    layers.l.post_attention_layernorm.weight   [d] → blocks.ln1_post.gamma  (after A)
    layers.l.pre_feedforward_layernorm.weight  [d] → blocks.ln2.gamma       (before M)
    layers.l.post_feedforward_layernorm.weight [d] → blocks.ln2_post.gamma  (after M)

The config: ``attn_logit_softcapping`` → attn_softcap, ``final_logit_softcapping`` →
logit_softcap, ``query_pre_attn_scalar`` as is, ``layer_types`` (HF's default: sliding,
full, sliding, …) → sliding_window and global_every (``gemma.pattern_of``).
"""

from __future__ import annotations

import numpy as np

from ...models import Config
from ..hf_config import make_config, rope_theta
from ..mapping import Checkpoint, stack, unstack
from . import gemma, llama

MODEL_TYPE, FAMILY = "gemma2", "gemma2"
ARCHITECTURE = "Gemma2ForCausalLM"
PREFIX, IGNORE = llama.PREFIX, llama.IGNORE
HF_DEFAULTS = gemma.HF_DEFAULTS | dict(
    hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
    num_key_value_heads=4, query_pre_attn_scalar=256, sliding_window=4096,
    final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
)  # fmt: skip
# jaxformer's norm, HF's: the llama mapping reads post_attention_layernorm as "ln2".
NORMS = (("ln2", "pre_feedforward_layernorm"), ("ln2_post", "post_feedforward_layernorm"))


def sandwich_fields(hf: dict, where: str, defaults: dict) -> dict:
    """Gemma 2's and 3's fields beyond Gemma's: the scalar, the caps, the layer types."""
    hf = defaults | hf  # a null in the file is a value: no cap
    L = hf["num_hidden_layers"]
    every = hf.get("sliding_window_pattern", 2 if hf.get("model_type") == "gemma2" else 6)
    types = hf.get("layer_types") or gemma.types_of(L, every)
    w, p = gemma.pattern_of(where, list(types), hf.get("sliding_window"))
    return gemma.fields(hf, where, defaults, "hidden_activation") | dict(
        sliding_window=w, global_every=p, query_pre_attn_scalar=hf["query_pre_attn_scalar"],
        attn_softcap=hf.get("attn_logit_softcapping"),
        logit_softcap=hf.get("final_logit_softcapping"),
    )  # fmt: skip


def config_from_hf(hf: dict, where: str) -> Config:
    """The jaxformer ``Config`` of an HF Gemma 2 ``config.json``."""
    theta = float(rope_theta(hf, where))
    return make_config(where, family=FAMILY, **sandwich_fields(hf, where, HF_DEFAULTS),
                       rope_theta=theta)  # fmt: skip


def sandwich_to_hf(c: Config) -> dict:
    s = c.query_pre_attn_scalar
    return gemma.fields_to_hf(c, "hidden_activation") | dict(
        query_pre_attn_scalar=int(s) if float(s).is_integer() else s,
        sliding_window=c.sliding_window,
        layer_types=gemma.types_of(c.n_layers, c.global_every, c.sliding_window),
        attn_logit_softcapping=c.attn_softcap, final_logit_softcapping=c.logit_softcap,
    )  # fmt: skip


def config_to_hf(c: Config) -> dict:
    """The HF ``config.json`` of ``c`` (``models.families.gemma2.check`` has refused what
    Gemma 2 does not compute)."""
    return sandwich_to_hf(c) | dict(
        architectures=[ARCHITECTURE], model_type=MODEL_TYPE,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
    )  # fmt: skip


def params_from_hf(ckpt: Checkpoint, c: Config, extra=lambda l: {}) -> dict:
    """HF Gemma 2 tensors → the params pytree of ``build(c)`` (``extra(l)``: what a
    later Gemma adds to layer l, taken before the rest is checked complete)."""
    take = lambda l, n: ckpt.take(f"{PREFIX}layers.{l}.{n}.weight", c.d_model)
    more = [{g: {"gamma": take(l, n)} for g, n in NORMS} | extra(l) for l in range(c.n_layers)]
    params = llama.params_from_hf(ckpt, c)  # last: it checks that no tensor is left
    blocks = params["blocks"]
    blocks["ln1_post"] = blocks.pop("ln2")  # HF's post_attention_layernorm
    for k, v in stack(more).items():
        blocks[k] = blocks[k] | v if k in blocks else v
    return params


def params_to_hf(p: dict, c: Config) -> dict[str, np.ndarray]:
    """The params pytree of ``build(c)`` (numpy) → HF Gemma 2 tensors (the inverse map)."""
    blocks = {k: v for k, v in p["blocks"].items() if k not in ("ln2", "ln2_post", "ln1_post")}
    out = llama.params_to_hf(p | {"blocks": blocks | {"ln2": p["blocks"]["ln1_post"]}}, c)
    for l, b in enumerate(unstack(p["blocks"], c.n_layers)):
        out |= {f"{PREFIX}layers.{l}.{n}.weight": b[g]["gamma"] for g, n in NORMS}
    return out
