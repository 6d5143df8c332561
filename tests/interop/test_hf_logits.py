"""from_hf / to_hf compute the same function as transformers (the independent reference).

Randomly initialised transformers models are built from config objects (no
download), saved with ``save_pretrained``, imported, and compared on random
token sequences; the export is loaded back with ``AutoModelForCausalLM``.
"""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_reference import hf_logits, load_hf, randomize, save_hf  # noqa: E402

from jaxformer import Config, build, logits  # noqa: E402
from jaxformer.core import is_param  # noqa: E402
from jaxformer.interop import from_hf, to_hf  # noqa: E402

TOL = 1e-5  # max |Δ logits| in float32
B, T = 2, 16


def tokens_for(V: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, (B, T))


GPT2 = {  # n_head not a power of two, untied heads, every activation, n_inner ≠ 4d
    "gpt2-h3-tied": dict(n_embd=12, n_head=3, n_layer=2),
    "gpt2-h5-untied-gelu": dict(
        n_embd=20, n_head=5, n_layer=2, tie_word_embeddings=False, activation_function="gelu",
        n_inner=24, layer_norm_epsilon=1e-3,
    ),
    "gpt2-h2-relu-bin": dict(n_embd=16, n_head=2, n_layer=3, activation_function="relu"),
    "gpt2-h2-relu2": dict(n_embd=16, n_head=2, n_layer=2, activation_function="relu2"),
}  # fmt: skip
LLAMA = {  # GQA and MQA, tied and untied, rope_theta ≠ 10000, head_dim ≠ d/H, biases
    "llama-gqa-untied": dict(
        hidden_size=16, num_attention_heads=4, num_key_value_heads=2, rope_theta=5e5,
        rms_norm_eps=1e-5,
    ),
    "llama-gqa-tied": dict(
        hidden_size=24, num_attention_heads=6, num_key_value_heads=3, rope_theta=1000.0,
        tie_word_embeddings=True,
    ),
    "llama-mqa-bias": dict(
        hidden_size=16, num_attention_heads=4, num_key_value_heads=1, head_dim=6,
        attention_bias=True, rope_theta=2e4,
    ),
}  # fmt: skip


def build_hf(name: str):
    V = 61
    if name in GPT2:
        cls, kw = transformers.GPT2LMHeadModel, dict(n_positions=T, **GPT2[name])
    else:
        cls = transformers.LlamaForCausalLM
        kw = dict(max_position_embeddings=T, intermediate_size=40, num_hidden_layers=2)
        kw |= LLAMA[name]
    # eager attention: the exact reference, not a fused kernel
    cfg = cls.config_class(vocab_size=V, attn_implementation="eager", **kw)
    return randomize(cls(cfg), seed=len(name))


@pytest.mark.parametrize("name", [*GPT2, *LLAMA])
def test_from_hf_and_back_match_transformers(name, tmp_path):
    hf = build_hf(name)
    src, out = tmp_path / "hf", tmp_path / "out"
    save_hf(hf, src, bin=name.endswith("-bin"))
    tokens = tokens_for(hf.config.vocab_size, seed=1)
    ref = hf_logits(hf, tokens)
    assert np.abs(ref).max() > 1.0  # non-trivial logits

    model, params = from_hf(src)
    assert np.abs(np.asarray(logits(model, params, tokens)) - ref).max() <= TOL

    to_hf(model, params, out)
    assert np.abs(hf_logits(load_hf(out), tokens) - ref).max() <= TOL


@pytest.mark.parametrize(
    "config",
    [  # what only jaxformer makes: no biases and sinusoidal positions (gpt2); tied llama
        Config(family="gpt2", vocab_size=53, context=T, n_layers=2, d_model=12, n_heads=3,
               bias=False, positional="sinusoidal", activation="silu"),
        Config(family="llama", vocab_size=53, context=T, n_layers=2, d_model=16, n_heads=4,
               n_kv_heads=2, d_mlp=24, tied=True, bias=True, rope_theta=3e4),
    ],
    ids=["gpt2-nobias-sinusoidal", "llama-tied-bias"],
)  # fmt: skip
def test_jaxformer_model_opens_in_transformers(config, tmp_path):
    model = build(config)
    rng = np.random.default_rng(0)  # every parameter random: gains ≠ 1 and biases ≠ 0 too
    draw = lambda p: (p.fill + 0.3 * rng.standard_normal(p.shape)).astype(np.float32)
    params = jax.tree.map(draw, model.spec(), is_leaf=is_param)
    tokens = tokens_for(config.vocab_size, seed=2)
    ours = np.asarray(logits(model, params, tokens))
    assert np.abs(ours).max() > 1.0

    to_hf(model, params, tmp_path / "hf")
    assert np.abs(hf_logits(load_hf(tmp_path / "hf"), tokens) - ours).max() <= TOL
