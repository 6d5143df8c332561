"""``--optimizer muon``: which parameters Muon moves, its update against the formula written
again in numpy (momentum, Nesterov, the quintic Newton–Schulz iteration, the fan scaling,
the rate and the decay), and a run that trains, resumes bit for bit and refuses LoRA."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformer.cli import main
from jaxformer.models import Config, build
from jaxformer.train import TrainConfig, optim
from jaxformer.train.report import read_metrics

NS = (3.4445, -4.7750, 2.0315)  # Jordan et al.'s quintic coefficients (optax's default)
MUON = {"W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_gate"}


def _labels(params):
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {
        ".".join(str(k.key) for k in path): optim.muon_axes(path, x) is not None for path, x in flat
    }


@pytest.mark.parametrize("family", ["gpt2", "llama", "mixtral"])
def test_muon_moves_the_blocks_matrices_and_adamw_the_rest(family):
    c = Config(family=family, vocab_size=64, context=16, n_layers=2, d_model=16, n_heads=2)
    labels = _labels(build(c).init(jax.random.key(0)))
    for name, muon in labels.items():
        leaf = name.rsplit(".", 1)[-1]
        inside = name.startswith("blocks.")
        assert muon == (inside and (leaf in MUON or leaf.startswith("W_"))), name
    assert not labels["embed.W_E"] and any(labels.values())


def _ns5(G):
    """The orthogonal factor's quintic Newton–Schulz estimate, in float64."""
    X = G.T if G.shape[0] > G.shape[1] else G
    X = X / (np.linalg.norm(X) + 1e-8)
    a, b, c = NS
    for _ in range(5):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if G.shape[0] > G.shape[1] else X


def _as_matrices(x, name):
    """[L, ...] → [L, fan_in, fan_out]: attention's per-head stacks as one map each."""
    if name in ("W_Q", "W_K", "W_V"):  # [L, H, d, k] → [L, d, H·k]
        L, H, d, k = x.shape
        return x.transpose(0, 2, 1, 3).reshape(L, d, H * k)
    if name == "W_O":  # [L, H, k, d] → [L, H·k, d]
        return x.reshape(x.shape[0], -1, x.shape[-1])
    return x


def test_the_update_is_the_formula():
    lr, muon_lr, wd, beta = 1e-2, 0.05, 0.1, 0.95
    cfg = TrainConfig(
        optimizer="muon", lr=lr, muon_lr=muon_lr, weight_decay=wd, warmup_steps=0,
        steps=100, grad_clip=0.0,
    )  # fmt: skip
    c = Config(vocab_size=64, context=16, n_layers=2, d_model=16, n_heads=2)
    params = build(c).init(jax.random.key(0))
    opt = optim.optimizer(cfg)
    state = opt.init(params)
    update = jax.jit(opt.update)
    rng = np.random.default_rng(0)
    grads = [jax.tree.map(lambda x: rng.standard_normal(x.shape), params) for _ in range(3)]
    names = ("W_Q", "W_O", "W_in", "W_out")
    mu = {n: 0.0 for n in names}
    for t, g in enumerate(grads, start=1):
        g32 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g)
        u, state = update(g32, state, params)
        eta = lr  # no warmup, and the decay starts at update 80 of 100: η_k = η here
        for n in names:
            sub = "attn" if n.startswith("W_Q") or n == "W_O" else "mlp"
            gn = _as_matrices(np.asarray(g["blocks"][sub][n], np.float64), n)
            w = _as_matrices(np.asarray(params["blocks"][sub][n], np.float64), n)
            mu[n] = beta * mu[n] + (1 - beta) * gn  # optax's moment, bias-corrected below
            nesterov = beta * mu[n] / (1 - beta ** (t + 1)) + (1 - beta) * gn / (1 - beta**t)
            fan_in, fan_out = gn.shape[1:]
            want = np.stack([_ns5(m) for m in nesterov]) * math.sqrt(max(1, fan_out / fan_in))
            want = -(muon_lr / lr) * eta * want - eta * wd * w
            got = _as_matrices(np.asarray(u["blocks"][sub][n], np.float64), n)
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-7, err_msg=f"{n} step {t}")
        # AdamW moves the rest: Adam's first update is −η g/|g| (and biases are not decayed)
        if t == 1:
            b = np.asarray(u["blocks"]["mlp"]["b_in"])
            np.testing.assert_allclose(b, -eta * np.sign(g["blocks"]["mlp"]["b_in"]), rtol=1e-3)


def test_muon_trains_resumes_bit_for_bit_and_refuses_lora(tmp_path, capsys, monkeypatch):
    """A tiny run with Muon lowers the loss; stopped by SIGTERM and resumed, it repeats the
    uninterrupted run (Muon's momentum is in the checkpoint)."""
    flags = ["--preset", "tiny", "--optimizer", "muon", "--muon_lr", "0.02", "--progress", "false"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["train", *flags, "--out", str(whole)]) == 0
    monkeypatch.setenv("JAXFORMER_FAULT_AT_STEP", "23:TERM")  # the loop stops itself there
    main(["train", *flags, "--out", str(cut)])
    monkeypatch.delenv("JAXFORMER_FAULT_AT_STEP")
    assert main(["train", *flags, "--out", str(cut), "--resume"]) == 0
    losses = [m["loss"] for m in read_metrics(whole / "metrics.jsonl") if "loss" in m]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    cut_losses = [m["loss"] for m in read_metrics(cut / "metrics.jsonl") if "loss" in m]
    assert cut_losses == losses
    capsys.readouterr()
    code = main(["train", "--optimizer", "muon", "--lora_rank", "4", "--init-from", "x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--optimizer" in err[0] and "adamw" in err[0]
