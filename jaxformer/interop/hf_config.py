"""HF ``config.json`` ↔ jaxformer ``Config``, for GPT-2 and the LLaMA family.

Read as plain JSON (transformers is not needed at run time). A field that
would make the HF model compute something jaxformer does not implement is
rejected with an error naming the field, rather than silently ignored.
"""

from __future__ import annotations

from ..models import Config

SUPPORTED = ("gpt2", "llama")

# HF activation_function → jaxformer activation. gelu_new and gelu_pytorch_tanh
# are both the tanh approximation 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))).
GPT2_ACTIVATIONS = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
_TO_HF_ACTIVATION = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}


def config_from_hf(hf: dict, where: str = "config.json") -> Config:
    """The jaxformer ``Config`` of an HF config dict (``config.json``)."""
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED:
        raise ValueError(
            f"{where}: model_type={model_type!r} is not supported; jaxformer imports "
            f"{list(SUPPORTED)} (GPT2LMHeadModel, LlamaForCausalLM)"
        )
    return (_gpt2 if model_type == "gpt2" else _llama)(hf, where)


def _config(where: str, **fields) -> Config:
    try:
        return Config(**fields)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from e


def _reject(where: str, field: str, value, why: str) -> ValueError:
    return ValueError(f"{where}: {field}={value!r} is not supported: {why}")


def _gpt2(hf: dict, where: str) -> Config:
    for field, ok, why in (
        ("scale_attn_weights", True, "jaxformer always scales the scores by 1/√k"),
        ("scale_attn_by_inverse_layer_idx", False, "jaxformer does not scale by 1/(layer+1)"),
        ("add_cross_attention", False, "jaxformer is decoder-only"),
    ):
        if hf.get(field, ok) != ok:
            raise _reject(where, field, hf[field], why)
    # reorder_and_upcast_attn only changes the order of operations in half precision;
    # the function is the same, so it is accepted.
    act = hf.get("activation_function", "gelu_new")
    if act not in GPT2_ACTIVATIONS:
        raise _reject(where, "activation_function", act, f"choose one of {list(GPT2_ACTIVATIONS)}")
    d = hf.get("n_embd", 768)
    return _config(
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


def _llama(hf: dict, where: str) -> Config:
    if hf.get("hidden_act", "silu") != "silu":
        raise _reject(where, "hidden_act", hf["hidden_act"], "LLaMA's SwiGLU uses silu")
    if hf.get("mlp_bias", False):
        raise _reject(where, "mlp_bias", True, "jaxformer's SwiGLU has no biases")
    theta = _rope_theta(hf, where)
    d, H = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
    return _config(
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


def _rope_theta(hf: dict, where: str) -> float:
    """θ of plain RoPE. transformers 5 keeps it in ``rope_parameters``; older files have
    a top-level ``rope_theta`` and a ``rope_scaling`` dict (or null)."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    field = "rope_parameters" if hf.get("rope_parameters") else "rope_scaling"
    if any(isinstance(v, dict) for v in rope.values()):
        raise _reject(where, field, rope, "RoPE per layer type is not implemented")
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise _reject(
            where, f"{field}.rope_type", kind, "only plain RoPE ('default') is implemented"
        )
    factor = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if factor != 1.0:
        raise _reject(where, "partial_rotary_factor", factor, "jaxformer rotates whole heads")
    return rope.get("rope_theta", hf.get("rope_theta", 10000.0))


def config_to_hf(c: Config) -> dict:
    """The HF config dict (``config.json``) of a jaxformer ``Config``; fails naming the field
    for what HF's GPT2LMHeadModel or LlamaForCausalLM cannot express exactly."""
    if c.attn_only:
        raise ValueError("to_hf: attn_only=True models have no MLP; HF's blocks always have one")
    if not c.final_norm:
        raise ValueError("to_hf: final_norm=False has no HF counterpart (ln_f/norm is always on)")
    common = dict(
        vocab_size=c.vocab_size,
        tie_word_embeddings=c.tied,
        initializer_range=c.init_std,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        dtype="float32",
        use_cache=True,
    )
    if c.family == "gpt2":
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
            **common,
        )
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
        **common,
    )
