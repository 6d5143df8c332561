"""Benchmark the mixture of experts' train step: routed against dense, and against a dense
model of the same active parameters.

    .venv/bin/python scripts/bench_moe.py [--T 256] [--B 8] [--rounds 7]

Three models of one shape (L=2, d=256, H=4, V=4096, T=256, B=8 windows, f32, the library's
train step ``jaxformer.train.step``: clipping, AdamW, the auxiliary losses):

    routed   family "mixtral", E=8 experts of m=512, k=2: only the chosen experts compute
    dense    the same model and params, every expert on every token (``MoE.impl="dense"``)
    active   family "mistral" with one SwiGLU of m = k·512: the parameters a token uses

Each is compiled once, then timed in alternating rounds (medians), so a load that drifts
falls on all alike; the FLOPs per step are describe's (the terms of each map, ×3 for the
backward), with XLA's own count beside them. The machine's load is printed: rerun when
it is low.
"""

import argparse
import dataclasses
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxformer import Config, build
from jaxformer.layers.moe import MoE
from jaxformer.train import report
from jaxformer.train import step as S
from jaxformer.train.config import TrainConfig
from jaxformer.train.optim import optimizer

L, D, H, V, E, K, M = 2, 256, 4, 4096, 8, 2, 512


def models(T: int) -> dict:
    moe = Config(family="mixtral", vocab_size=V, context=T, n_layers=L, d_model=D, n_heads=H,
                 n_kv_heads=H, d_mlp=M, n_experts=E, top_k=K, attention="dense")  # fmt: skip
    routed = dense = build(moe)
    for path, m in list(routed.walk()):
        if isinstance(m, MoE):  # the same composite and params, each mixture evaluated densely
            dense = dense.replace(path, dataclasses.replace(m, impl="dense"))
    active = Config(family="mistral", vocab_size=V, context=T, n_layers=L, d_model=D, n_heads=H,
                    n_kv_heads=H, d_mlp=K * M, attention="dense")  # fmt: skip
    return {"routed": routed, "dense": dense, "active": build(active)}


def compiled(model, T: int, B: int):
    tc = TrainConfig(n_layers=L, d_model=D, n_heads=H, context=T, batch_size=B, steps=1000)
    opt = optimizer(tc)
    params = model.init(jax.random.key(0))
    state = opt.init(params)
    batch = jnp.asarray(np.random.default_rng(0).integers(0, V, (1, B, T + 1)), jnp.int32)
    step = S.make_train_step(model, opt, "float32").lower(params, state, batch).compile()
    cost = step.cost_analysis()
    xla = float((cost[0] if isinstance(cost, list | tuple) else cost).get("flops", float("nan")))
    box = {"params": params, "state": state}

    def run():
        box["params"], box["state"], m = step(box["params"], box["state"], batch)
        jax.block_until_ready(m)

    return run, xla


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; jax {jax.__version__}")
    built = models(a.T)
    runs, xla, flops = {}, {}, {}
    for name, model in built.items():
        runs[name], xla[name] = compiled(model, a.T, a.B)
        flops[name] = report.flops_per_token(model, a.T) * a.B * a.T
        runs[name]()  # warm
    times = {n: [] for n in runs}
    for _ in range(a.rounds):
        for n, run in runs.items():
            t = time.perf_counter()
            run()
            times[n].append(time.perf_counter() - t)
    ms = {n: 1e3 * statistics.median(ts) for n, ts in times.items()}
    tok = a.B * a.T
    print(f"\nE={E}, k={K}, m={M}; L={L}, d={D}, H={H}, V={V}; T={a.T}, B={a.B}; medians of "
          f"{a.rounds} alternating rounds")  # fmt: skip
    print(f"{'step':<8} {'ms/step':>9} {'tokens/s':>10} {'GFLOP/step':>11} {'XLA GFLOP':>10}"
          f" {'vs dense':>9}")  # fmt: skip
    for n in runs:
        print(f"{n:<8} {ms[n]:>9.1f} {tok / ms[n] * 1e3:>10,.0f} {flops[n] / 1e9:>11.2f} "
              f"{xla[n] / 1e9:>10.2f} {ms['dense'] / ms[n]:>8.2f}×")  # fmt: skip
    print(
        f"\nrouted / dense tokens/s: {ms['dense'] / ms['routed']:.2f}× (target ≥ 2.5×); "
        f"routed / same-active dense model: {ms['active'] / ms['routed']:.2f}×; a routing "
        f"that cost nothing (routed = active) would give {ms['dense'] / ms['active']:.2f}×"
    )
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
