"""Mistral: HF ``MistralForCausalLM`` ↔ jaxformer ``family="mistral"``.

The weights are LLaMA's, tensor for tensor (``llama.params_from_hf`` / ``params_to_hf``:
q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, the two norms per layer,
embed_tokens, norm, lm_head; no biases). The config is LLaMA's plus ``sliding_window``
(an int, the same on every layer, or null for none: Mistral 7B v0.2 on), read with
MistralConfig's defaults for the fields a config.json leaves out.
"""

from __future__ import annotations

from ...models import Config
from ..hf_config import make_config, reject
from . import llama

MODEL_TYPE, FAMILY = "mistral", "mistral"
ARCHITECTURE = "MistralForCausalLM"
PREFIX, IGNORE = llama.PREFIX, llama.IGNORE
params_from_hf, params_to_hf = llama.params_from_hf, llama.params_to_hf

# MistralConfig's defaults, for the fields that llama.config_from_hf reads.
HF_DEFAULTS = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096 * 32,
    rms_norm_eps=1e-6, tie_word_embeddings=False,
)  # fmt: skip
# Fields of LlamaConfig that these models' configs do not have (their HF code reads none).
NOT_READ = ("attention_bias", "mlp_bias")


def llama_config(hf: dict, defaults: dict, where: str, **fields) -> Config:
    """``llama.config_from_hf`` of ``hf`` (``defaults`` for the fields it lacks, none of
    ``NOT_READ``), then ``fields`` (the family, its extras), validated."""
    read = {k: v for k, v in (defaults | hf).items() if k not in NOT_READ}
    return make_config(where, **(llama.config_from_hf(read, where).to_dict() | fields))


def uniform_window(where: str, types: list, w: int | None, why=("layer_types", None)) -> int | None:
    """The window every layer shares, ``types`` being HF's attention of each layer: w if
    all are "sliding_attention", None if all are "full_attention". A mix is refused,
    naming ``why``: the field that set the types, and its value (default: the types)."""
    field, value = why
    kinds = set(types)
    if not kinds <= {"full_attention", "sliding_attention"}:
        raise reject(where, "layer_types", types, "only full_attention and sliding_attention")
    if len(kinds) > 1:
        raise reject(
            where, field, types if value is None else value,
            f"its layers are {types}: some slide and some attend fully, and jaxformer's "
            "layers share one attention (set the window on every layer or on none)",
        )  # fmt: skip
    if kinds == {"sliding_attention"} and w is None:
        raise reject(where, "layer_types", types, "sliding layers need a sliding_window")
    return w if kinds == {"sliding_attention"} else None


def config_from_hf(hf: dict, where: str) -> Config:
    """The jaxformer ``Config`` of an HF Mistral ``config.json``."""
    w = hf.get("sliding_window", 4096)
    if hf.get("layer_types"):  # MistralModel masks every layer alike: the types must agree
        uniform_window(where, hf["layer_types"], w)
    return llama_config(hf, HF_DEFAULTS, where, family="mistral", sliding_window=w)


def config_to_hf(c: Config) -> dict:
    """The HF ``config.json`` of ``c`` (``models.families.mistral.check`` has refused what
    Mistral does not compute)."""
    hf = {k: v for k, v in llama.config_to_hf(c).items() if k not in NOT_READ}
    return hf | dict(
        architectures=[ARCHITECTURE], model_type=MODEL_TYPE, sliding_window=c.sliding_window
    )
