"""GPT-2: HF ``GPT2LMHeadModel`` ↔ jaxformer ``family="gpt2"``, its config and its weights.

HF GPT-2 uses ``Conv1D``, which computes ``x @ W + b`` with W stored [in, out]
(the transpose of ``nn.Linear``), so most matrices map without a transpose.
Per layer ``l`` (HF names under ``transformer.``; d = n_embd, H heads of k = d/H):

    h.l.ln_1.weight / .bias        [d]        → blocks.ln1.gamma / beta
    h.l.attn.c_attn.weight         [d, 3d]    → columns [q | k | v], each [d, H·k]
                                                → W_Q, W_K, W_V [H, d, k] (split the heads)
    h.l.attn.c_attn.bias           [3d]       → b_Q, b_K, b_V [H, k]
    h.l.attn.c_proj.weight         [d, d]     → W_O [H, k, d] (rows are the heads' z, concatenated)
    h.l.attn.c_proj.bias           [d]        → b_O
    h.l.ln_2.weight / .bias        [d]        → blocks.ln2.gamma / beta
    h.l.mlp.c_fc.weight / .bias    [d, m], [m] → W_in, b_in
    h.l.mlp.c_proj.weight / .bias  [m, d], [d] → W_out, b_out
    wte.weight [V, d] → embed.W_E;   wpe.weight [ctx, d] → pos.W_pos;   ln_f → ln_f
    lm_head.weight [V, d] → unembed.W_U = lm_head.weightᵀ [d, V]   (absent when tied)

Layers are stacked on a leading L axis (the layout of ``repeat``). The buffers
``h.l.attn.bias`` / ``masked_bias`` (causal masks that old checkpoints saved)
are ignored.
"""

from __future__ import annotations

import numpy as np

from ...layers.positional import sinusoid_table
from ...models import Config
from ..hf_config import common_fields, make_config, reject
from ..mapping import Checkpoint, merge_heads, split_heads, stack, unstack

MODEL_TYPE, FAMILY = "gpt2", "gpt2"
ARCHITECTURE = "GPT2LMHeadModel"
PREFIX = "transformer."
IGNORE = r"(^|\.)attn\.(bias|masked_bias)$"


# HF activation_function → jaxformer activation. gelu_new and gelu_pytorch_tanh
# are both the tanh approximation 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))).
GPT2_ACTIVATIONS = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
    "relu2": "relu2",
    "silu": "silu",
    "swish": "silu",
}
_TO_HF_ACTIVATION = {
    "gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "relu2": "relu2", "silu": "silu"
}  # fmt: skip


def config_from_hf(hf: dict, where: str) -> Config:
    """The jaxformer ``Config`` of an HF GPT-2 ``config.json``."""
    for field, ok, why in (
        ("scale_attn_weights", True, "jaxformer always scales the scores by 1/√k"),
        ("scale_attn_by_inverse_layer_idx", False, "jaxformer does not scale by 1/(layer+1)"),
        ("add_cross_attention", False, "jaxformer is decoder-only"),
    ):
        if hf.get(field, ok) != ok:
            raise reject(where, field, hf[field], why)
    # reorder_and_upcast_attn only changes the order of operations in half precision;
    # the function is the same, so it is accepted.
    act = hf.get("activation_function", "gelu_new")
    if act not in GPT2_ACTIVATIONS:
        raise reject(where, "activation_function", act, f"choose one of {list(GPT2_ACTIVATIONS)}")
    d = hf.get("n_embd", 768)
    return make_config(
        where,
        family="gpt2",
        vocab_size=hf.get("vocab_size", 50257),
        context=hf.get("n_positions", 1024),
        n_layers=hf.get("n_layer", 12),
        d_model=d,
        n_heads=hf.get("n_head", 12),
        d_mlp=hf.get("n_inner") or 4 * d,
        activation=GPT2_ACTIVATIONS[act],
        positional="learned",
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        tied=hf.get("tie_word_embeddings", True),
        bias=True,
        init_std=hf.get("initializer_range") or 0.02,
    )


def config_to_hf(c: Config) -> dict:
    """The HF ``config.json`` of ``c``; fails naming the field GPT-2 cannot express."""
    if c.norm != "layernorm":
        raise ValueError(f"to_hf: GPT-2 normalises with LayerNorm, got norm={c.norm!r}")
    for field in ("qk_norm", "sliding_window"):  # the model computes them; HF GPT-2 cannot
        if getattr(c, field) is not None:
            raise ValueError(
                f"to_hf: HF's GPT-2 has no {field}, got {field}={getattr(c, field)!r}; "
                "export a family that has it (qwen3: qk_norm; mistral: sliding_window)"
            )
    if c.n_kv_heads != c.n_heads or c.d_head * c.n_heads != c.d_model:
        raise ValueError(
            f"to_hf: GPT-2 needs n_kv_heads = n_heads and d_head = d_model/n_heads, got "
            f"n_kv_heads={c.n_kv_heads}, d_head={c.d_head} (d_model={c.d_model}, "
            f"n_heads={c.n_heads})"
        )
    return dict(
        architectures=["GPT2LMHeadModel"],
        model_type="gpt2",
        n_positions=c.context,
        n_embd=c.d_model,
        n_layer=c.n_layers,
        n_head=c.n_heads,
        n_inner=c.d_mlp,
        activation_function=_TO_HF_ACTIVATION[c.activation],
        layer_norm_epsilon=c.norm_eps,
        attn_pdrop=0.0,  # jaxformer has no dropout: the HF model computes the same function
        embd_pdrop=0.0,
        resid_pdrop=0.0,
        scale_attn_weights=True,
        **common_fields(c),
    )


def params_from_hf(ckpt: Checkpoint, c: Config) -> dict:
    """HF GPT-2 tensors → the params pytree of ``build(c)``."""
    V, d, H, k, m = c.vocab_size, c.d_model, c.n_heads, c.d_head, c.d_mlp
    base = lambda name, *shape: ckpt.take(PREFIX + name, *shape)

    def layer(l: int) -> dict:
        t = lambda name, *shape: base(f"h.{l}.{name}", *shape)
        W_qkv, b_qkv = t("attn.c_attn.weight", d, 3 * d), t("attn.c_attn.bias", 3 * d)
        W_Q, W_K, W_V = (split_heads(W, H) for W in np.split(W_qkv, 3, axis=1))
        b_Q, b_K, b_V = (b.reshape(H, k) for b in np.split(b_qkv, 3))
        return {
            "ln1": {"gamma": t("ln_1.weight", d), "beta": t("ln_1.bias", d)},
            "attn": {
                "W_Q": W_Q, "W_K": W_K, "W_V": W_V, "b_Q": b_Q, "b_K": b_K, "b_V": b_V,
                "W_O": t("attn.c_proj.weight", d, d).reshape(H, k, d),
                "b_O": t("attn.c_proj.bias", d),
            },
            "ln2": {"gamma": t("ln_2.weight", d), "beta": t("ln_2.bias", d)},
            "mlp": {
                "W_in": t("mlp.c_fc.weight", d, m), "b_in": t("mlp.c_fc.bias", m),
                "W_out": t("mlp.c_proj.weight", m, d), "b_out": t("mlp.c_proj.bias", d),
            },
        }  # fmt: skip

    W_E = base("wte.weight", V, d)
    params = {
        "embed": {"W_E": W_E},
        "pos": {"W_pos": base("wpe.weight", c.context, d)},
        "blocks": stack([layer(l) for l in range(c.n_layers)]),
        "ln_f": {"gamma": base("ln_f.weight", d), "beta": base("ln_f.bias", d)},
        "unembed": ckpt.unembedding(W_E, c.tied, "wte.weight"),
    }
    ckpt.finish()
    return params


def params_to_hf(p: dict, c: Config) -> dict[str, np.ndarray]:
    """The params pytree of ``build(c)`` (numpy) → HF GPT-2 tensors (the inverse map)."""
    d, L, H, k, m = c.d_model, c.n_layers, c.n_heads, c.d_head, c.d_mlp
    blocks = p["blocks"]
    if not c.bias:  # HF GPT-2 always has biases: zero ones compute the same function
        z = lambda *shape: np.zeros((L, *shape), np.float32)
        attn_b = {"b_Q": z(H, k), "b_K": z(H, k), "b_V": z(H, k), "b_O": z(d)}
        mlp_b = {"b_in": z(m), "b_out": z(d)}
        blocks = blocks | {"attn": blocks["attn"] | attn_b, "mlp": blocks["mlp"] | mlp_b}
    out = {"wte.weight": p["embed"]["W_E"]}
    out["wpe.weight"] = (
        p["pos"]["W_pos"] if c.positional == "learned" else sinusoid_table(c.context, d)
    )
    for l, b in enumerate(unstack(blocks, L)):
        a, mlp = b["attn"], b["mlp"]
        qkv = [merge_heads(a[W]) for W in ("W_Q", "W_K", "W_V")]
        b_qkv = [a[n].reshape(-1) for n in ("b_Q", "b_K", "b_V")]
        out |= {
            f"h.{l}.ln_1.weight": b["ln1"]["gamma"], f"h.{l}.ln_1.bias": b["ln1"]["beta"],
            f"h.{l}.attn.c_attn.weight": np.concatenate(qkv, axis=1),
            f"h.{l}.attn.c_attn.bias": np.concatenate(b_qkv),
            f"h.{l}.attn.c_proj.weight": a["W_O"].reshape(H * k, d),
            f"h.{l}.attn.c_proj.bias": a["b_O"],
            f"h.{l}.ln_2.weight": b["ln2"]["gamma"], f"h.{l}.ln_2.bias": b["ln2"]["beta"],
            f"h.{l}.mlp.c_fc.weight": mlp["W_in"], f"h.{l}.mlp.c_fc.bias": mlp["b_in"],
            f"h.{l}.mlp.c_proj.weight": mlp["W_out"], f"h.{l}.mlp.c_proj.bias": mlp["b_out"],
        }  # fmt: skip
    out |= {"ln_f.weight": p["ln_f"]["gamma"], "ln_f.bias": p["ln_f"]["beta"]}
    tensors = {PREFIX + name: a for name, a in out.items()}
    if not c.tied:
        tensors["lm_head.weight"] = p["unembed"]["W_U"].T
    return tensors
