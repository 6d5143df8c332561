"""OLMo 2 and Phi-3 against transformers' *ForCausalLM (the independent reference).

HF models are built from config objects (nothing is downloaded), every parameter random
(norm gains, q_norm/k_norm over all heads, biases), logits of about 5–10: the import and
the export loaded back with AutoModelForCausalLM (an exact round trip, Phi-3's fused
qkv_proj and gate_up_proj fused again), GQA and MQA, head sizes ≠ d/H, partial RoPE,
windows shorter than the sequence; the refusals at import; the released sizes counted by
transformers on the meta device; describe; the cached decode and greedy generation
against transformers' ``generate``; training, resuming, sampling and converting from the CLI.
"""

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_reference import hf_greedy, hf_logits, load_hf, random_export, rel, save_hf  # noqa: E402
from olmo2_phi3_hf import CLASSES, RTOL, T, V, build_hf, hf_class, rope, tokens_for  # noqa: E402

from jaxformer import Config, build, logits  # noqa: E402
from jaxformer.describe import chain, describe  # noqa: E402
from jaxformer.generate import decode_step, empty_cache, generate  # noqa: E402
from jaxformer.interop import config_from_hf, from_hf, to_hf  # noqa: E402
from jaxformer.interop.safetensors_io import read_tensors  # noqa: E402
from jaxformer.models import PRESETS  # noqa: E402

CONFIGS = {  # k = head_dim; the window w < T = 16 wherever there is one
    "olmo2-gqa-h6-g2": dict(
        hidden_size=24, num_attention_heads=6, num_key_value_heads=2, rope_parameters=rope(5e4),
    ),
    "olmo2-mqa-h3-k10-bias-tied-L3": dict(
        hidden_size=16, num_attention_heads=3, num_key_value_heads=1, head_dim=10,
        attention_bias=True, tie_word_embeddings=True, num_hidden_layers=3, rms_norm_eps=1e-6,
    ),
    "olmo2-h5-bin": dict(hidden_size=20, num_attention_heads=5),
    "phi3-gqa-h6-g2-w5-rot0.5": dict(
        hidden_size=24, num_attention_heads=6, num_key_value_heads=2, sliding_window=5,
        rope_parameters=rope(1e4, 0.5),
    ),
    "phi3-mqa-h3-k10-w3-rot0.6-tied-L3": dict(
        hidden_size=16, num_attention_heads=3, num_key_value_heads=1, head_dim=10,
        sliding_window=3, rope_parameters=rope(3e4, 0.6), tie_word_embeddings=True,
        num_hidden_layers=3,
    ),
    "phi3-h4-full-bin": dict(hidden_size=32, num_attention_heads=4),
}  # fmt: skip


# -- logits ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CONFIGS))
def test_import_export_match_transformers_and_round_trip_exactly(name, tmp_path):
    family, kw = name.split("-")[0], CONFIGS[name]
    hf = build_hf(family, kw)
    src, out = tmp_path / "hf", tmp_path / "out"
    save_hf(hf, src, bin=name.endswith("-bin"))
    tokens = tokens_for(1)
    ref = hf_logits(hf, tokens)
    assert 4 < np.abs(ref).max() < 15  # logits of the size of a trained model's

    model, params = from_hf(src)
    c = model.config
    assert (c.family, c.sliding_window) == (family, kw.get("sliding_window"))
    assert c.rotary_fraction == kw.get("rope_parameters", rope())["partial_rotary_factor"]
    r = rel(logits(model, params, tokens), ref)
    print(f"{name}: max relative logit difference {r:.2e}")
    assert r <= RTOL

    to_hf(model, params, out)
    assert rel(hf_logits(load_hf(out), tokens), ref) <= RTOL
    state = {k: v.numpy() for k, v in hf.state_dict().items()}
    if hf.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    written = read_tensors(out)
    assert written.keys() == state.keys()  # fused tensors fused again, under HF's names
    assert all(np.array_equal(written[k], state[k]) for k in state)  # tensor for tensor
    assert config_from_hf(json.loads((out / "config.json").read_text())) == c


def test_the_window_and_the_partial_rotary_are_seen():
    """Changing either in transformers changes its logits: the comparison has teeth."""
    kw = CONFIGS["phi3-gqa-h6-g2-w5-rot0.5"]
    hf, t = build_hf("phi3", kw), tokens_for(1)
    ref = hf_logits(hf, t)
    for change in (dict(sliding_window=None), dict(rope_parameters=rope(1e4, 1.0))):
        other = build_hf("phi3", kw | change)
        other.load_state_dict(hf.state_dict())
        assert rel(hf_logits(other.eval(), t), ref) > 1e-3, change


def hf_dict(family: str, **kw) -> dict:
    """A config.json of transformers' own making (its defaults filled in) for ``kw``."""
    base = dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2)
    return hf_class(family).config_class(**(base | kw)).to_dict() | {"model_type": family}


LONGROPE = dict(rope_type="longrope", rope_theta=1e4, short_factor=[1.0, 1.0],
                long_factor=[2.0, 2.0], original_max_position_embeddings=8)  # fmt: skip
REFUSED = {  # transformers computes these; jaxformer does not, and says which field
    "phi3-longrope": ("phi3", dict(rope_parameters=LONGROPE), "rope_parameters.rope_type"),
    "phi3-gelu": ("phi3", dict(hidden_act="gelu"), "hidden_act"),
    "olmo2-linear-rope": (
        "olmo2", dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
        "rope_parameters.rope_type",
    ),
    "olmo2-gelu": ("olmo2", dict(hidden_act="gelu_new"), "hidden_act"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_import_refuses_what_it_does_not_compute_naming_the_field(case):
    family, kw, field = REFUSED[case]
    with pytest.raises(ValueError, match=f"config.json: {field}="):
        config_from_hf(hf_dict(family, **kw))


def test_import_refuses_the_old_scaled_rope_spellings():
    for kind in ("su", "yarn"):  # Phi3Config reads both as longrope
        hf = {"model_type": "phi3", "rope_scaling": {"type": kind, "short_factor": [1.0]}}
        with pytest.raises(ValueError, match="rope_scaling.rope_type="):
            config_from_hf(hf)
    with pytest.raises(ValueError, match="config.json: sliding_window=4"):
        config_from_hf({"model_type": "olmo2", "sliding_window": 4})  # OLMo 3's, not OLMo 2's


@pytest.mark.parametrize(
    "family, field, value",
    [("olmo2", "qk_norm", "head"), ("olmo2", "sliding_window", 4),
     ("olmo2", "norm", "layernorm"), ("olmo2", "parallel_residual", True),
     ("olmo2", "attn_only", True), ("phi3", "bias", True), ("phi3", "qk_norm", "all"),
     ("phi3", "positional", "learned"), ("phi3", "parallel_residual", True)],
)  # fmt: skip
def test_family_checks_refuse_what_the_family_does_not_compute(family, field, value):
    with pytest.raises(ValueError, match=f"Config.{field}="):
        Config(family, V, T, 2, 16, 4, **{field: value})


# -- presets: the released sizes ---------------------------------------------------------
RELEASED = {  # the config.json of allenai/OLMo-2-0425-1B, microsoft/Phi-3-mini-4k-instruct
    "olmo-2-1b": (1_484_916_736, dict(
        model_type="olmo2", vocab_size=100352, hidden_size=2048, intermediate_size=8192,
        num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16,
        max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=500000,
        attention_bias=False, tie_word_embeddings=False,
    )),
    "phi-3-mini": (3_821_079_552, dict(
        model_type="phi3", vocab_size=32064, hidden_size=3072, intermediate_size=8192,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
        max_position_embeddings=4096, original_max_position_embeddings=4096,
        rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None, sliding_window=2047,
        tie_word_embeddings=False,
    )),
}  # fmt: skip


@pytest.mark.parametrize("name", list(RELEASED))
def test_presets_are_the_released_models_and_count_as_transformers(name):
    published, hf = RELEASED[name]
    assert config_from_hf(hf) == PRESETS[name]  # the release's config.json is the preset
    with torch.device("meta"):  # no memory, no download: transformers' own module tree
        m = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**hf))
    hf_count = sum(p.numel() for p in m.parameters())
    model = build(PRESETS[name])
    ours = sum(x.size for x in jax.tree.leaves(jax.eval_shape(model.init, jax.random.key(0))))
    assert chain(model).count == ours == hf_count == published


def test_describe_renders_the_new_pieces():
    olmo = describe(PRESETS["olmo-2-1b"])
    assert "1,484,916,736 parameters" in olmo and olmo.startswith("olmo2:")
    assert "x ↦ x + (ln1_post ∘ attn)(x)" in olmo and "x ↦ x + (ln2_post ∘ mlp)(x)" in olmo
    assert "N_Q, N_K: RMSNorm (γ_Q, γ_K, ε = 1e-06) over all heads together" in olmo
    assert "gamma_Q [H=16, k=128]" in olmo
    phi = describe(PRESETS["phi-3-mini"])
    assert "3,821,079,552 parameters" in phi
    assert "mask(s)_ij = s_ij if i − 2047 < j ≤ i, else −∞  (a sliding window)" in phi
    part = describe(PRESETS["phi-3-mini"].replace(rotary_fraction=0.75))
    assert "(the first 72 of the 96 coordinates; the rest pass)" in part
    assert "ln1_post" in describe(PRESETS["olmo-2-1b"], "markdown")
    assert r"(\mathrm{ln1\_post} \circ \mathrm{attn})(x)" in describe(PRESETS["olmo-2-1b"], "latex")
    # FLOPs of the post-norm block: its parts', per token (RMSNorm 4d, each residual sum d)
    c = Config("olmo2", V, T, 1, 16, 4, 2, d_mlp=40)
    rows = {r.name: r for r in chain(build(c)).rows}
    assert rows["ln1_post"].flops == rows["ln2_post"].flops == 4 * 16  # square, mean, scale, γ
    assert rows["resid_mid"].flops == rows["attn"].flops + 4 * 16 + 16
    assert rows["resid_post"].flops == rows["mlp"].flops + 4 * 16 + 16


# -- the cached decode and generation, against transformers --------------------------------
CTX, W = 32, 4
MODELS = {  # GQA / MQA, k ≠ d/H; Phi-3 with a window of W and RoPE on half of each head
    "olmo2": Config("olmo2", V, CTX, 2, 24, 6, 2, d_mlp=40, bias=True, rope_theta=3e4),
    "phi3": Config("phi3", V, CTX, 2, 24, 4, 1, d_head=8, d_mlp=40, sliding_window=W,
                   rotary_fraction=0.5),
}  # fmt: skip


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tmp_path_factory):
    """(jaxformer model, params, the export loaded by transformers) of one family."""
    model = build(MODELS[request.param])
    path = tmp_path_factory.mktemp(request.param)
    params, hf = random_export(model, path, seed=0, embed_scale=2)
    assert type(hf).__name__ == CLASSES[request.param]
    return model, params, hf


def test_cached_decode_equals_recompute_and_transformers_at_every_position(exported):
    model, params, hf = exported
    t = np.random.default_rng(4).integers(0, V, CTX).astype(np.int32)
    step = jax.jit(lambda p, cache, x, i: decode_step(model, p, cache, x, i))
    cache, rows = empty_cache(model, CTX), []
    for i in range(CTX):
        row, cache = step(params, cache, t[i], i)
        rows.append(np.asarray(row))
    full = np.asarray(jax.jit(model)(params, t))
    ref = hf_logits(hf, t[None])[0]
    assert 4 < np.abs(ref).max() < 15
    assert rel(full, ref) <= RTOL
    for i in range(CTX):
        assert rel(rows[i], full[i]) <= RTOL, i
        assert rel(rows[i], ref[i]) <= RTOL, i


def test_greedy_generation_equals_transformers(exported):
    model, params, hf = exported
    prompts, N = [[3, 14, 15, 9, 2, 40], [27, 1, 8]], 3 * W  # past 2W new tokens
    ours = np.asarray(generate(model, params, prompts, N, temperature=0))
    for p, row in zip(prompts, ours, strict=True):
        ref = hf_greedy(hf, p, N)
        assert len(set(ref)) > 3  # not a degenerate repetition
        assert list(row) == list(ref)


# -- training from the CLI ---------------------------------------------------------------
@pytest.mark.parametrize("family", list(CLASSES))
def test_each_family_is_a_training_setting(family):
    from jaxformer.train.config import TrainConfig

    assert TrainConfig.preset("tiny", family=family).model_config(300).family == family


@pytest.mark.slow
@pytest.mark.parametrize(
    "family, extra, resume",
    [("olmo2", ["--n_kv_heads", "1"], True),  # the post-norm block through every stage
     ("phi3", ["--rotary_fraction", "0.5", "--sliding_window", "8"], False)],
)  # fmt: skip
def test_trains_resumes_samples_and_converts_from_the_cli(family, extra, resume, tmp_path, capsys):
    """``jaxformer train --family …`` (tiny), ``--resume`` past its end, ``sample`` and
    ``convert --to-hf``: transformers loads the run's weights to the same logits."""
    from jaxformer.cli import main
    from jaxformer.rundir_load import load_for_inference
    from jaxformer.train.data import bundled_corpus

    data, run = tmp_path / "plays.txt", tmp_path / "run"
    data.write_text(bundled_corpus().read_text()[:20_000])
    argv = ["train", "--preset", "tiny", "--family", family, "--data", str(data),
            "--cache", str(tmp_path / "cache"), "--out", str(run), "--steps", "2",
            "--checkpoint_every", "1", "--eval_every", "1000", "--sample_tokens", "0",
            "--warmup_steps", "1", "--progress", "false", "--n_layers", "1", "--context", "16",
            "--vocab_size", "260", *extra]  # fmt: skip
    assert main(argv) == 0
    if resume:
        argv = ["train", "--out", str(run), "--resume", "--steps", "3", "--progress", "false"]
        assert main(argv) == 0
        assert "(resuming at step 2)" in capsys.readouterr().out
        sample = ["sample", "--checkpoint", str(run), "--prompt", "ROMEO:",
                  "--max-new-tokens", "4", "--temperature", "0"]  # fmt: skip
        assert main(sample) == 0 and capsys.readouterr().out.startswith("ROMEO:")
    config, params, tok = load_for_inference(run)
    assert (config.family, config.n_layers, config.sliding_window) == (
        family, 1, 8 if family == "phi3" else None)  # fmt: skip
    assert main(["convert", "--to-hf", str(run), "--out", str(tmp_path / "hf")]) == 0
    hf = load_hf(tmp_path / "hf")
    assert type(hf).__name__ == CLASSES[family]
    t = np.asarray([tok.encode_ordinary("ROMEO: And what of the night?")[:16]])
    assert rel(logits(build(config), params, t), hf_logits(hf, t)) <= RTOL
