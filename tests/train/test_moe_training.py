"""A mixture of experts trained from the CLI: the auxiliary losses and each expert's load
in metrics.jsonl, and a run stopped by SIGTERM and resumed is the uninterrupted run bit for
bit (the router's choices, hence the losses, depend on every bit of θ)."""

import jax
import numpy as np
import pytest

from jaxformer.cli import main
from jaxformer.models import build
from jaxformer.rundir import Checkpoints
from jaxformer.rundir_load import load_for_inference
from jaxformer.train.data import bundled_corpus
from jaxformer.train.report import read_metrics

pytestmark = pytest.mark.slow  # three training runs, a module fixture of a minute

STEPS = 6
FAULT = "JAXFORMER_FAULT_AT_STEP"  # "N:TERM": the loop sends itself SIGTERM after step N


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("moe")
    (root / "text.txt").write_text(bundled_corpus().read_text()[:20_000])
    args = lambda out: [
        "train", "--preset", "tiny", "--family", "mixtral", "--n_experts", "4", "--top_k", "2",
        "--data", str(root / "text.txt"), "--cache", str(root / "cache"), "--out", str(out),
        "--steps", str(STEPS), "--warmup_steps", "0", "--eval_every", "1000",
        "--checkpoint_every", "2", "--sample_tokens", "0", "--progress", "false",
    ]  # fmt: skip
    mp = pytest.MonkeyPatch()
    try:
        mp.delenv(FAULT, raising=False)
        assert main(args(root / "whole")) == 0
        mp.setenv(FAULT, "3:TERM")
        assert main(args(root / "cut")) == 0  # SIGTERM: saved at step 3, exit 0
        mp.delenv(FAULT)
        assert main([*args(root / "cut"), "--resume"]) == 0
    finally:
        mp.undo()
    return root / "whole", root / "cut"


def _steps(run):
    return [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]


def _params(run):
    config, _, _ = load_for_inference(run)
    ck = Checkpoints(run, read_only=True)
    params, _, _ = ck.restore(STEPS, jax.eval_shape(build(config).init, jax.random.key(0)))
    ck.close()
    return config, params


def test_metrics_record_the_auxiliary_losses_and_the_load(runs):
    steps = _steps(runs[0])
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
    for r in steps:
        assert len(r["expert_load"]) == 4 and abs(sum(r["expert_load"]) - 1) < 1e-3
        assert r["dropped"] == 0.0  # one device: the routed form keeps every pair
        # near the uniform router of the first steps: balance E Σ f P̄ ≈ 1 and z-loss
        # (logsumexp)² ≈ (log E)², weighted 0.01 and 1e-3, summed over the 2 layers
        assert r["aux_loss"] == pytest.approx(2 * (0.01 + 1e-3 * np.log(4) ** 2), rel=0.1)
    config, _ = _params(runs[0])
    assert (config.family, config.n_experts, config.top_k) == ("mixtral", 4, 2)


def test_resumed_mixture_is_the_uninterrupted_run_bit_for_bit(runs):
    whole, cut = runs
    key = lambda r: (r["step"], r["loss"], r["aux_loss"], r["expert_load"])
    assert [key(r) for r in _steps(cut)] == [key(r) for r in _steps(whole)]
    (_, a), (_, b) = _params(whole), _params(cut)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
