"""Gemma, Gemma 2 and Gemma 3 (text) against transformers' *ForCausalLM (the independent
reference): random models built from config objects (nothing is downloaded), every norm
weight random (gains 1 + w ≠ 1), logits of about 5–10; GQA and MQA, windows shorter than
the sequence, head sizes ≠ d/H, soft-caps that bite, local and global layers with their
own RoPE bases. The import, the export loaded back (an exact round trip), the refusals,
the released sizes' parameter counts (transformers' own count, on the meta device) and
describe's formulas and FLOPs. test_gemma_generation.py: the cache and generation.
"""

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gemma_hf import RTOL, T, V, build_hf, hf_class, tokens_for  # noqa: E402
from hf_reference import hf_logits, load_hf, rel, save_hf  # noqa: E402

from jaxformer import Config, build, logits  # noqa: E402
from jaxformer.describe import chain, describe  # noqa: E402
from jaxformer.interop import config_from_hf, from_hf, to_hf  # noqa: E402
from jaxformer.interop.safetensors_io import read_tensors  # noqa: E402
from jaxformer.models import PRESETS  # noqa: E402

S, F = "sliding_attention", "full_attention"
ROPE3 = {S: {"rope_type": "default", "rope_theta": 1e4}, F: {"rope_type": "default",
                                                              "rope_theta": 1e6}}  # fmt: skip
CONFIGS = {  # the window w < T = 16 wherever there is one; k = head_dim
    "gemma-mqa-h3-k10": dict(
        hidden_size=24, num_attention_heads=3, num_key_value_heads=1, head_dim=10,
    ),
    "gemma-gqa-k6-untied-bias": dict(
        hidden_size=16, num_attention_heads=4, num_key_value_heads=2, head_dim=6,
        tie_word_embeddings=False, attention_bias=True, rope_theta=5e4,
    ),
    "gemma2-gqa-w5-L3-capped": dict(
        hidden_size=24, num_attention_heads=4, num_key_value_heads=2, head_dim=6,
        sliding_window=5, num_hidden_layers=3, query_pre_attn_scalar=20,
        attn_logit_softcapping=3.0, final_logit_softcapping=8.0,
    ),
    "gemma2-mqa-k10-w3-uncapped": dict(
        hidden_size=20, num_attention_heads=5, num_key_value_heads=1, head_dim=10,
        sliding_window=3, attn_logit_softcapping=None, final_logit_softcapping=None,
    ),
    "gemma3-mqa-k8-w4-L3": dict(
        hidden_size=24, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
        sliding_window=4, num_hidden_layers=3, layer_types=[S, S, F], rope_parameters=ROPE3,
    ),
    "gemma3-gqa-k6-w5-capped-untied": dict(  # HF's Gemma 3 reads no attention cap
        hidden_size=16, num_attention_heads=4, num_key_value_heads=2, head_dim=6,
        sliding_window=5, layer_types=[S, F], query_pre_attn_scalar=12,
        attn_logit_softcapping=4.0, final_logit_softcapping=9.0, tie_word_embeddings=False,
    ),
}  # fmt: skip
FAMILY = lambda name: "gemma3_text" if name.startswith("gemma3") else name.split("-")[0]
WORST = {}  # name → the max relative difference of the import's logits (printed at the end)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_import_export_match_transformers_and_round_trip_exactly(name, tmp_path):
    family = FAMILY(name)
    hf = build_hf(family, CONFIGS[name])
    src, out = tmp_path / "hf", tmp_path / "out"
    save_hf(hf, src)
    tokens = tokens_for(1)
    ref = hf_logits(hf, tokens)
    assert 4 < np.abs(ref).max() < 20  # logits of the size of a trained model's

    model, params = from_hf(src)
    c = model.config
    assert c.family == family
    WORST[name] = rel(logits(model, params, tokens), ref)
    print(f"{name}: max relative logit difference {WORST[name]:.2e}")
    assert WORST[name] <= RTOL

    to_hf(model, params, out)
    assert rel(hf_logits(load_hf(out), tokens), ref) <= RTOL
    state = {k: v.numpy() for k, v in hf.state_dict().items()}
    if hf.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    written = read_tensors(out)
    assert written.keys() == state.keys()
    assert all(np.array_equal(written[k], state[k]) for k in state)  # tensor for tensor
    assert config_from_hf(json.loads((out / "config.json").read_text())) == c


def test_the_pieces_are_seen():
    """Each Gemma piece changes transformers' logits, so agreeing with them tests it: the
    window, the caps and the local RoPE base (the rest: the gains are random, ≠ 1)."""
    name = "gemma2-gqa-w5-L3-capped"
    base, tokens = CONFIGS[name], tokens_for(1)
    ref = hf_logits(build_hf("gemma2", base), tokens)
    for change in (dict(sliding_window=16), dict(attn_logit_softcapping=None),
                   dict(final_logit_softcapping=None)):  # fmt: skip
        assert rel(hf_logits(build_hf("gemma2", base | change), tokens), ref) > 1e-3, change
    g3 = CONFIGS["gemma3-mqa-k8-w4-L3"]
    ref3 = hf_logits(build_hf("gemma3_text", g3), tokens)
    same = {S: ROPE3[F], F: ROPE3[F]}
    assert rel(hf_logits(build_hf("gemma3_text", g3 | dict(rope_parameters=same)), tokens),
               ref3) > 1e-3  # fmt: skip


# -- what is refused ---------------------------------------------------------------------
def hf_dict(family: str, **kw) -> dict:
    """A config.json of transformers' own making (its defaults filled in) for ``kw``."""
    base = dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=4)
    cfg = hf_class(family).config_class(**(base | kw))
    return cfg.to_dict() | {"model_type": cfg.model_type}


REFUSED = {  # transformers computes these; jaxformer does not, and says which field
    "gemma-linear-rope": (
        "gemma", dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
        "rope_parameters.rope_type",
    ),
    "gemma-relu": ("gemma", dict(hidden_act="relu"), "hidden_act"),
    "gemma-bidirectional": ("gemma", dict(use_bidirectional_attention=True),
                            "use_bidirectional_attention"),
    "gemma2-odd-layer-types": ("gemma2", dict(layer_types=[F, S, S, F]), "layer_types"),
    "gemma2-exact-gelu": ("gemma2", dict(hidden_activation="gelu"), "hidden_activation"),
    "gemma3-linear-global": (
        "gemma3_text",
        dict(rope_parameters={S: {"rope_type": "default", "rope_theta": 1e4},
                              F: {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}}),
        "rope_parameters.full_attention.rope_type",
    ),
    "gemma3-yarn-local": (
        "gemma3_text",
        dict(rope_parameters={S: {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4},
                              F: {"rope_type": "default", "rope_theta": 1e6}}),
        "rope_parameters.sliding_attention.rope_type",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_import_refuses_what_it_does_not_compute_naming_the_field(case):
    family, kw, field = REFUSED[case]
    with pytest.raises(ValueError, match=f"config.json: {field}="):
        config_from_hf(hf_dict(family, **kw))


def test_import_reads_transformers_default_layer_types():
    """Gemma 2 alternates (sliding first), Gemma 3 slides five layers in six."""
    g2 = config_from_hf(hf_dict("gemma2", num_hidden_layers=4))
    assert (g2.sliding_window, g2.global_every) == (4096, 2)
    g3 = config_from_hf(hf_dict("gemma3_text", num_hidden_layers=12))
    assert (g3.sliding_window, g3.global_every, g3.rope_local_theta) == (4096, 6, 1e4)
    assert config_from_hf(hf_dict("gemma2", layer_types=[F] * 4)).sliding_window is None


@pytest.mark.parametrize(
    "family, field, value",
    [("gemma", "sliding_window", 4), ("gemma", "qk_norm", "head"), ("gemma2", "qk_norm", "head"),
     ("gemma3_text", "qk_norm", "all"), ("gemma3_text", "attn_softcap", 50.0),
     ("gemma2", "activation", "silu"),
     ("llama", "attn_softcap", 50.0), ("qwen3", "global_every", 2),
     ("gemma2", "global_every", 2)],  # the last: local layers without a window
)  # fmt: skip
def test_configs_refuse_what_the_family_does_not_compute(family, field, value):
    with pytest.raises(ValueError, match=f"Config.{field}="):
        Config(family, V, T, 2, 16, 4, **{field: value})


# -- presets: the released sizes ---------------------------------------------------------
# From the config.json of google/gemma-2b, google/gemma-2-2b, google/gemma-3-1b-pt and the
# parameter counts of their cards.
RELEASED = {
    "gemma-2b": (2_506_172_416, dict(
        model_type="gemma", vocab_size=256000, hidden_size=2048, intermediate_size=16384,
        num_hidden_layers=18, num_attention_heads=8, num_key_value_heads=1, head_dim=256,
        max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="gelu",
    )),
    "gemma-2-2b": (2_614_341_888, dict(
        model_type="gemma2", vocab_size=256000, hidden_size=2304, intermediate_size=9216,
        num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
        max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0,
        query_pre_attn_scalar=256, sliding_window=4096, attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0, hidden_activation="gelu_pytorch_tanh",
    )),
    "gemma-3-1b": (999_885_952, dict(
        model_type="gemma3_text", vocab_size=262144, hidden_size=1152, intermediate_size=6912,
        num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
        max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1_000_000.0,
        rope_local_base_freq=10000.0, query_pre_attn_scalar=256, sliding_window=512,
        sliding_window_pattern=6, hidden_activation="gelu_pytorch_tanh",
    )),
}  # fmt: skip


@pytest.mark.parametrize("name", list(RELEASED))
def test_presets_are_the_released_models_and_count_as_transformers(name):
    published, hf = RELEASED[name]
    cfg = transformers.AutoConfig.for_model(**hf)
    assert config_from_hf(hf) == PRESETS[name]  # the release's config.json is the preset
    assert config_from_hf(cfg.to_dict()) == PRESETS[name]  # as transformers writes it
    with torch.device("meta"):  # no memory, no download: transformers' own module tree
        m = transformers.AutoModelForCausalLM.from_config(cfg)
    hf_count = sum(p.numel() for p in m.parameters())  # a tied lm_head is the embedding
    model = build(PRESETS[name])
    ours = sum(x.size for x in jax.tree.leaves(jax.eval_shape(model.init, jax.random.key(0))))
    assert chain(model).count == ours == hf_count == published


def test_describe_renders_the_pieces_and_counts_their_flops():
    text = describe(PRESETS["gemma-2-2b"])
    assert "2,614,341,888 parameters" in text and text.startswith("gemma2:")
    assert "(1 + γ) ⊙ x_t / √(mean(x_t²) + ε)" in text  # Gemma's norm
    assert "(φ(x_t W_gate) ⊙ x_t W_in) W_out" in text  # GeGLU
    assert "x_i = 48 · W_E[t_i]" in text  # √2304
    assert "cap(s) = 50 · tanh(s / 50)" in text and "30 · tanh((x W_U) / 30)" in text
    assert "A^h = softmax(mask(cap(q^h k^hᵀ · 0.0625)))" in text  # 256^-½
    assert "local: 13, global: 13" in text
    g3 = describe(PRESETS["gemma-3-1b"])
    assert "N_Q, N_K: RMSNorm (1 + γ_Q, 1 + γ_K, ε = 1e-06)" in g3
    tex = describe(PRESETS["gemma-3-1b"], "latex")
    assert r"\theta = 10000" in tex and r"\theta = 1e+06" in tex  # the local and global bases
    assert r"\mathrm{RMSNorm}_{1 + \gamma_Q}" in tex
    assert "ln2_post" in describe(PRESETS["gemma-3-1b"], "markdown")
    assert r"\mathrm{ln2\_post}" in tex


def test_flops_are_the_hand_count():
    """FLOPs per token at T of Gemma 2 2B, by hand: per layer the projections, the scores
    and mix over all T keys, the softmax, scale, cap and mask, four norms, the GeGLU; then
    the √d scale, the final norm, the unembedding and its cap."""
    c, T_ = PRESETS["gemma-2-2b"].replace(attention="dense"), 1024
    d, H, G, k, m, V_ = c.d_model, c.n_heads, c.n_kv_heads, c.d_head, c.d_mlp, c.vocab_size
    rope = 3 * (H + G) * k
    per_key = lambda window: 4 * H * k + H * (5 + 1 + window) + 2 * H
    attn = lambda window, keys: 2 * d * k * (2 * H + 2 * G) + per_key(window) * keys + rope
    mlp = 6 * d * m + 9 * m  # tanh-GELU 8 per coordinate, the product 1
    block = lambda w, keys: attn(w, keys) + 4 * 4 * d + mlp + 2 * d  # two residual sums
    head = d + 4 * d + 2 * d * V_ + 2 * V_
    want = 13 * block(1, T_) + 13 * block(0, T_) + head
    assert chain(build(c), T_).flops == want
    # the math: a query sees (T + 1)/2 keys on average, in the local layers too (window 4096 > T)
    seen = (T_ + 1) / 2
    assert chain(build(c), T_).model_flops == 13 * block(1, seen) + 13 * block(0, seen) + head
