"""Qwen2: HF ``Qwen2ForCausalLM`` ↔ jaxformer ``family="qwen2"``, LLaMA's mapping plus the
biases of q, k and v (``o_proj`` has none). Per layer ``l`` (under ``model.``):

    layers.l.self_attn.q_proj.bias     [H·k] → blocks.attn.b_Q [H, k]
    layers.l.self_attn.k_proj / v_proj.bias   [G·k] → b_K, b_V [G, k]

and every other tensor as in ``llama.py``. The window: HF's layer l slides (sees
i − w < j ≤ i, w = ``sliding_window``) when ``layer_types[l]`` is "sliding_attention",
which by default is ``use_sliding_window`` and l ≥ ``max_window_layers``; jaxformer
imports a window on every layer or on none, and exports one as ``max_window_layers=0``.
"""

from __future__ import annotations

import numpy as np

from ...models import Config
from ...models.config import EXPERT_FIELDS
from ..mapping import Checkpoint, stack, unstack
from . import llama, mistral

MODEL_TYPE, FAMILY = "qwen2", "qwen2"
ARCHITECTURE = "Qwen2ForCausalLM"
PREFIX, IGNORE = llama.PREFIX, llama.IGNORE

# Qwen2Config's defaults, for the fields that llama.config_from_hf reads.
HF_DEFAULTS = dict(
    vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=32768,
    rms_norm_eps=1e-6, tie_word_embeddings=False,
)  # fmt: skip


# jaxformer's bias, HF's projection, its heads (of H query and G key/value heads).
BIASES = lambda H, G: (("b_Q", "q", H), ("b_K", "k", G), ("b_V", "v", G))


def window(hf: dict, where: str, L: int) -> int | None:
    """Qwen's one window: each layer's as Qwen2Config sets it, the same for all."""
    w = hf.get("sliding_window", 4096) if hf.get("use_sliding_window", False) else None
    if hf.get("layer_types"):
        return mistral.uniform_window(where, hf["layer_types"], w)
    first = hf.get("max_window_layers", 28)
    types = [
        "sliding_attention" if w is not None and l >= first else "full_attention" for l in range(L)
    ]
    return mistral.uniform_window(where, types, w, ("max_window_layers", first))


def config_from_hf(hf: dict, where: str, defaults=HF_DEFAULTS, **fields) -> Config:
    """The jaxformer ``Config`` of an HF Qwen2 ``config.json`` (Qwen3 too: its ``defaults``
    and ``fields``)."""
    L = hf.get("num_hidden_layers", defaults["num_hidden_layers"])
    fields = dict(family=FAMILY, bias=True, out_bias=False) | fields
    return mistral.llama_config(hf, defaults, where, sliding_window=window(hf, where, L), **fields)


def config_to_hf(c: Config, model_type=MODEL_TYPE, architecture=ARCHITECTURE) -> dict:
    """The HF ``config.json`` of ``c`` (``models.families.qwen2.check`` has refused what
    Qwen2 does not compute)."""
    w, L = c.sliding_window, c.n_layers
    hf = {k: v for k, v in llama.config_to_hf(c).items() if k not in mistral.NOT_READ}
    return hf | dict(
        architectures=[architecture], model_type=model_type, use_sliding_window=w is not None,
        sliding_window=w, max_window_layers=0 if w else L,
        layer_types=["sliding_attention" if w else "full_attention"] * L,
    )  # fmt: skip


def as_llama(c: Config, **changes) -> Config:
    """``c`` as the LLaMA config whose tensors llama.py maps: the rest is this family's."""
    off = dict(qk_norm=None, sliding_window=None) | dict.fromkeys(EXPERT_FIELDS)
    kw = dict(family="llama", **off) | changes
    return c.replace(**kw)


def qkv_biases(ckpt: Checkpoint, c: Config) -> dict:
    """b_Q [L, H, k], b_K, b_V [L, G, k] from the layers' q/k/v_proj.bias."""
    k, H, G = c.d_head, c.n_heads, c.n_kv_heads
    take = lambda l, p, n: ckpt.take(f"{PREFIX}layers.{l}.self_attn.{p}_proj.bias", n * k)
    layer = lambda l: {b: take(l, p, n).reshape(n, k) for b, p, n in BIASES(H, G)}
    return stack([layer(l) for l in range(c.n_layers)])


def params_from_hf(ckpt: Checkpoint, c: Config) -> dict:
    """HF Qwen2 tensors → the params pytree of ``build(c)``."""
    biases = qkv_biases(ckpt, c)  # taken first: llama's mapping then checks that none is left
    params = llama.params_from_hf(ckpt, as_llama(c, bias=False, out_bias=None))
    params["blocks"]["attn"] |= biases
    return params


def params_to_hf(p: dict, c: Config) -> dict[str, np.ndarray]:
    """The params pytree of ``build(c)`` (numpy) → HF Qwen2 tensors (the inverse map)."""
    out = llama.params_to_hf(p, as_llama(c, bias=False, out_bias=None))
    for l, a in enumerate(unstack(p["blocks"]["attn"], c.n_layers)):
        for b, proj, _ in BIASES(c.n_heads, c.n_kv_heads):
            out[f"{PREFIX}layers.{l}.self_attn.{proj}_proj.bias"] = a[b].reshape(-1)
    return out
