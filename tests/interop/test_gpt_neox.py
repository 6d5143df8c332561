"""GPT-NeoX / Pythia against transformers' GPTNeoXForCausalLM (the independent reference).

HF models are built from GPTNeoXConfig objects (nothing is downloaded), every parameter
random (norm gains and biases too), and compared on random tokens: the logits of the
import and of the export loaded back with AutoModelForCausalLM, greedy generation, the
parameter counts of the presets (on the meta device). Both residual variants, odd head
counts, partial rotary fractions, tied and untied, with and without attention biases.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_reference import hf_logits, load_hf, randomize, rel, save_hf  # noqa: E402

from jaxformer import Config, build, logits  # noqa: E402
from jaxformer.core import is_param  # noqa: E402
from jaxformer.describe import chain, describe  # noqa: E402
from jaxformer.generate import decode_step, generate, prefill  # noqa: E402
from jaxformer.interop import config_from_hf, config_to_hf, from_hf, to_hf  # noqa: E402
from jaxformer.interop.safetensors_io import read_tensors  # noqa: E402
from jaxformer.models import PRESETS  # noqa: E402

RTOL = 1e-5  # max |Δ logits| / max |logits|, float32
V, B, T = 61, 2, 16

CONFIGS = {  # k = hidden/heads; r = ⌊rotary_pct · k⌋ rotated coordinates
    "parallel-h3-k8-r2": dict(hidden_size=24, num_attention_heads=3, rotary_pct=0.25),
    "sequential-h2-k10-r4": dict(
        hidden_size=20, num_attention_heads=2, rotary_pct=0.4, use_parallel_residual=False,
        rotary_emb_base=500.0, layer_norm_eps=1e-3, intermediate_size=28,
    ),
    "parallel-h5-k6-full-tied-nobias": dict(
        hidden_size=30, num_attention_heads=5, rotary_pct=1.0, tie_word_embeddings=True,
        attention_bias=False, hidden_act="gelu_new",
    ),
    "sequential-h4-k8-r4-L3-bin": dict(
        hidden_size=32, num_attention_heads=4, rotary_pct=0.5, use_parallel_residual=False,
        num_hidden_layers=3, rotary_emb_base=2e4,
    ),
}  # fmt: skip


def build_hf(name: str, seed: int = 0):
    kw = dict(num_hidden_layers=2, intermediate_size=40, max_position_embeddings=T)
    cfg = transformers.GPTNeoXConfig(
        vocab_size=V, attn_implementation="eager", bos_token_id=None, eos_token_id=None,
        **(kw | CONFIGS[name]),
    )  # fmt: skip
    return randomize(transformers.GPTNeoXForCausalLM(cfg), seed, std=0.3, head=3.0)


def tokens_for(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, (B, T))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_import_export_match_transformers_and_round_trip_exactly(name, tmp_path):
    hf = build_hf(name)
    src, out = tmp_path / "hf", tmp_path / "out"
    save_hf(hf, src, bin=name.endswith("-bin"))
    tokens = tokens_for(1)
    ref = hf_logits(hf, tokens)
    assert 4 < np.abs(ref).max() < 15  # logits of the size of a trained model's

    model, params = from_hf(src)
    got = rel(logits(model, params, tokens), ref)
    print(f"{name}: max relative logit difference {got:.2e}")
    assert got <= RTOL

    to_hf(model, params, out)
    assert rel(hf_logits(load_hf(out), tokens), ref) <= RTOL
    state = {k: v.numpy() for k, v in hf.state_dict().items()}
    head = state.pop("lm_head.weight")  # the module's name in transformers ≥ 5
    if not hf.config.tie_word_embeddings:  # its files keep the Hub's name, embed_out
        state["embed_out.weight"] = head
    written = read_tensors(out)
    assert written.keys() == state.keys()
    assert all(np.array_equal(written[k], state[k]) for k in state)  # tensor for tensor
    assert config_from_hf(json.loads((out / "config.json").read_text())) == model.config


def test_hub_layout_legacy_config_and_buffers(tmp_path):
    """Pythia as on the Hub: rotary_pct / rotary_emb_base, no rope_parameters, embed_out,
    and the buffers old versions saved (causal masks, inv_freq), which carry no weights."""
    hf = build_hf("parallel-h3-k8-r2", seed=5)
    state = {k: v.numpy() for k, v in hf.state_dict().items()}
    state["embed_out.weight"] = state.pop("lm_head.weight")
    for l in range(hf.config.num_hidden_layers):
        s = f"gpt_neox.layers.{l}.attention."
        state[s + "bias"] = np.tril(np.ones((1, 1, T, T), bool))
        state[s + "masked_bias"] = np.array(-1e9, np.float32)
        state[s + "rotary_emb.inv_freq"] = np.ones(1, np.float32)
    (tmp_path / "config.json").write_text(json.dumps(dict(
        architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox", vocab_size=V,
        hidden_size=24, num_attention_heads=3, num_hidden_layers=2, intermediate_size=40,
        max_position_embeddings=T, rotary_pct=0.25, rotary_emb_base=10000, hidden_act="gelu",
        layer_norm_eps=1e-5, use_parallel_residual=True, tie_word_embeddings=False,
        transformers_version="4.24.0",
    )))  # fmt: skip
    torch.save({k: torch.as_tensor(v) for k, v in state.items()}, tmp_path / "pytorch_model.bin")
    tokens = tokens_for(2)
    model, params = from_hf(tmp_path)
    assert model.config.rotary_dim == 2 and model.config.parallel_residual
    assert rel(logits(model, params, tokens), hf_logits(hf, tokens)) <= RTOL


def random_params(model, seed: int = 0):
    rng = np.random.default_rng(seed)  # gains ≠ 1, biases ≠ 0
    draw = lambda p: (p.fill + 0.3 * rng.standard_normal(p.shape)).astype(np.float32)
    return jax.tree.map(draw, model.spec(), is_leaf=is_param)


@pytest.mark.parametrize(
    "config",
    [  # what jaxformer makes, opened by transformers: exact GELU, both variants
        Config(family="gpt_neox", vocab_size=V, context=T, n_layers=2, d_model=24, n_heads=2,
               activation="gelu", rotary_fraction=0.5, parallel_residual=True),
        Config(family="gpt_neox", vocab_size=V, context=T, n_layers=2, d_model=18, n_heads=3,
               rotary_fraction=1 / 3, bias=False, tied=True, d_mlp=30, rope_theta=300.0),
    ],
    ids=["parallel-r6of12", "sequential-r2of6-nobias-tied"],
)  # fmt: skip
def test_jaxformer_model_opens_in_transformers(config, tmp_path):
    model = build(config)
    params = random_params(model)
    tokens = tokens_for(3)
    ours = np.asarray(logits(model, params, tokens))
    assert np.abs(ours).max() > 3
    to_hf(model, params, tmp_path / "hf")
    assert rel(hf_logits(load_hf(tmp_path / "hf"), tokens), ours) <= RTOL


HF = dict(model_type="gpt_neox", hidden_size=16, num_attention_heads=2, vocab_size=V)


@pytest.mark.parametrize(
    "field, extra",
    [
        ("rope_scaling.rope_type", {"rope_scaling": {"type": "linear", "factor": 2.0}}),
        ("rope_scaling.rope_type", {"rope_scaling": {"type": "dynamic", "factor": 2.0}}),
        ("rope_parameters.rope_type", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}),
        ("hidden_act", {"hidden_act": "quick_gelu"}),
        ("head_dim", {"head_dim": 4}),
        ("rotary_fraction", {"rotary_pct": 0.375}),  # 3 of 8 coordinates: RoPE needs pairs
    ],
)
def test_import_refuses_what_is_not_built_naming_it(field, extra, tmp_path):
    with pytest.raises(ValueError, match=f"{field}="):
        config_from_hf(HF | extra)
    (tmp_path / "config.json").write_text(json.dumps(HF | extra))  # before any weight is read
    with pytest.raises(ValueError, match=f"config.json: .*{field}="):
        from_hf(tmp_path)


@pytest.mark.parametrize(
    "field, value",
    [("norm", "rmsnorm"), ("qk_norm", "head"), ("sliding_window", 4), ("n_kv_heads", 1),
     ("d_head", 16), ("positional", "learned"), ("out_bias", False)],
)  # fmt: skip
def test_family_refuses_what_gpt_neox_is_not(field, value):
    with pytest.raises(ValueError, match=f"Config.{field}={value!r} is not available .*gpt_neox"):
        Config(family="gpt_neox", vocab_size=V, context=T, n_layers=1, d_model=16, n_heads=2,
               **{field: value})  # fmt: skip


@pytest.fixture(scope="module", params=["parallel-h3-k8-r2", "sequential-h2-k10-r4"])
def imported(request, tmp_path_factory):
    """(the HF model, jaxformer's import of it): both residual variants, partial rotary."""
    hf = build_hf(request.param, seed=7)
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path)
    return (hf, *from_hf(path))


def test_greedy_generate_equals_transformers(imported):
    hf, model, params = imported
    prompts, n = [[3, 14, 15, 9, 2], [26, 5]], 9
    got = np.asarray(generate(model, params, prompts, n, temperature=0))  # ragged, one cache
    for prompt, row in zip(prompts, got):
        ids = torch.as_tensor([prompt])
        with torch.no_grad():
            want = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                               do_sample=False, pad_token_id=0)[0, len(prompt):]  # fmt: skip
        assert row.tolist() == want.tolist()


def test_cached_decode_equals_recompute_at_every_position(imported):
    """Prefill 3 tokens, then decode one at a time to the last slot of the cache; at
    every position the logits are those of the prefix run from scratch (transformers'
    full pass, and jaxformer's)."""
    hf, m, p = imported
    t = np.random.default_rng(4).integers(0, V, T).astype(np.int32)
    rows, cache = jax.jit(lambda p, t: prefill(m, p, t))(p, jnp.asarray(t[:3]))
    rows = list(rows)
    step = jax.jit(lambda p, cache, tok, i: decode_step(m, p, cache, tok, i))
    for i in range(3, T):
        row, cache = step(p, cache, t[i], i)
        rows.append(row)
    full = np.asarray(jax.jit(m)(p, jnp.asarray(t)))
    for i in range(T):  # position i: the model run from scratch on t[:i+1]
        want = hf_logits(hf, t[None, : i + 1])[0, -1]
        assert rel(rows[i], want) <= RTOL and rel(full[i], want) <= RTOL, f"position {i}"


# EleutherAI's config.json of the released models (their field names, transformers 4.24).
PYTHIA = {
    "pythia-160m": dict(hidden_size=768, num_attention_heads=12, num_hidden_layers=12,
                        intermediate_size=3072),
    "pythia-410m": dict(hidden_size=1024, num_attention_heads=16, num_hidden_layers=24,
                        intermediate_size=4096),
}  # fmt: skip
PYTHIA_COMMON = dict(
    architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox", vocab_size=50304,
    max_position_embeddings=2048, rotary_pct=0.25, rotary_emb_base=10000, hidden_act="gelu",
    layer_norm_eps=1e-5, use_parallel_residual=True, tie_word_embeddings=False,
    initializer_range=0.02, bos_token_id=0, eos_token_id=0,
)  # fmt: skip


@pytest.mark.parametrize("name", list(PYTHIA))
def test_pythia_presets_are_the_released_models(name):
    hf_json = PYTHIA_COMMON | PYTHIA[name]
    assert config_from_hf(hf_json) == PRESETS[name]
    with torch.device("meta"):  # the count transformers makes, without allocating it
        hf = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**hf_json))
    n = sum(p.numel() for p in hf.parameters())
    model = build(PRESETS[name])
    assert chain(model).count == n
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    assert sum(x.size for x in jax.tree.leaves(shapes)) == n


def test_describe_renders_the_family():
    text = describe(PRESETS["pythia-160m"])
    assert "162,322,944 parameters" in text
    assert "x ↦ (attn ∘ ln1)(x) + (mlp ∘ ln2)(x)" in text  # the parallel block
    assert "the first 16 of the 64 coordinates; the rest pass" in text  # partial rotary
    assert "φ(u) = u/2 · (1 + erf(u/√2))" in text  # exact GELU
    for fmt in ("markdown", "latex"):
        assert "unembed" in describe(PRESETS["pythia-160m"], fmt)
    hf = config_to_hf(PRESETS["pythia-410m"])
    assert hf["rope_parameters"]["partial_rotary_factor"] == 0.25 and hf["use_parallel_residual"]


@pytest.mark.slow  # ~30 s on two cores: a tokenizer, the step's compile, evals, checkpoints
def test_trains_from_the_cli_settings_and_generates(tmp_path):
    from jaxformer.rundir_load import load_for_inference
    from jaxformer.train.config import TrainConfig
    from jaxformer.train.data import bundled_corpus
    from jaxformer.train.loop import train
    from jaxformer.train.report import read_metrics

    data = tmp_path / "plays.txt"
    data.write_text(bundled_corpus().read_text()[:20_000])
    cfg = TrainConfig.preset(
        "tiny", family="gpt_neox", activation="gelu", rotary_fraction=0.25,
        parallel_residual=True, data=str(data), cache=str(tmp_path / "cache"),
        out=str(tmp_path / "run"), steps=6, warmup_steps=2, checkpoint_every=3, eval_every=3,
        sample_tokens=4, progress=False,
    )  # fmt: skip
    summary = train(cfg, log=lambda line: None)
    losses = [m["loss"] for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    assert summary["step"] == 6 and len(losses) == 6 and np.isfinite(losses).all()

    config, params, tok = load_for_inference(tmp_path / "run")
    assert config.family == "gpt_neox" and config.parallel_residual and config.rotary_dim == 4
    model = build(config)
    new = generate(model, params, tok.encode("ROMEO."), 5, temperature=0)
    assert new.shape == (5,) and int(new.max()) < config.vocab_size
