"""GPT-NeoX / Pythia: HF ``GPTNeoXForCausalLM`` ↔ jaxformer ``family="gpt_neox"``.

HF stores ``nn.Linear`` weights [out, in] and computes ``x @ Wᵀ``, so every matrix is
transposed. q, k and v are fused per head: row ``h·3k + i`` of ``query_key_value`` is
q^h_i for i < k, k^h_{i−k} for k ≤ i < 2k, v^h_{i−2k} after. Per layer ``l`` (HF names
under ``gpt_neox.``; H heads of size k = d/H):

    layers.l.input_layernorm.weight / .bias           [d]      → blocks.ln1.gamma / beta
    layers.l.attention.query_key_value.weight         [3d, d]  → ᵀ [d, H, (q|k|v), k]
                                                                 → W_Q, W_K, W_V [H, d, k]
    layers.l.attention.query_key_value.bias           [3d]     → [H, (q|k|v), k] → b_Q, b_K, b_V
    layers.l.attention.dense.weight                   [d, d]   → ᵀ [H·k, d] → W_O [H, k, d]
    layers.l.attention.dense.bias                     [d]      → b_O
    (the attention biases only with attention_bias=true: jaxformer's bias)
    layers.l.post_attention_layernorm.weight / .bias  [d]      → blocks.ln2.gamma / beta
    layers.l.mlp.dense_h_to_4h.weight / .bias         [m, d], [m] → ᵀ W_in [d, m], b_in
    layers.l.mlp.dense_4h_to_h.weight / .bias         [d, m], [d] → ᵀ W_out [m, d], b_out
    embed_in.weight [V, d] → embed.W_E;   final_layer_norm → ln_f
    embed_out.weight [V, d] → unembed.W_U = embed_out.weightᵀ   (absent when tied; also
                                                                  read as lm_head.weight)

RoPE needs no permutation: HF rotates (x_j, x_{j+r/2}) of the first r = ⌊rotary_pct·k⌋
coordinates of each head with θ^(−2j/r), as ``layers.Attention`` with ``rotary_dim=r``.
The config is read in both spellings: ``rotary_pct`` / ``rotary_emb_base`` (the Hub's
Pythia files) and ``rope_parameters.partial_rotary_factor`` / ``rope_theta``
(transformers ≥ 5). Old checkpoints' buffers (causal masks, ``inv_freq``) are ignored.
"""

from __future__ import annotations

import numpy as np

from ...models import Config
from ..hf_config import common_fields, make_config, reject
from ..mapping import Checkpoint, stack, unstack

MODEL_TYPE, FAMILY = "gpt_neox", "gpt_neox"
ARCHITECTURE = "GPTNeoXForCausalLM"
PREFIX = "gpt_neox."
IGNORE = r"\.attention\.(bias|masked_bias)$|(^|\.)rotary_emb\.inv_freq$"

ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
               "relu": "relu", "silu": "silu"}  # fmt: skip
_TO_HF_ACTIVATION = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def rope(hf: dict, where: str) -> tuple[float, float]:
    """(θ, rotary fraction) of plain RoPE, as transformers reads them: ``rope_scaling``
    (older files) or ``rope_parameters``, else ``rotary_emb_base`` and ``rotary_pct``."""
    field = "rope_scaling" if hf.get("rope_scaling") else "rope_parameters"
    params = hf.get(field) or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        raise reject(where, f"{field}.rope_type", kind, "only plain RoPE ('default') is built")
    theta = params.get("rope_theta", hf.get("rotary_emb_base", 10000.0))
    return float(theta), float(params.get("partial_rotary_factor", hf.get("rotary_pct", 0.25)))


def config_from_hf(hf: dict, where: str) -> Config:
    """The jaxformer ``Config`` of an HF GPT-NeoX ``config.json`` (HF's defaults if absent)."""
    act = hf.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise reject(where, "hidden_act", act, f"choose one of {list(ACTIVATIONS)}")
    d, H = hf.get("hidden_size", 6144), hf.get("num_attention_heads", 64)
    if hf.get("head_dim") is not None and hf["head_dim"] * H != d:
        raise reject(where, "head_dim", hf["head_dim"], f"GPT-NeoX's heads are d/H ({d}/{H})")
    theta, fraction = rope(hf, where)
    # Dropout (hidden_dropout, attention_dropout) acts in training only: the same function.
    return make_config(
        where,
        family="gpt_neox",
        vocab_size=hf.get("vocab_size", 50432),
        context=hf.get("max_position_embeddings", 2048),
        n_layers=hf.get("num_hidden_layers", 44),
        d_model=d,
        n_heads=H,
        d_mlp=hf.get("intermediate_size", 24576),
        activation=ACTIVATIONS[act],
        positional="rope",
        norm_eps=hf.get("layer_norm_eps", 1e-5),
        rope_theta=theta,
        rotary_fraction=fraction,
        tied=hf.get("tie_word_embeddings", False),
        bias=hf.get("attention_bias", True),
        parallel_residual=hf.get("use_parallel_residual", True),
        init_std=hf.get("initializer_range") or 0.02,
    )


def config_to_hf(c: Config) -> dict:
    """The HF ``config.json`` of ``c`` (the family's check has refused what HF lacks)."""
    fraction = c.rotary_fraction  # HF's rotary dim int(k · pct) is Config.rotary_dim exactly
    return dict(
        architectures=[ARCHITECTURE],
        model_type=MODEL_TYPE,
        max_position_embeddings=c.context,
        hidden_size=c.d_model,
        num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads,
        intermediate_size=c.d_mlp,
        hidden_act=_TO_HF_ACTIVATION[c.activation],
        layer_norm_eps=c.norm_eps,
        rope_parameters={
            "rope_type": "default", "rope_theta": c.rope_theta, "partial_rotary_factor": fraction
        },
        rotary_pct=fraction,  # transformers < 5 reads these two
        rotary_emb_base=c.rope_theta,
        use_parallel_residual=c.parallel_residual,
        attention_bias=c.bias,
        attention_dropout=0.0,
        hidden_dropout=0.0,
        **common_fields(c),
    )  # fmt: skip


def params_from_hf(ckpt: Checkpoint, c: Config) -> dict:
    """HF GPT-NeoX tensors → the params pytree of ``build(c)``."""
    V, d, H, k, m = c.vocab_size, c.d_model, c.n_heads, c.d_head, c.d_mlp
    base = lambda name, *shape: ckpt.take(PREFIX + name, *shape)

    def layer(l: int) -> dict:
        t = lambda name, *shape: base(f"layers.{l}.{name}", *shape)
        ln = lambda name: {"gamma": t(f"{name}.weight", d), "beta": t(f"{name}.bias", d)}
        W_dHqk = t("attention.query_key_value.weight", 3 * d, d).T.reshape(d, H, 3, k)
        W_Q, W_K, W_V = (W_dHqk[:, :, i].transpose(1, 0, 2) for i in range(3))
        attn = {"W_Q": W_Q, "W_K": W_K, "W_V": W_V,
                "W_O": t("attention.dense.weight", d, d).T.reshape(H, k, d)}  # fmt: skip
        if c.bias:
            b_Hqk = t("attention.query_key_value.bias", 3 * d).reshape(H, 3, k)
            attn |= {"b_Q": b_Hqk[:, 0], "b_K": b_Hqk[:, 1], "b_V": b_Hqk[:, 2]}
            attn["b_O"] = t("attention.dense.bias", d)
        return {
            "ln1": ln("input_layernorm"),
            "attn": attn,
            "ln2": ln("post_attention_layernorm"),
            "mlp": {
                "W_in": t("mlp.dense_h_to_4h.weight", m, d).T,
                "b_in": t("mlp.dense_h_to_4h.bias", m),
                "W_out": t("mlp.dense_4h_to_h.weight", d, m).T,
                "b_out": t("mlp.dense_4h_to_h.bias", d),
            },
        }  # fmt: skip

    W_E = base("embed_in.weight", V, d)
    params = {
        "embed": {"W_E": W_E},
        "blocks": stack([layer(l) for l in range(c.n_layers)]),
        "ln_f": {"gamma": base("final_layer_norm.weight", d),
                 "beta": base("final_layer_norm.bias", d)},
        "unembed": unembedding(ckpt, W_E, c.tied),
    }  # fmt: skip
    ckpt.finish()
    return params


def unembedding(ckpt: Checkpoint, W_E: np.ndarray, tied: bool) -> dict:
    """``{"W_U": embed_out.weightᵀ}`` (the name of the Hub's files and of save_pretrained;
    transformers ≥ 5 calls the module lm_head), or ``{}`` when tied: a copy saved anyway
    must equal embed_in.weight."""
    V, d = W_E.shape
    head = next((n for n in ("embed_out.weight", "lm_head.weight") if ckpt.has(n)), None)
    if not tied:
        return {"W_U": ckpt.take(head or "embed_out.weight", V, d).T}
    if head is not None and not np.array_equal(ckpt.take(head, V, d), W_E):
        raise ValueError(
            f"{ckpt.where}: config.json says tie_word_embeddings=true but {head} differs from "
            "embed_in.weight; set tie_word_embeddings=false to keep both"
        )
    return {}


def params_to_hf(p: dict, c: Config) -> dict[str, np.ndarray]:
    """The params pytree of ``build(c)`` (numpy) → HF GPT-NeoX tensors (the inverse map)."""
    d = c.d_model
    ln = lambda name, g: {f"{name}.weight": g["gamma"], f"{name}.bias": g["beta"]}
    out = {"embed_in.weight": p["embed"]["W_E"], **ln("final_layer_norm", p["ln_f"])}
    for l, b in enumerate(unstack(p["blocks"], c.n_layers)):
        a, mlp, s = b["attn"], b["mlp"], f"layers.{l}."
        W_dHqk = np.stack([a["W_Q"], a["W_K"], a["W_V"]], axis=2).transpose(1, 0, 2, 3)
        out |= {s + k: v for k, v in ln("input_layernorm", b["ln1"]).items()}
        out |= {s + k: v for k, v in ln("post_attention_layernorm", b["ln2"]).items()}
        out |= {
            s + "attention.query_key_value.weight": W_dHqk.reshape(d, 3 * d).T,
            s + "attention.dense.weight": a["W_O"].reshape(d, d).T,
            s + "mlp.dense_h_to_4h.weight": mlp["W_in"].T,
            s + "mlp.dense_h_to_4h.bias": mlp["b_in"],
            s + "mlp.dense_4h_to_h.weight": mlp["W_out"].T,
            s + "mlp.dense_4h_to_h.bias": mlp["b_out"],
        }
        if c.bias:
            b_Hqk = np.stack([a["b_Q"], a["b_K"], a["b_V"]], axis=1)  # [H, (q|k|v), k]
            out[s + "attention.query_key_value.bias"] = b_Hqk.reshape(3 * d)
            out[s + "attention.dense.bias"] = a["b_O"]
    tensors = {PREFIX + name: a for name, a in out.items()}
    if not c.tied:
        tensors["embed_out.weight"] = p["unembed"]["W_U"].T
    return tensors
