"""Training on JSONL documents from the CLI: the run packs them (and says how well), a run
stopped by SIGTERM and resumed is the uninterrupted run bit for bit, on two devices it is the
one-device run, and its val loss is the loss over the responses alone, as an eval of the
saved model computes it here."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxformer.cli import main
from jaxformer.models import build
from jaxformer.rundir import Checkpoints
from jaxformer.rundir_load import load_for_inference
from jaxformer.train.data import bundled_corpus
from jaxformer.train.packing import eos_id, pack, tokenize
from jaxformer.train.report import read_metrics

pytestmark = pytest.mark.slow  # four short training runs (one on a mesh of two devices)

STEPS = 4
FAULT = "JAXFORMER_FAULT_AT_STEP"  # "N:TERM": the loop sends itself SIGTERM after step N


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("packed")
    text = bundled_corpus().read_text()[:60_000]
    records = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 20]
    with (root / "docs.jsonl").open("w") as f:
        for i, r in enumerate(records):
            head, _, tail = r.partition("\n")
            f.write(json.dumps({"prompt": head + "\n", "response": tail} if tail and i % 2
                               else {"text": r}) + "\n")  # fmt: skip
    args = lambda out: [
        "train", "--preset", "tiny", "--data", str(root / "docs.jsonl"), "--cache",
        str(root / "cache"), "--out", str(out), "--steps", str(STEPS), "--warmup_steps", "0",
        "--eval_every", "2", "--checkpoint_every", "2", "--sample_tokens", "0",
        "--micro_batches", "2", "--progress", "false",
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
    return root, args


def _params(run):
    config, _, tok = load_for_inference(run)
    ck = Checkpoints(run, read_only=True)
    params, _, _ = ck.restore(STEPS, jax.eval_shape(build(config).init, jax.random.key(0)))
    ck.close()
    return config, params, tok


def test_a_resumed_packed_run_is_the_uninterrupted_run_bit_for_bit(runs):
    root, _ = runs
    key = lambda r: (r["step"], r.get("loss"), r.get("val_loss"))
    whole, cut = (read_metrics(root / r / "metrics.jsonl") for r in ("whole", "cut"))
    assert [key(r) for r in cut] == [key(r) for r in whole]
    (_, a, _), (_, b, _) = _params(root / "whole"), _params(root / "cut")
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_the_val_loss_is_over_the_val_responses(runs):
    root, _ = runs
    config, params, tok = _params(root / "whole")
    lines = (root / "docs.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    val = recs[-round(0.1 * len(recs)) :]
    pairs = [(r.get("prompt", ""), r.get("response", r.get("text"))) for r in val]
    docs = tokenize(pairs, tok.to_tiktoken().encode_ordinary, eos_id(tok))
    model, T = build(config), config.context
    pieces = []  # (ids of a piece of T + 1, whether each of its targets is the response's)
    for (n, n_prompt), start in zip(docs.table, np.cumsum([0, *docs.table[:-1, 0]])):
        ids = docs.ids[start : start + n]
        for a in range(0, n, T + 1):  # pieces of T + 1, each alone
            piece = ids[a : a + T + 1]
            pieces.append((piece, np.arange(a + 1, a + len(piece)) >= n_prompt))
    # each piece at the start of a window of its own, padded after it (causal: unchanged)
    x = np.stack([np.pad(p[:-1], (0, T - len(p) + 1)) for p, _ in pieces])
    Z = np.asarray(jax.jit(jax.vmap(model, in_axes=(None, 0)))(params, x), np.float64)
    total, count = 0.0, 0
    for (piece, keep), z in zip(pieces, Z):
        z = z[: len(piece) - 1] - z[: len(piece) - 1].max(-1, keepdims=True)
        lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        nll = -lp[np.arange(len(piece) - 1), piece[1:]]
        total, count = total + nll[keep].sum(), count + int(keep.sum())
    last = [r for r in read_metrics(root / "whole" / "metrics.jsonl") if "val_loss" in r][-1]
    assert last["step"] == STEPS
    assert last["val_loss"] == pytest.approx(total / count, rel=1e-5)
    assert (pack(docs, T)[0].segments.max(1) > 1).any()  # windows that hold several documents


def test_on_a_mesh_of_two_devices_the_packed_run_is_the_one_device_run(runs):
    """data=2: each device reads half of every micro-batch's windows (their tokens, segment
    ids and masks), in a subprocess whose jax starts with two CPU devices."""
    root, args = runs
    argv = [*args(root / "mesh"), "--mesh", "data=2"]
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    env = os.environ | {"XLA_FLAGS": flags.strip()}  # the suite's flags, and two devices
    code = "import sys; from jaxformer.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "data=2" in r.stdout
    one, two = (read_metrics(root / r / "metrics.jsonl") for r in ("whole", "mesh"))
    assert [r["step"] for r in two] == [r["step"] for r in one]
    for a, b in zip(one, two):
        for k in ("loss", "val_loss"):
            if k in a:
                assert b[k] == pytest.approx(a[k], rel=1e-5), (k, a, b)
