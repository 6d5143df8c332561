"""Mistral, Qwen2 and Qwen3 against transformers' *ForCausalLM (the independent reference).

HF models are built from config objects (nothing is downloaded), every parameter random
(norm gains, q_norm/k_norm and biases too), and compared on random tokens: the logits of
the import and of the export loaded back with AutoModelForCausalLM (an exact round trip),
GQA and MQA, windows shorter than the sequence, head sizes ≠ d/H, odd head counts, tied
and untied; the refusals at import, the windows as transformers applies them, the family
checks, the parameter counts of the released sizes (on the meta device), describe.
test_llama_like_generation.py: generation, the cached decode, export, training.
"""

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_reference import hf_logits, load_hf, rel, save_hf  # noqa: E402
from llama_like_hf import RTOL, SLIDE, T, V, build_hf, hf_class, tokens_for  # noqa: E402

from jaxformer import Config, build, logits  # noqa: E402
from jaxformer.describe import chain, describe  # noqa: E402
from jaxformer.interop import config_from_hf, from_hf, to_hf  # noqa: E402
from jaxformer.interop.safetensors_io import read_tensors  # noqa: E402
from jaxformer.models import PRESETS  # noqa: E402

CONFIGS = {  # the window w < T = 16 wherever there is one; k = head_dim
    "mistral-gqa-h6-g2-w5": dict(
        hidden_size=24, num_attention_heads=6, num_key_value_heads=2, sliding_window=5,
        rope_theta=5e4,
    ),
    "mistral-mqa-h3-k10-w3-tied-L3": dict(
        hidden_size=16, num_attention_heads=3, num_key_value_heads=1, head_dim=10,
        sliding_window=3, tie_word_embeddings=True, num_hidden_layers=3, rms_norm_eps=1e-5,
    ),
    "mistral-h5-nowindow": dict(
        hidden_size=20, num_attention_heads=5, num_key_value_heads=5, sliding_window=None,
    ),
    "qwen2-mqa-h7-tied": dict(
        hidden_size=28, num_attention_heads=7, num_key_value_heads=1, tie_word_embeddings=True,
        rope_theta=1e6,
    ),
    "qwen2-gqa-k6-untied-bin": dict(
        hidden_size=24, num_attention_heads=4, num_key_value_heads=2, head_dim=6,
    ),
    "qwen2-gqa-w4-L3": dict(
        hidden_size=16, num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
        num_hidden_layers=3, **SLIDE,
    ),
    "qwen3-gqa-k12": dict(
        hidden_size=16, num_attention_heads=4, num_key_value_heads=2, head_dim=12,
    ),
    "qwen3-mqa-h5-k6-bias-tied": dict(
        hidden_size=20, num_attention_heads=5, num_key_value_heads=1, head_dim=6,
        attention_bias=True, tie_word_embeddings=True, rms_norm_eps=1e-5,
    ),
    "qwen3-gqa-k10-w6": dict(
        hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=10,
        sliding_window=6, rope_theta=2e4, **SLIDE,
    ),
}  # fmt: skip


def without_window(hf):
    """The same HF weights with the window off (transformers' own full causal attention)."""
    now = hf.config.to_dict()
    off = dict(sliding_window=None, use_sliding_window=False, layer_types=None)
    cfg = type(hf.config)(**(now | {k: v for k, v in off.items() if k in now}))
    full = type(hf)(cfg).eval()
    full.load_state_dict(hf.state_dict())
    return full


# -- logits ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CONFIGS))
def test_import_export_match_transformers_and_round_trip_exactly(name, tmp_path):
    family = name.split("-")[0]
    hf = build_hf(family, CONFIGS[name])
    src, out = tmp_path / "hf", tmp_path / "out"
    save_hf(hf, src, bin=name.endswith("-bin"))
    tokens = tokens_for(1)
    ref = hf_logits(hf, tokens)
    assert 4 < np.abs(ref).max() < 15  # logits of the size of a trained model's

    model, params = from_hf(src)
    c = model.config
    assert c.family == family and c.sliding_window == CONFIGS[name].get("sliding_window")
    got = rel(logits(model, params, tokens), ref)
    print(f"{name}: max relative logit difference {got:.2e}")
    assert got <= RTOL
    if c.sliding_window:  # the window is seen: without it transformers' logits differ
        assert rel(hf_logits(without_window(hf), tokens), ref) > 1e-2

    to_hf(model, params, out)
    assert rel(hf_logits(load_hf(out), tokens), ref) <= RTOL
    state = {k: v.numpy() for k, v in hf.state_dict().items()}
    if hf.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    written = read_tensors(out)
    assert written.keys() == state.keys()
    assert all(np.array_equal(written[k], state[k]) for k in state)  # tensor for tensor
    assert config_from_hf(json.loads((out / "config.json").read_text())) == c


# -- what is refused, and what is read as transformers reads it ----------------------------
def hf_dict(family: str, **kw) -> dict:
    """A config.json of transformers' own making (its defaults filled in) for ``kw``;
    a field that ``kw`` sets to None is left out of the file."""
    base = dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2)
    cfg = hf_class(family).config_class(**(base | kw))
    hf = cfg.to_dict() | {"model_type": family}
    return {k: v for k, v in hf.items() if kw.get(k, 0) is not None}  # None: left out


REFUSED = {  # transformers computes these; jaxformer does not, and says which field
    "mistral-linear-rope": (
        "mistral", dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
        "rope_parameters.rope_type",
    ),
    "mistral-mixed-layer-types": (
        "mistral", dict(layer_types=["full_attention", "sliding_attention"]), "layer_types"
    ),
    "mistral-gelu": ("mistral", dict(hidden_act="gelu"), "hidden_act"),
    "qwen2-mixed-layer-types": (
        "qwen2", dict(use_sliding_window=True, sliding_window=4, max_window_layers=1),
        "layer_types",
    ),
    "qwen2-max-window-layers": (  # a config.json without layer_types: HF derives them
        "qwen2", dict(use_sliding_window=True, sliding_window=4, max_window_layers=1,
                      layer_types=None),
        "max_window_layers",
    ),
    "qwen2-dynamic-rope": (
        "qwen2", dict(rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}),
        "rope_parameters.rope_type",
    ),
    "qwen3-max-window-layers": (
        "qwen3", dict(use_sliding_window=True, sliding_window=4, max_window_layers=1,
                      layer_types=None),
        "max_window_layers",
    ),
    "qwen3-yarn": (
        "qwen3", dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6}),
        "rope_parameters.rope_type",
    ),
    "qwen3-partial-rotary": (
        "qwen3",
        dict(rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                              "partial_rotary_factor": 0.5}),
        "partial_rotary_factor",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_import_refuses_what_it_does_not_compute_naming_the_field(case):
    family, kw, field = REFUSED[case]
    hf = hf_dict(family, **kw)  # a config transformers accepts
    with pytest.raises(ValueError, match=f"config.json: {field}="):
        config_from_hf(hf)


@pytest.mark.parametrize(
    "family, kw",
    [  # Qwen's released configs: sliding_window set, use_sliding_window false
        ("qwen2", dict(use_sliding_window=False, sliding_window=131072)),
        ("qwen3", dict(use_sliding_window=True, sliding_window=4, max_window_layers=2)),
        ("qwen3", dict(use_sliding_window=True, sliding_window=4, max_window_layers=0)),
        ("qwen2", dict(use_sliding_window=True, sliding_window=4, max_window_layers=0)),
        ("mistral", dict(sliding_window=None)),
        ("mistral", dict(sliding_window=7)),
    ],
    ids=["qwen2-off", "qwen3-above-all-layers", "qwen3-every-layer", "qwen2-every-layer",
         "mistral-none", "mistral-7"],
)  # fmt: skip
def test_import_reads_the_window_that_transformers_applies(family, kw):
    """The window of every layer as transformers' config sets it: Qwen's layer_types (from
    use_sliding_window and max_window_layers), Mistral's sliding_window on all layers."""
    base = dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2)
    hf = hf_class(family).config_class(**(base | kw))
    types = getattr(hf, "layer_types", None) or ["sliding_attention"] * 2
    per_layer = {hf.sliding_window if t == "sliding_attention" else None for t in types}
    (w,) = per_layer  # one window for all layers
    # the file transformers writes, and a minimal hand-written one (the rest its defaults)
    for d in (hf.to_dict() | {"model_type": family}, {"model_type": family, **base, **kw}):
        assert config_from_hf(d).sliding_window == w


@pytest.mark.parametrize(
    "family, field, value",
    [
        ("mistral", "bias", True), ("mistral", "qk_norm", "head"), ("mistral", "out_bias", True),
        ("qwen2", "bias", False), ("qwen2", "out_bias", True), ("qwen2", "qk_norm", "all"),
        ("qwen3", "qk_norm", "all"), ("qwen3", "out_bias", False), ("qwen3", "norm", "layernorm"),
        ("mistral", "positional", "learned"), ("qwen2", "rotary_fraction", 0.5),
        ("qwen3", "parallel_residual", True),
    ],
)  # fmt: skip
def test_family_checks_refuse_what_the_family_does_not_compute(family, field, value):
    kw = dict(bias=True) if (family, field) == ("qwen3", "out_bias") else {}
    with pytest.raises(ValueError, match=f"Config.{field}="):
        Config(family, V, T, 2, 16, 4, **kw, **{field: value})


# -- presets: the released sizes ---------------------------------------------------------
# From the config.json of each release (mistralai/Mistral-7B-v0.1, Qwen/Qwen2-0.5B,
# Qwen/Qwen2-7B, Qwen/Qwen3-0.6B, Qwen/Qwen3-8B) and the parameter counts their cards give.
QWEN = dict(rms_norm_eps=1e-6, rope_theta=1e6, use_sliding_window=False)
RELEASED = {
    "mistral-7b": (7_241_732_096, dict(
        model_type="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        max_position_embeddings=32768, rms_norm_eps=1e-5, rope_theta=10000.0,
        sliding_window=4096, tie_word_embeddings=False,
    )),
    "qwen2-0.5b": (494_032_768, dict(
        model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
        num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        max_position_embeddings=131072, sliding_window=131072, max_window_layers=24,
        tie_word_embeddings=True, **QWEN,
    )),
    "qwen2-7b": (7_615_616_512, dict(
        model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
        num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
        max_position_embeddings=131072, sliding_window=131072, max_window_layers=28,
        tie_word_embeddings=False, **QWEN,
    )),
    "qwen3-0.6b": (596_049_920, dict(
        model_type="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
        num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=40960, sliding_window=None, max_window_layers=28,
        attention_bias=False, tie_word_embeddings=True, **QWEN,
    )),
    "qwen3-8b": (8_190_735_360, dict(
        model_type="qwen3", vocab_size=151936, hidden_size=4096, intermediate_size=12288,
        num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=40960, sliding_window=None, max_window_layers=36,
        attention_bias=False, tie_word_embeddings=False, **QWEN,
    )),
}  # fmt: skip


@pytest.mark.parametrize("name", list(RELEASED))
def test_presets_are_the_released_models_and_count_as_transformers(name):
    published, hf = RELEASED[name]
    assert config_from_hf(hf) == PRESETS[name]  # the release's config.json is the preset
    with torch.device("meta"):  # no memory, no download: transformers' own module tree
        m = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**hf))
    hf_count = sum(p.numel() for p in m.parameters())  # a tied lm_head is the embedding
    model = build(PRESETS[name])
    ours = sum(x.size for x in jax.tree.leaves(jax.eval_shape(model.init, jax.random.key(0))))
    assert chain(model).count == ours == hf_count == published


def test_describe_renders_the_families():
    text = describe(PRESETS["mistral-7b"])
    assert "7,241,732,096 parameters" in text and text.startswith("mistral:")
    assert "mask(s)_ij = s_ij if i − 4096 < j ≤ i, else −∞  (a sliding window)" in text
    assert "A^h = softmax(mask(q^h k^hᵀ / √128))" in text
    qwen2 = describe(PRESETS["qwen2-0.5b"])
    assert "q^h = R(x W_Q^h + b_Q^h),  k^h = R(x W_K^g(h) + b_K^g(h))" in qwen2
    assert "x ↦ Σ_(h=1..14) A^h v^h W_O^h\n" in qwen2  # no b_O
    qwen3 = describe(PRESETS["qwen3-0.6b"])
    assert "q^h = R(N_Q(x W_Q^h)),  k^h = R(N_K(x W_K^g(h)))" in qwen3
    assert "N_Q, N_K: RMSNorm (γ_Q, γ_K, ε = 1e-06) over each head's k coordinates" in qwen3
    assert "W_Q [H=16, d=1024, k=128]" in qwen3  # k ≠ d/H = 64
    windowed = PRESETS["qwen3-0.6b"].replace(sliding_window=512)
    for fmt in ("markdown", "latex"):
        assert "512" in describe(windowed, fmt) and "gamma_Q" in describe(windowed, fmt)
