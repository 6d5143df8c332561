"""Honest progress: tokens/s and MFU over the training steps only (no compile, evals or
checkpoints), the bar (and its ETA) from the end of the first step, periodic evals on a
fixed subset of val of at least MIN_EVAL_TOKENS tokens, the final eval on all of it."""

from types import SimpleNamespace

import pytest

from jaxformer.train import TrainConfig
from jaxformer.train.config import MIN_EVAL_TOKENS
from jaxformer.train.progress import Progress
from jaxformer.train.remat import build_model


@pytest.fixture
def progress(tmp_path):
    cfg = TrainConfig.preset("tiny", out=str(tmp_path), progress=False)
    model = build_model(cfg.model_config(300), cfg.remat)
    mesh = SimpleNamespace(size=1)
    run = SimpleNamespace(cfg=cfg, lead=True, log=lambda s: None, mesh=mesh, model=model)
    p = Progress(run, 0, False)
    yield p
    p.close()
    p.metrics.close()


def test_throughput_counts_the_steps_after_the_first_only(progress):
    cfg = progress.run.cfg
    assert progress.bar is None  # no bar, so no ETA, while the first step compiles
    progress.step(1, 30.0, 5.0)  # the first step: compiling, 30 s
    assert progress.bar is not None and progress.bar.n == 1
    for k in range(2, 12):
        progress.step(k, 0.5, 4.0)  # training steps, 0.5 s each; evals between them are not
    tokens = 10 * cfg.batch_size * cfg.context
    assert progress.tokens_per_s() == pytest.approx(tokens / 5.0)
    assert progress.mfu(progress.tokens_per_s()) > 0


def test_periodic_evals_read_a_fixed_subset_of_at_least_min_eval_tokens():
    tiny = TrainConfig.preset("tiny")  # 8 windows of 32 tokens a batch: 64 batches
    b = tiny.batch_size // tiny.micro_batches
    assert tiny.periodic_eval_batches * b * tiny.context >= MIN_EVAL_TOKENS
    default = TrainConfig.preset("default")  # 8 batches of 32 × 128 already exceed it
    assert default.periodic_eval_batches == default.eval_batches == 8
    assert MIN_EVAL_TOKENS >= 16_384


def test_the_evaluator_spreads_a_fixed_subset_and_reads_all_of_val_at_the_end():
    import numpy as np

    from jaxformer.train.evaluate import make_evaluator

    seen = []

    def eval_step(params, x, mask):
        seen.append(np.asarray(x)[:, 0].copy())
        return float(np.asarray(mask).sum())

    val = np.arange(4000) % 250
    corpus = SimpleNamespace(val=val, token_bytes=np.ones(300, np.int64))
    evaluate = make_evaluator(eval_step, corpus, 32, 4, SimpleNamespace(size=1))
    nll, n_tok, _ = evaluate(None, 3)
    first = np.concatenate(seen)
    seen.clear()
    assert evaluate(None, 3)[1] == n_tok and np.array_equal(np.concatenate(seen), first)
    seen.clear()
    _, n_all, _ = evaluate(None, None)
    assert n_all > n_tok and len(np.concatenate(seen)) >= evaluate.windows
