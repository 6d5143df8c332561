"""Mixtral and Qwen3-MoE against transformers' *ForCausalLM (the independent reference).

HF models built from config objects (nothing downloaded), every parameter random (the
routers too, scaled so that routing is decisive), compared on random tokens: the import's
logits, the export loaded back by AutoModelForCausalLM (an exact round trip, tensor for
tensor), GQA and MQA, a window shorter than the sequence, k = 1 and k = E, Qwen3-MoE's
gates with and without renormalisation; the cached decode and greedy generation; what is
refused at import; the total and active parameter counts of the released sizes against
transformers' count on the meta device; the routed and dense evaluations of an imported
model; training from the CLI with the auxiliary losses and the experts' load recorded.
"""

import dataclasses
import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_reference import hf_greedy, hf_logits, load_hf, randomize, rel, save_hf  # noqa: E402

from jaxformer import build, logits  # noqa: E402
from jaxformer.describe import chain, describe  # noqa: E402
from jaxformer.generate import decode_step, empty_cache, generate  # noqa: E402
from jaxformer.interop import config_from_hf, from_hf, to_hf  # noqa: E402
from jaxformer.interop.safetensors_io import read_tensors  # noqa: E402
from jaxformer.layers import MoE  # noqa: E402
from jaxformer.models import PRESETS  # noqa: E402

RTOL = 1e-5
V, B, T = 61, 2, 16
CLASSES = {"mixtral": "MixtralForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM"}
CONFIGS = {
    "mixtral-gqa-e4-k2-w5": dict(
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
        sliding_window=5,
    ),
    "mixtral-mqa-e3-k1-tied-L3": dict(
        num_attention_heads=3, num_key_value_heads=1, head_dim=10, num_local_experts=3,
        num_experts_per_tok=1, tie_word_embeddings=True, num_hidden_layers=3,
    ),
    "qwen3_moe-gqa-e6-k3-norm": dict(
        num_attention_heads=4, num_key_value_heads=2, head_dim=10, num_experts=6,
        num_experts_per_tok=3, moe_intermediate_size=12, norm_topk_prob=True,
    ),
    "qwen3_moe-mqa-e4-k4-raw": dict(
        num_attention_heads=4, num_key_value_heads=1, head_dim=6, num_experts=4,
        num_experts_per_tok=4, moe_intermediate_size=8, norm_topk_prob=False,
    ),  # widths × 4 bytes a multiple of 16: transformers' grouped GEMM of the experts needs it
}  # fmt: skip


def build_hf(name: str, seed: int = 0, context: int = T):
    family = name.split("-")[0]
    cls = getattr(transformers, CLASSES[family])
    base = dict(hidden_size=24, intermediate_size=20, num_hidden_layers=2,
                max_position_embeddings=context)  # fmt: skip
    cfg = cls.config_class(
        vocab_size=V, attn_implementation="eager", bos_token_id=None, eos_token_id=None,
        pad_token_id=None, **(base | CONFIGS[name]),
    )  # fmt: skip
    hf = randomize(cls(cfg), seed, std=0.3, head=2.0)
    with torch.no_grad():  # routers a few times larger: gates far from a tie, experts distinct
        for n, p in hf.named_parameters():
            if n.endswith("gate.weight"):
                p.mul_(4.0)
    return hf


def tokens(seed: int, n: int = T) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, (B, n))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_import_export_match_transformers_and_round_trip_exactly(name, tmp_path):
    hf = build_hf(name)
    src, out = tmp_path / "hf", tmp_path / "out"
    save_hf(hf, src)
    t = tokens(1)
    ref = hf_logits(hf, t)
    assert 4 < np.abs(ref).max() < 15

    model, params = from_hf(src)
    c = model.config
    assert (c.family, c.n_experts, c.top_k) == (
        name.split("-")[0],
        hf.config.num_local_experts,
        hf.config.num_experts_per_tok,
    )
    got = logits(model, params, t)
    print(f"{name}: max relative logit difference {rel(got, ref):.2e}")
    assert rel(got, ref) <= RTOL
    dense = model.replace("blocks.mlp", dataclasses.replace(model.find("blocks.mlp"), impl="dense"))
    assert rel(logits(dense, params, t), ref) <= RTOL  # the other evaluation of the same map

    to_hf(model, params, out)
    assert rel(hf_logits(load_hf(out), t), ref) <= RTOL
    state = read_tensors(src)  # transformers' own file: its experts saved one by one
    written = read_tensors(out)
    assert written.keys() == state.keys()
    assert all(np.array_equal(written[k], state[k]) for k in state)  # tensor for tensor
    assert config_from_hf(json.loads((out / "config.json").read_text())) == c


@pytest.fixture(scope="module", params=["mixtral-gqa-e4-k2-w5", "qwen3_moe-gqa-e6-k3-norm"])
def imported(request, tmp_path_factory):
    hf = build_hf(request.param, seed=3, context=32)
    path = tmp_path_factory.mktemp(request.param)
    save_hf(hf, path)
    model, params = from_hf(path)
    return model, params, hf


def test_cached_decode_equals_recompute_and_transformers_at_every_position(imported):
    model, params, hf = imported
    t = np.random.default_rng(4).integers(0, V, 32).astype(np.int32)
    step = jax.jit(lambda p, cache, x, i: decode_step(model, p, cache, x, i))
    cache, rows = empty_cache(model, 32), []
    for i in range(32):
        row, cache = step(params, cache, t[i], i)
        rows.append(np.asarray(row))
    full = np.asarray(jax.jit(model)(params, t))
    ref = hf_logits(hf, t[None])[0]
    assert rel(full, ref) <= RTOL
    assert max(rel(rows[i], full[i]) for i in range(32)) <= RTOL


def test_greedy_generation_equals_transformers(imported):
    model, params, hf = imported
    prompts, N = [[3, 14, 15, 9, 2, 40], [27, 1, 8]], 12  # past twice Mixtral's window of 5
    ours = np.asarray(generate(model, params, prompts, N, temperature=0))
    for p, row in zip(prompts, ours, strict=True):
        ref = hf_greedy(hf, p, N)
        assert len(set(ref)) > 3
        assert list(row) == list(ref)


REFUSED = {
    "mixtral-jitter": ("mixtral", dict(router_jitter_noise=0.1), "router_jitter_noise"),
    "qwen3_moe-dense-layers": ("qwen3_moe", dict(mlp_only_layers=[0]), "mlp_only_layers"),
    "qwen3_moe-sparse-step": ("qwen3_moe", dict(decoder_sparse_step=2), "decoder_sparse_step"),
    "mixtral-linear-rope": (
        "mixtral", dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
        "rope_parameters.rope_type",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_import_refuses_what_it_does_not_compute_naming_the_field(case):
    family, kw, field = REFUSED[case]
    cls = getattr(transformers, CLASSES[family]).config_class
    base = dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2)
    hf = cls(**(base | kw)).to_dict() | {"model_type": family}
    with pytest.raises(ValueError, match=f"config.json: {field}="):
        config_from_hf(hf)


def test_expert_fields_are_refused_by_a_family_without_experts_and_checked():
    base = PRESETS["mixtral-tiny"]
    with pytest.raises(ValueError, match="n_experts=4 is not available for family 'mistral'"):
        base.replace(family="mistral")
    with pytest.raises(ValueError, match="top_k must be an integer in 1..n_experts=4, got 5"):
        base.replace(top_k=5)
    with pytest.raises(ValueError, match="balance_weight must be a number ≥ 0, got -1"):
        base.replace(balance_weight=-1)


HUB = {  # the released configs' fields (mistralai/Mixtral-8x7B-v0.1, Qwen/Qwen3-30B-A3B)
    "mixtral-8x7b": dict(
        model_type="mixtral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        num_local_experts=8, num_experts_per_tok=2, max_position_embeddings=32768,
        rms_norm_eps=1e-5, rope_theta=1e6, sliding_window=None, tie_word_embeddings=False,
    ),
    "qwen3-30b-a3b": dict(
        model_type="qwen3_moe", vocab_size=151936, hidden_size=2048, intermediate_size=6144,
        moe_intermediate_size=768, num_hidden_layers=48, num_attention_heads=32,
        num_key_value_heads=4, head_dim=128, num_experts=128, num_experts_per_tok=8,
        norm_topk_prob=True, max_position_embeddings=40960, rms_norm_eps=1e-6,
        rope_theta=1e6, tie_word_embeddings=False, use_sliding_window=False,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(HUB))
def test_released_sizes_count_total_and_active_parameters_as_transformers(name):
    hf = HUB[name]
    with torch.device("meta"):
        m = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**hf))
    total = sum(p.numel() for p in m.parameters())
    E = hf.get("num_local_experts") or hf["num_experts"]
    experts = sum(p.numel() for n, p in m.named_parameters() if ".experts." in n)
    active = total - experts + experts * hf["num_experts_per_tok"] // E  # k of the E experts
    c = chain(build(PRESETS[name]))
    assert (c.count, c.active) == (total, active)
    assert config_from_hf(hf, "config.json") == PRESETS[name]
    assert f"({active:,} active per token)" in describe(build(PRESETS[name]))


def test_describe_states_the_mixture():
    text = describe(PRESETS["mixtral-8x7b"])
    assert "46,702,792,704 parameters (12,879,925,248 active per token)" in text
    assert "S_t = top-2 of p_t = softmax(x_t W_R) over E = 8 experts" in text
    assert isinstance(build(PRESETS["mixtral-8x7b"]).find("blocks.mlp"), MoE)
