"""Gemma: HF ``GemmaForCausalLM`` ↔ jaxformer ``family="gemma"``.

The tensors are LLaMA's, name for name (``llama.py``): q_proj, k_proj, v_proj, o_proj,
gate_proj (W_gate), up_proj (W_in), down_proj (W_out), input_layernorm (ln1),
post_attention_layernorm (ln2, before the MLP), embed_tokens, norm, lm_head (absent when
tied, the default). A norm's weight w is stored as it is: the gain is 1 + w, in jaxformer
as in HF (``RMSNorm(offset=1)``), so a round trip is exact. The embedding's √d is no
tensor (HF's normalizer); ``hidden_act`` "gelu" is HF's legacy name of the tanh GELU.
Also the helpers of Gemma 2 and 3: the layer types as (window, global_every).
"""

from __future__ import annotations

from ...models import Config
from ..hf_config import common_fields, make_config, reject, rope_theta
from . import llama

MODEL_TYPE, FAMILY = "gemma", "gemma"
ARCHITECTURE = "GemmaForCausalLM"
PREFIX, IGNORE = llama.PREFIX, llama.IGNORE
params_from_hf, params_to_hf = llama.params_from_hf, llama.params_to_hf
TANH = ("gelu_pytorch_tanh", "gelu")  # HF maps Gemma's legacy "gelu" to the tanh GELU

# GemmaConfig's defaults, for the fields a config.json leaves out.
HF_DEFAULTS = dict(
    vocab_size=256000, hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
    num_attention_heads=16, num_key_value_heads=16, head_dim=256, max_position_embeddings=8192,
    rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=False,
)  # fmt: skip


def fields(hf: dict, where: str, defaults: dict, act: str = "hidden_act") -> dict:
    """The Config fields every Gemma reads the same way (``act``: the activation's key)."""
    hf = defaults | hf
    if hf.get(act, "gelu_pytorch_tanh") not in TANH[: 2 if act == "hidden_act" else 1]:
        raise reject(where, act, hf[act], "Gemma's GeGLU is implemented with the tanh GELU")
    if hf.get("use_bidirectional_attention"):
        raise reject(where, "use_bidirectional_attention", True, "jaxformer's Gemma is causal")
    if hf.get("attention_dropout"):
        raise reject(where, "attention_dropout", hf["attention_dropout"], "no dropout")
    return dict(
        vocab_size=hf["vocab_size"], context=hf["max_position_embeddings"],
        n_layers=hf["num_hidden_layers"], d_model=hf["hidden_size"],
        n_heads=hf["num_attention_heads"], n_kv_heads=hf["num_key_value_heads"],
        d_head=hf["head_dim"], d_mlp=hf["intermediate_size"], norm_eps=hf["rms_norm_eps"],
        tied=hf["tie_word_embeddings"], bias=hf["attention_bias"],
        init_std=hf.get("initializer_range") or 0.02,
    )  # fmt: skip


def fields_to_hf(c: Config, act: str = "hidden_act") -> dict:
    """The config.json fields every Gemma writes the same way."""
    return dict(
        max_position_embeddings=c.context, hidden_size=c.d_model, num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads, head_dim=c.d_head,
        intermediate_size=c.d_mlp, rms_norm_eps=c.norm_eps, attention_bias=c.bias,
        attention_dropout=0.0, **{act: "gelu_pytorch_tanh"}, **common_fields(c),
    )  # fmt: skip


def config_from_hf(hf: dict, where: str) -> Config:
    """The jaxformer ``Config`` of an HF Gemma ``config.json``."""
    theta = rope_theta(hf, where)
    return make_config(
        where, family=FAMILY, **fields(hf, where, HF_DEFAULTS), rope_theta=float(theta)
    )


def config_to_hf(c: Config) -> dict:
    """The HF ``config.json`` of ``c`` (``models.families.gemma.check`` has refused what
    Gemma does not compute)."""
    return fields_to_hf(c) | dict(
        architectures=[ARCHITECTURE], model_type=MODEL_TYPE,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
    )  # fmt: skip


# -- the layer types of Gemma 2 and 3 ------------------------------------------------------
SLIDING, FULL = "sliding_attention", "full_attention"


def pattern_of(where: str, types: list, w: int | None) -> tuple[int | None, int | None]:
    """(sliding_window, global_every) of HF's ``layer_types``: every layer sliding (w, None),
    none (None, None), or the layers l with (l + 1) mod p = 0 full and the rest sliding
    (w, p). Any other pattern is refused, naming it."""
    if not set(types) <= {SLIDING, FULL}:
        raise reject(where, "layer_types", types, f"only {SLIDING} and {FULL} are implemented")
    if SLIDING in types and w is None:
        raise reject(where, "sliding_window", None, f"{SLIDING} layers need a window")
    if FULL not in types:
        return w, None
    if SLIDING not in types:
        return None, None
    p = types.index(FULL) + 1
    if types != types_of(len(types), p):
        raise reject(
            where, "layer_types", types,
            "jaxformer's layers are global when l + 1 is a multiple of global_every, else "
            "sliding; this pattern is not of that form",
        )  # fmt: skip
    return w, p


def types_of(L: int, every: int | None, window: int | None = 1) -> list[str]:
    """HF's ``layer_types`` of L layers, global when (l + 1) mod every = 0."""
    if window is None:
        return [FULL] * L
    return [FULL if every and (l + 1) % every == 0 else SLIDING for l in range(L)]
