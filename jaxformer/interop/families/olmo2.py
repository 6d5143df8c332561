"""OLMo 2: HF ``Olmo2ForCausalLM`` ↔ jaxformer ``family="olmo2"``.

LLaMA's tensors (``llama.py``: every projection transposed, the heads split) without the
norms before attention and MLP, with norms after them and on q and k. Per layer ``l``
(under ``model.``; H query and G key/value heads of size k):

    layers.l.self_attn.q_proj / k_proj / v_proj / o_proj   as LLaMA's (biases with
                                                           attention_bias, on all four)
    layers.l.self_attn.q_norm.weight           [H·k] → blocks.attn.gamma_Q [H, k]
    layers.l.self_attn.k_norm.weight           [G·k] → blocks.attn.gamma_K [G, k]
    layers.l.post_attention_layernorm.weight   [d]   → blocks.ln1_post.gamma  (N_1')
    layers.l.post_feedforward_layernorm.weight [d]   → blocks.ln2_post.gamma  (N_2')
    layers.l.mlp.gate_proj / up_proj / down_proj  as LLaMA's
    embed_tokens, norm, lm_head                    as LLaMA's

HF normalises the whole q_proj output (H·k coordinates) before splitting it into heads,
and the whole k_proj output (G·k): jaxformer's ``qk_norm="all"`` over [H, k] and [G, k],
γ row-major as the split. ε is ``rms_norm_eps`` for all five norms.
"""

from __future__ import annotations

import numpy as np

from ...models import Config
from ...models import layout as N
from ..hf_config import make_config, reject
from ..mapping import Checkpoint, merge_heads, split_heads, stack, unstack
from . import llama

MODEL_TYPE, FAMILY = "olmo2", "olmo2"
ARCHITECTURE = "Olmo2ForCausalLM"
PREFIX, IGNORE = llama.PREFIX, llama.IGNORE

# Olmo2Config's defaults, for the fields that llama.config_from_hf reads.
HF_DEFAULTS = dict(
    vocab_size=50304, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
    num_attention_heads=32, max_position_embeddings=2048, rms_norm_eps=1e-5,
    tie_word_embeddings=False, attention_bias=False,
)  # fmt: skip
# jaxformer's SwiGLU weight, HF's tensor, its HF shape [out, in].
MLP = lambda d, m: (("W_gate", "gate_proj", (m, d)), ("W_in", "up_proj", (m, d)),
                    ("W_out", "down_proj", (d, m)))  # fmt: skip
NORMS = ((N.LN1_POST, "post_attention_layernorm"), (N.LN2_POST, "post_feedforward_layernorm"))


def config_from_hf(hf: dict, where: str) -> Config:
    """The jaxformer ``Config`` of an HF OLMo 2 ``config.json``."""
    for field in ("sliding_window", "layer_types"):  # OLMo 3's; Olmo2Model would ignore them
        if hf.get(field) is not None:
            raise reject(where, field, hf[field], "OLMo 2 attends to the whole prefix")
    read = {k: v for k, v in (HF_DEFAULTS | hf).items() if k != "mlp_bias"}
    c = llama.config_from_hf(read, where).to_dict()
    return make_config(where, **(c | dict(family=FAMILY, qk_norm="all")))


def config_to_hf(c: Config) -> dict:
    """The HF ``config.json`` of ``c`` (``models.families.olmo2.check`` has refused what
    OLMo 2 does not compute)."""
    hf = {k: v for k, v in llama.config_to_hf(c).items() if k != "mlp_bias"}
    return hf | dict(architectures=[ARCHITECTURE], model_type=MODEL_TYPE)


def params_from_hf(ckpt: Checkpoint, c: Config) -> dict:
    """HF OLMo 2 tensors → the params pytree of ``build(c)``."""
    V, d, H, G, k, m = c.vocab_size, c.d_model, c.n_heads, c.n_kv_heads, c.d_head, c.d_mlp

    def layer(l: int) -> dict:
        t = lambda name, *shape: ckpt.take(f"{PREFIX}layers.{l}.{name}", *shape)
        proj = lambda name, n: split_heads(t(f"self_attn.{name}.weight", n * k, d).T, n)
        attn = {
            "W_Q": proj("q_proj", H), "W_K": proj("k_proj", G), "W_V": proj("v_proj", G),
            "W_O": t("self_attn.o_proj.weight", d, H * k).T.reshape(H, k, d),
            "gamma_Q": t("self_attn.q_norm.weight", H * k).reshape(H, k),
            "gamma_K": t("self_attn.k_norm.weight", G * k).reshape(G, k),
        }  # fmt: skip
        if c.bias:
            for b, name, n in (("b_Q", "q_proj", H), ("b_K", "k_proj", G), ("b_V", "v_proj", G)):
                attn[b] = t(f"self_attn.{name}.bias", n * k).reshape(n, k)
            attn["b_O"] = t("self_attn.o_proj.bias", d)
        mlp = {W: t(f"mlp.{name}.weight", *shape).T for W, name, shape in MLP(d, m)}
        norms = {ln: {"gamma": t(f"{hf}.weight", d)} for ln, hf in NORMS}
        return {"attn": attn, "mlp": mlp} | norms

    W_E = ckpt.take(PREFIX + "embed_tokens.weight", V, d)
    params = {
        "embed": {"W_E": W_E},
        "blocks": stack([layer(l) for l in range(c.n_layers)]),
        "ln_f": {"gamma": ckpt.take(PREFIX + "norm.weight", d)},
        "unembed": ckpt.unembedding(W_E, c.tied, "embed_tokens.weight"),
    }
    ckpt.finish()
    return params


def params_to_hf(p: dict, c: Config) -> dict[str, np.ndarray]:
    """The params pytree of ``build(c)`` (numpy) → HF OLMo 2 tensors (the inverse map)."""
    out = {"embed_tokens.weight": p["embed"]["W_E"], "norm.weight": p["ln_f"]["gamma"]}
    for l, b in enumerate(unstack(p["blocks"], c.n_layers)):
        a, s = b["attn"], f"layers.{l}."
        out |= {
            s + "self_attn.q_proj.weight": merge_heads(a["W_Q"]).T,
            s + "self_attn.k_proj.weight": merge_heads(a["W_K"]).T,
            s + "self_attn.v_proj.weight": merge_heads(a["W_V"]).T,
            s + "self_attn.o_proj.weight": a["W_O"].reshape(-1, c.d_model).T,
            s + "self_attn.q_norm.weight": a["gamma_Q"].reshape(-1),
            s + "self_attn.k_norm.weight": a["gamma_K"].reshape(-1),
        }
        out |= {f"{s}mlp.{name}.weight": b["mlp"][W].T for W, name, _ in MLP(0, 0)}
        out |= {f"{s}{hf}.weight": b[ln]["gamma"] for ln, hf in NORMS}
        if c.bias:
            for name, proj in (("b_Q", "q"), ("b_K", "k"), ("b_V", "v"), ("b_O", "o")):
                out[f"{s}self_attn.{proj}_proj.bias"] = a[name].reshape(-1)
    tensors = {PREFIX + name: a for name, a in out.items()}
    if not c.tied:
        tensors["lm_head.weight"] = p["unembed"]["W_U"].T
    return tensors
