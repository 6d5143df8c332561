"""LLaMA: HF ``LlamaForCausalLM`` ↔ jaxformer ``family="llama"``, its config and its weights.

HF stores ``nn.Linear`` weights [out, in] and computes ``x @ Wᵀ``, so every
projection is transposed. Per layer ``l`` (HF names under ``model.``; H query
heads and G key/value heads of size k):

    layers.l.input_layernorm.weight          [d]      → blocks.ln1.gamma
    layers.l.self_attn.q_proj.weight         [H·k, d] → ᵀ [d, H·k] → W_Q [H, d, k]
    layers.l.self_attn.k_proj / v_proj      [G·k, d] → ᵀ [d, G·k] → W_K, W_V [G, d, k]
    layers.l.self_attn.o_proj.weight         [d, H·k] → ᵀ [H·k, d] → W_O [H, k, d]
    layers.l.self_attn.{q,k,v,o}_proj.bias   (attention_bias=true) → b_Q, b_K, b_V [·, k], b_O [d]
    layers.l.post_attention_layernorm.weight [d]      → blocks.ln2.gamma
    layers.l.mlp.gate_proj / up_proj.weight  [m, d]   → ᵀ W_gate, W_in [d, m]
    layers.l.mlp.down_proj.weight            [d, m]   → ᵀ W_out [m, d]
    embed_tokens.weight [V, d] → embed.W_E;   norm.weight → ln_f.gamma
    lm_head.weight [V, d] → unembed.W_U = lm_head.weightᵀ   (absent when tied)

RoPE needs no permutation: HF LLaMA rotates the pairs (x_j, x_{j+k/2}) of each
head ("rotate-half"), exactly as ``jaxformer.layers.rope`` does. (Meta's
original checkpoints pair neighbours (x_{2j}, x_{2j+1}) instead; HF's
conversion script permutes the rows of q_proj and k_proj into rotate-half, so
convert such a checkpoint with transformers first.) The old buffer
``rotary_emb.inv_freq`` is ignored: θ comes from config.json.
"""

from __future__ import annotations

import numpy as np

from ...models import Config
from ..hf_config import common_fields, make_config, reject, rope_theta
from ..mapping import Checkpoint, merge_heads, split_heads, stack, unstack

MODEL_TYPE, FAMILY = "llama", "llama"
ARCHITECTURE = "LlamaForCausalLM"
PREFIX = "model."
IGNORE = r"\.rotary_emb\.inv_freq$"


def config_from_hf(hf: dict, where: str) -> Config:
    """The jaxformer ``Config`` of an HF LLaMA ``config.json``."""
    if hf.get("hidden_act", "silu") != "silu":
        raise reject(where, "hidden_act", hf["hidden_act"], "LLaMA's SwiGLU uses silu")
    if hf.get("mlp_bias", False):
        raise reject(where, "mlp_bias", True, "jaxformer's SwiGLU has no biases")
    theta = rope_theta(hf, where)
    d, H = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
    return make_config(
        where,
        family="llama",
        vocab_size=hf.get("vocab_size", 32000),
        context=hf.get("max_position_embeddings", 2048),
        n_layers=hf.get("num_hidden_layers", 32),
        d_model=d,
        n_heads=H,
        n_kv_heads=hf.get("num_key_value_heads") or H,
        d_head=hf.get("head_dim") or d // H,
        d_mlp=hf.get("intermediate_size", 11008),
        positional="rope",
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=float(theta),
        tied=hf.get("tie_word_embeddings", False),
        bias=hf.get("attention_bias", False),  # on q, k, v and o: jaxformer's b_Q, b_K, b_V, b_O
        init_std=hf.get("initializer_range") or 0.02,
    )


def config_to_hf(c: Config) -> dict:
    """The HF ``config.json`` of ``c``; fails naming the field LLaMA cannot express."""
    if c.norm != "rmsnorm":
        raise ValueError(f"to_hf: LLaMA normalises with RMSNorm, got norm={c.norm!r}")
    return dict(
        architectures=["LlamaForCausalLM"],
        model_type="llama",
        max_position_embeddings=c.context,
        hidden_size=c.d_model,
        num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads,
        num_key_value_heads=c.n_kv_heads,
        head_dim=c.d_head,
        intermediate_size=c.d_mlp,
        hidden_act="silu",
        rms_norm_eps=c.norm_eps,
        # transformers ≥ 5 reads rope_parameters, older versions the top-level rope_theta.
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
        rope_theta=c.rope_theta,
        attention_bias=c.bias,
        attention_dropout=0.0,
        mlp_bias=False,
        **common_fields(c),
    )


def params_from_hf(ckpt: Checkpoint, c: Config, mlp=None) -> dict:
    """HF LLaMA tensors → the params pytree of ``build(c)``; ``mlp(l)``, if given, takes
    layer l's MLP params instead of the SwiGLU's (a mixture's: ``mixtral.py``)."""
    V, d, H, G, k, m = c.vocab_size, c.d_model, c.n_heads, c.n_kv_heads, c.d_head, c.d_mlp
    base = lambda name, *shape: ckpt.take(PREFIX + name, *shape)
    swiglu = lambda t: {
        "W_gate": t("mlp.gate_proj.weight", m, d).T,
        "W_in": t("mlp.up_proj.weight", m, d).T,
        "W_out": t("mlp.down_proj.weight", d, m).T,
    }

    def layer(l: int) -> dict:
        t = lambda name, *shape: base(f"layers.{l}.{name}", *shape)
        proj = lambda name, n: split_heads(t(f"self_attn.{name}.weight", n * k, d).T, n)
        attn = {
            "W_Q": proj("q_proj", H), "W_K": proj("k_proj", G), "W_V": proj("v_proj", G),
            "W_O": t("self_attn.o_proj.weight", d, H * k).T.reshape(H, k, d),
        }  # fmt: skip
        if c.bias:
            for b, name, n in (("b_Q", "q_proj", H), ("b_K", "k_proj", G), ("b_V", "v_proj", G)):
                attn[b] = t(f"self_attn.{name}.bias", n * k).reshape(n, k)
            attn["b_O"] = t("self_attn.o_proj.bias", d)
        return {
            "ln1": {"gamma": t("input_layernorm.weight", d)},
            "attn": attn,
            "ln2": {"gamma": t("post_attention_layernorm.weight", d)},
            "mlp": swiglu(t) if mlp is None else mlp(l),
        }

    W_E = base("embed_tokens.weight", V, d)
    params = {
        "embed": {"W_E": W_E},
        "blocks": stack([layer(l) for l in range(c.n_layers)]),
        "ln_f": {"gamma": base("norm.weight", d)},
        "unembed": ckpt.unembedding(W_E, c.tied, "embed_tokens.weight"),
    }
    ckpt.finish()
    return params


def params_to_hf(p: dict, c: Config, mlp=None) -> dict[str, np.ndarray]:
    """The params pytree of ``build(c)`` (numpy) → HF LLaMA tensors (the inverse map);
    ``mlp(params, l)``, if given, names layer l's MLP tensors (under ``model.``)."""
    out = {"embed_tokens.weight": p["embed"]["W_E"], "norm.weight": p["ln_f"]["gamma"]}
    for l, b in enumerate(unstack(p["blocks"], c.n_layers)):
        a, s = b["attn"], f"layers.{l}."
        out |= swiglu_to_hf(b["mlp"], s) if mlp is None else mlp(b["mlp"], l)
        out |= {
            s + "input_layernorm.weight": b["ln1"]["gamma"],
            s + "self_attn.q_proj.weight": merge_heads(a["W_Q"]).T,
            s + "self_attn.k_proj.weight": merge_heads(a["W_K"]).T,
            s + "self_attn.v_proj.weight": merge_heads(a["W_V"]).T,
            s + "self_attn.o_proj.weight": a["W_O"].reshape(-1, c.d_model).T,
            s + "post_attention_layernorm.weight": b["ln2"]["gamma"],
        }
        if c.bias:
            for name, proj in (("b_Q", "q"), ("b_K", "k"), ("b_V", "v"), ("b_O", "o")):
                out[f"{s}self_attn.{proj}_proj.bias"] = a[name].reshape(-1)
    tensors = {PREFIX + name: a for name, a in out.items()}
    if not c.tied:
        tensors["lm_head.weight"] = p["unembed"]["W_U"].T
    return tensors


def swiglu_to_hf(w: dict, layer: str) -> dict[str, np.ndarray]:
    """One layer's SwiGLU params → its HF tensors ``{layer}mlp.*_proj.weight``."""
    names = (("gate_proj", "W_gate"), ("up_proj", "W_in"), ("down_proj", "W_out"))
    return {f"{layer}mlp.{hf}.weight": w[ours].T for hf, ours in names}
