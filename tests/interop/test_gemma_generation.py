"""Gemma, Gemma 2 and Gemma 3 made in jaxformer (local and global layers, windows shorter
than the context), exported to transformers: the cached decode equals the full recompute
and transformers' logits at every position, greedy generation through the KV cache
equals transformers' greedy ``generate`` for three times the window, and a local layer's
cache is a ring of the window (its memory does not grow with the length). And the
families train from the CLI settings, then generate from the run directory.
"""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gemma_hf import CLASSES, RTOL, V  # noqa: E402
from hf_reference import hf_greedy, hf_logits, random_export, rel  # noqa: E402

from jaxformer import Config, build  # noqa: E402
from jaxformer.generate import decode_step, empty_cache, generate, prefill  # noqa: E402

CTX, W = 32, 4
MODELS = {  # GQA or MQA, k ≠ d/H; Gemma 2: local, global; Gemma 3: two local, a global
    "gemma": Config("gemma", V, CTX, 2, 24, 3, 1, d_head=10, d_mlp=40, tied=False),
    "gemma2": Config(
        "gemma2", V, CTX, 2, 24, 4, 2, d_head=6, d_mlp=40, sliding_window=W, global_every=2,
        attn_softcap=5.0, logit_softcap=12.0, query_pre_attn_scalar=20, tied=False,
    ),
    "gemma3_text": Config(
        "gemma3_text", V, CTX, 3, 20, 4, 1, d_head=8, d_mlp=40, sliding_window=W,
        global_every=3, rope_theta=1e6, rope_local_theta=1e4, logit_softcap=15.0, tied=False,
    ),
}  # fmt: skip


@pytest.fixture(scope="module", params=list(MODELS))
def windowed(request, tmp_path_factory):
    """(jaxformer model, params, the export loaded by transformers) of one family."""
    model = build(MODELS[request.param])
    path = tmp_path_factory.mktemp(request.param)
    params, hf = random_export(model, path, seed=3, embed_scale=1.5)
    assert type(hf).__name__ == CLASSES[request.param]
    return model, params, hf


def test_cached_decode_equals_recompute_and_transformers_at_every_position(windowed):
    """A prefill of 11 tokens (almost 3 windows), then one token at a time to the end of
    the context (8 windows); and one token at a time from an empty cache."""
    model, params, hf = windowed
    t = np.random.default_rng(4).integers(0, V, CTX).astype(np.int32)
    step = jax.jit(lambda p, cache, x, i: decode_step(model, p, cache, x, i))
    full = np.asarray(jax.jit(model)(params, t))  # the whole sequence recomputed from 0
    ref = hf_logits(hf, t[None])[0]  # row i: transformers' logits after t[: i + 1]
    assert 4 < np.abs(ref).max() < 20
    assert rel(full, ref) <= RTOL  # the export is the same function
    n = 11
    head, cache = prefill(model, params, t[:n], CTX)
    rows = list(np.asarray(head))
    for i in range(n, CTX):
        row, cache = step(params, cache, t[i], i)
        rows.append(np.asarray(row))
    cache = empty_cache(model, CTX)
    for i in range(CTX):
        row, cache = step(params, cache, t[i], i)
        assert rel(row, full[i]) <= RTOL, i
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


def test_a_local_layers_cache_is_a_ring_of_the_window():
    """The cache of a windowed layer holds w slots (and their positions) whatever the
    length; a global layer's holds the length."""
    c = MODELS["gemma3_text"]
    G, k = c.n_kv_heads, c.d_head
    for S in (CTX, 4 * CTX):
        cache = empty_cache(build(c.replace(context=4 * CTX)), S)["blocks"]
        assert cache["local"]["attn"]["k"].shape == (2, G, W, k)  # layers 0, 1
        assert cache["local"]["attn"]["pos"].shape == (2, W)
        assert cache["global"]["attn"]["v"].shape == (1, G, S, k)  # layer 2
    mistral = Config("mistral", V, 4 * CTX, 2, 16, 4, 2, sliding_window=W)
    assert empty_cache(build(mistral), 4 * CTX)["blocks"]["attn"]["k"].shape == (2, 2, W, 4)


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
        "tiny", family="gemma3_text", sliding_window=8, global_every=2, n_kv_heads=1,
        d_head=12, rope_local_theta=1e4, data=str(data), cache=str(tmp_path / "cache"),
        out=str(tmp_path / "run"), steps=4, warmup_steps=2, checkpoint_every=2, eval_every=2,
        sample_tokens=2, progress=False,
    )  # fmt: skip
    summary = train(cfg, log=lambda line: None)
    losses = [m["loss"] for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    assert summary["step"] == 4 and len(losses) == 4 and np.isfinite(losses).all()

    config, params, tok = load_for_inference(tmp_path / "run")
    assert (config.family, config.sliding_window, config.global_every) == ("gemma3_text", 8, 2)
    model = build(config)
    ids = tok.encode_ordinary("ROMEO: And what of the night? Speak, good friar.")[:16]
    assert len(ids) > 8  # a prompt longer than the window
    new = list(np.asarray(generate(model, params, ids, 6, temperature=0)))
    full = model(params, np.asarray(ids + new))  # greedy: each new token the argmax after
    assert list(np.argmax(full[len(ids) - 1 : -1], -1)) == new  # its prefix (one forward)
