"""Mistral, Qwen2 and Qwen3 made in jaxformer, windowed, exported to transformers: the cached
decode equals the full recompute and transformers' logits at every position, and greedy
generation through the KV cache equals transformers' greedy ``generate`` (whose cache
keeps only the window) for three times the window. And a family trains from the CLI
settings, then generates from its run directory.
"""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_reference import hf_greedy, hf_logits, random_export, rel  # noqa: E402
from llama_like_hf import CLASSES, RTOL, V  # noqa: E402

from jaxformer import Config, build  # noqa: E402
from jaxformer.generate import decode_step, empty_cache, generate  # noqa: E402

CTX, W = 32, 4
MODELS = {  # a window of W on every layer, GQA or MQA, k ≠ d/H, biases, tied
    "mistral": Config("mistral", V, CTX, 2, 24, 6, 2, d_mlp=40, sliding_window=W, rope_theta=3e4),
    "qwen2": Config("qwen2", V, CTX, 2, 24, 4, 1, d_head=6, d_mlp=40, tied=True, sliding_window=W),
    "qwen3": Config("qwen3", V, CTX, 2, 20, 5, 1, d_head=14, d_mlp=40, bias=True, sliding_window=W),
}  # fmt: skip


@pytest.fixture(scope="module", params=list(MODELS))
def windowed(request, tmp_path_factory):
    """(jaxformer model, params, the export loaded by transformers) of one family."""
    model = build(MODELS[request.param])
    path = tmp_path_factory.mktemp(request.param)
    params, hf = random_export(model, path, seed=0, embed_scale=2)
    assert type(hf).__name__ == CLASSES[request.param]
    return model, params, hf


def test_cached_decode_equals_recompute_and_transformers_at_every_position(windowed):
    """One token at a time from an empty cache, over the whole context (8 windows)."""
    model, params, hf = windowed
    t = np.random.default_rng(4).integers(0, V, CTX).astype(np.int32)
    step = jax.jit(lambda p, cache, x, i: decode_step(model, p, cache, x, i))
    cache, rows = empty_cache(model, CTX), []
    for i in range(CTX):
        row, cache = step(params, cache, t[i], i)
        rows.append(np.asarray(row))
    full = np.asarray(jax.jit(model)(params, t))  # the whole sequence recomputed from 0
    ref = hf_logits(hf, t[None])[0]  # row i: transformers' logits after t[: i + 1]
    assert 4 < np.abs(ref).max() < 15
    assert rel(full, ref) <= RTOL  # the export is the same function
    for i in range(CTX):
        assert rel(rows[i], full[i]) <= RTOL, i
        assert rel(rows[i], ref[i]) <= RTOL, i


def test_greedy_generation_equals_transformers(windowed):
    model, params, hf = windowed
    prompts, N = [[3, 14, 15, 9, 2, 40], [27, 1, 8]], 3 * W  # past 2W new tokens
    ours = np.asarray(generate(model, params, prompts, N, temperature=0))  # one ragged batch
    for p, row in zip(prompts, ours, strict=True):
        ref = hf_greedy(hf, p, N)
        assert len(set(ref)) > 3  # not a degenerate repetition
        assert list(row) == list(ref)


# -- training ----------------------------------------------------------------------------
@pytest.mark.parametrize("family", list(CLASSES))
def test_each_family_is_a_training_setting(family):
    from jaxformer.train.config import TrainConfig

    assert TrainConfig.preset("tiny", family=family).model_config(300).family == family


@pytest.mark.slow
def test_trains_from_the_cli_settings_and_generates(tmp_path):
    from jaxformer.rundir_load import load_for_inference
    from jaxformer.train.config import TrainConfig
    from jaxformer.train.data import bundled_corpus
    from jaxformer.train.loop import train
    from jaxformer.train.report import read_metrics

    data = tmp_path / "plays.txt"
    data.write_text(bundled_corpus().read_text()[:20_000])
    cfg = TrainConfig.preset(
        "tiny", family="qwen3", sliding_window=8, n_kv_heads=1, d_head=12,
        data=str(data), cache=str(tmp_path / "cache"), out=str(tmp_path / "run"), steps=6,
        warmup_steps=2, checkpoint_every=3, eval_every=3, sample_tokens=0, progress=False,
    )  # fmt: skip
    summary = train(cfg, log=lambda line: None)
    losses = [m["loss"] for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    assert summary["step"] == 6 and len(losses) == 6 and np.isfinite(losses).all()

    config, params, tok = load_for_inference(tmp_path / "run")
    assert (config.family, config.sliding_window, config.qk_norm) == ("qwen3", 8, "head")
    model = build(config)
    ids = tok.encode_ordinary("ROMEO: And what of the night? Speak, good friar.")[:16]
    assert len(ids) > 8  # a prompt longer than the window
    new = list(np.asarray(generate(model, params, ids, 6, temperature=0)))
    full = model(params, np.asarray(ids + new))  # greedy: each new token the argmax after
    assert list(np.argmax(full[len(ids) - 1 : -1], -1)) == new  # its prefix (one forward)
