"""Checkpoints: exact round trips, keep-last-k, partial writes ignored, load_for_inference."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxformer.models import build
from jaxformer.tokenizer import Tokenizer
from jaxformer.train import TrainConfig
from jaxformer.train.checkpoint import (
    CheckpointError,
    Checkpoints,
    load_for_inference,
    save_run_files,
)

CFG = TrainConfig.preset("tiny", vocab_size=260)


@pytest.fixture(scope="module")
def state():
    params = build(CFG.model_config(260)).init(jax.random.key(0))
    opt = optax.adamw(1e-3)
    opt_state = opt.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    _, opt_state = jax.jit(opt.update)(grads, opt_state, params)  # nonzero moments, count 1
    return params, opt_state


def _equal(a, b):
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def test_round_trip_is_exact_and_keeps_the_last_k(tmp_path, state):
    params, opt_state = state
    ck = Checkpoints(tmp_path, keep=2)
    for k in (10, 20, 30):
        ck.save(k, params, opt_state, {"sampler": {"seed": 0, "step": k}})
    ck.wait()
    assert ck.steps() == [20, 30]
    p, s, meta = ck.restore(30, params, opt_state)
    ck.close()
    assert _equal(p, params) and _equal(s, opt_state)
    assert meta == {"step": 30, "sampler": {"seed": 0, "step": 30}}


def test_partial_checkpoints_are_never_picked_up(tmp_path, state):
    params, opt_state = state
    ck = Checkpoints(tmp_path, keep=3)
    ck.save(5, params, opt_state, {})
    ck.wait()
    ck.close()
    root = tmp_path / "checkpoints"
    # a save killed mid-write: orbax's temporary directory, half filled
    tmp = root / "9.orbax-checkpoint-tmp-1712345678"
    (tmp / "params").mkdir(parents=True)
    (tmp / "params" / "manifest.ocdbt").write_bytes(b"\0" * 10)
    # a step directory without its commit marker (e.g. copied by hand, interrupted)
    (root / "8" / "params").mkdir(parents=True)
    again = Checkpoints(tmp_path, keep=3)  # as a restarted run sees it
    assert again.steps() == [5] and again.latest() == 5
    again.close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, state):
    params, opt_state = state
    d = tmp_path_factory.mktemp("run")
    tok = Tokenizer.train("to be or not to be, that is the question " * 5, 260)
    save_run_files(d, CFG, CFG.model_config(tok.n_vocab), tok)
    ck = Checkpoints(d)
    ck.save(7, params, opt_state, {})
    ck.wait()
    ck.close()
    return d, tok


def test_load_for_inference(run_dir, state):
    d, tok = run_dir
    config, params, tokenizer = load_for_inference(d)
    assert config == CFG.model_config(260)
    assert tokenizer == tok
    assert _equal(params, state[0])
    assert isinstance(jax.tree.leaves(params)[0], jax.Array)


def test_load_for_inference_explains_what_is_missing(tmp_path, run_dir):
    with pytest.raises(CheckpointError, match="no run directory"):
        load_for_inference(tmp_path / "absent")
    with pytest.raises(CheckpointError, match="not a training run"):
        load_for_inference(tmp_path)
    d, tok = run_dir
    empty = tmp_path / "empty"
    save_run_files(empty, CFG, CFG.model_config(tok.n_vocab), tok)
    with pytest.raises(CheckpointError, match="holds no complete checkpoint"):
        load_for_inference(empty)
    (empty / "checkpoints" / "3.orbax-checkpoint-tmp-1").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="holds no complete checkpoint"):
        load_for_inference(empty)
