"""Benchmark the training step: jaxformer's jitted step against a PyTorch eager reference.

    .venv/bin/python scripts/bench_train.py [--steps 10] [--configs small,medium]
                                            [--no-torch] [--no-compile]

Configs (GPT-2 family, f32, B=8 windows, V=4096): small L=4 H=4 d=256 T=256 and medium
L=8 H=8 d=512 T=512. For each, ``jaxformer.train.step.make_train_step`` (the library's
step: clipping, AdamW with decay on W_* only) and the same model and optimizer written in
PyTorch eager below (pre-LN blocks, tied embeddings, GELU tanh, SDPA, 2 threads): medians
of ms/step after warm-up, tokens/s, MFU, and the ratios. PyTorch runs in processes of its
own, twice: as a PyTorch user runs it, and with the glibc malloc settings that importing
``jaxformer.train.step`` applies to the jaxformer process (they speed PyTorch up too).

    model FLOPs = 3 × the forward's matmul FLOPs = 6·N·tokens + 12·L·T·H·k·tokens
    (N = the matmul parameters, the tied unembedding included; the attention counted over
    all T keys, as the masked product computes it), printed beside XLA's cost_analysis of
    the compiled step (which adds the elementwise work and the optimizer).
    MFU = model FLOPs / step time / peak, the peak a jitted f32 matmul timed in this run.

Then the compile time of the forward+backward for L = 2, 8, 24 (small widths): scanned
(``repeat``), the scan unrolled (what the CPU step uses) and the explicit composite
``Repeat.unroll()``. Other processes share the CPU: the load is printed; rerun when it is low.
Transparent huge pages for malloc, ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` in the
environment of the run (it reaches the PyTorch processes too), add about 5% to both.
"""

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxformer.models import Config, build

B, V = 8, 4096
CONFIGS = {
    "small": dict(n_layers=4, n_heads=4, d_model=256, context=256),
    "medium": dict(n_layers=8, n_heads=8, d_model=512, context=512),
}


def config(name: str, **changes) -> Config:
    return Config(family="gpt2", vocab_size=V, **(CONFIGS[name] | changes))


def model_flops(c: Config, T: int) -> float:
    """FLOPs of one training step on B windows of T: 3 × the forward's matmuls."""
    d, H, G, k, m, L = c.d_model, c.n_heads, c.n_kv_heads, c.d_head, c.d_mlp, c.n_layers
    N = L * (d * (H + 2 * G) * k + H * k * d + (3 if c.family == "llama" else 2) * d * m)
    N += d * c.vocab_size  # the unembedding (W_Eᵀ when tied)
    attention = L * 2 * (2 * T * H * k)  # q·kᵀ and A·v, per token
    return 3 * (2 * N + attention) * B * T


def flops_of(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", float("nan")))


# -- jaxformer ---------------------------------------------------------------------------
class JaxStep:
    """The library's train step on fixed random windows, compiled once."""

    def __init__(self, c: Config, T: int):
        from jaxformer.train import step as S
        from jaxformer.train.config import TrainConfig
        from jaxformer.train.optim import optimizer

        tc = TrainConfig(
            n_layers=c.n_layers, d_model=c.d_model, n_heads=c.n_heads, context=T,
            batch_size=B, steps=1000,
        )  # fmt: skip
        opt = optimizer(tc)
        model = build(c)
        self.params = model.init(jax.random.key(0))
        self.state = opt.init(self.params)
        rng = np.random.default_rng(0)
        self.batch = jnp.asarray(rng.integers(0, V, (1, B, T + 1)), jnp.int32)
        t = time.perf_counter()
        step = S.make_train_step(model, opt, "float32")
        self.compiled = step.lower(self.params, self.state, self.batch).compile()
        self.compile_s = time.perf_counter() - t
        self.xla_flops = flops_of(self.compiled)

    def __call__(self):
        self.params, self.state, m = self.compiled(self.params, self.state, self.batch)
        jax.block_until_ready(m)


# -- the PyTorch eager reference -----------------------------------------------------------
def torch_step(c: Config, T: int, threads: int):
    """One step of the same model and optimizer in PyTorch eager, as a closure."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    d, H, m = c.d_model, c.n_heads, c.d_mlp

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d, eps=c.norm_eps), nn.LayerNorm(d, eps=c.norm_eps)
            self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.w_in, self.w_out = nn.Linear(d, m), nn.Linear(m, d)

        def forward(self, x):
            heads = lambda t: t.view(B, T, H, d // H).transpose(1, 2)
            q, k, v = self.qkv(self.ln1(x)).split(d, -1)
            z = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
            x = x + self.out(z.transpose(1, 2).reshape(B, T, d))
            return x + self.w_out(F.gelu(self.w_in(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.W_E, self.W_pos = nn.Embedding(V, d), nn.Embedding(c.context, d)
            self.blocks = nn.ModuleList(Block() for _ in range(c.n_layers))
            self.ln_f = nn.LayerNorm(d, eps=c.norm_eps)

        def forward(self, t):
            x = self.W_E(t) + self.W_pos.weight[:T]
            for block in self.blocks:
                x = block(x)
            return self.ln_f(x) @ self.W_E.weight.T  # tied unembedding

    model = GPT()
    matrices = [p for p in model.parameters() if p.ndim == 2]
    others = [p for p in model.parameters() if p.ndim != 2]
    groups = [{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95))
    rng = np.random.default_rng(0)
    w = torch.as_tensor(rng.integers(0, V, (B, T + 1)))
    x, y = w[:, :-1], w[:, 1:]

    def step():
        loss = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


# -- timing ------------------------------------------------------------------------------
def time_alternately(fns: dict, steps: int, warmup: int, per_round: int = 2) -> dict:
    """Seconds per call of each fn, timed in alternating rounds (fair under drifting load)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(max(1, steps // per_round)):
        for name, fn in fns.items():
            for _ in range(per_round):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    return times


# glibc's spelling of what jaxformer.train.step sets with mallopt: one arena, no mmap, no trim
TUNED_MALLOC = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=" + (
    str(2**63)
)


def torch_alone(name: str, args, tuned_malloc: bool) -> list[float]:
    """Seconds per PyTorch step, timed in a fresh process (default or tuned malloc)."""
    env = dict(os.environ)  # a GLIBC_TUNABLES given to this run applies to every process
    if tuned_malloc:
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [TUNED_MALLOC, env.get("GLIBC_TUNABLES")]))
    cmd = [sys.executable, __file__, "--torch-child", name, "--steps", str(args.steps)]
    cmd += ["--warmup", str(args.warmup), "--torch-threads", str(args.torch_threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_config(name: str, args, peak: float) -> list[tuple]:
    c = config(name)
    T = c.context
    jx = JaxStep(c, T)
    times = time_alternately({"jaxformer": jx}, args.steps, args.warmup)
    if not args.no_torch:
        times["pytorch eager"] = torch_alone(name, args, tuned_malloc=False)
        times["pytorch, tuned malloc"] = torch_alone(name, args, tuned_malloc=True)
    flops = model_flops(c, T)
    print(
        f"{name}: L={c.n_layers} H={c.n_heads} d={c.d_model} T={T} B={B} V={V}; model "
        f"FLOPs/step {flops / 1e9:.1f} G, XLA cost_analysis {jx.xla_flops / 1e9:.1f} G "
        f"(×{jx.xla_flops / flops:.2f}); jaxformer compile {jx.compile_s:.1f} s"
    )
    rows = []
    for impl, ts in times.items():
        sec = statistics.median(ts)
        rows.append((name, impl, B * T / sec, sec * 1e3, min(ts) * 1e3, flops / sec / peak))
    return rows


def compile_times(Ls=(2, 8, 24)) -> None:
    """Trace+lower and compile seconds of the loss's value and gradient, by depth and form."""
    from jaxformer.train.loss import loss

    print("\ncompile time of value_and_grad(loss), small widths (trace+lower / XLA compile, s)")
    print(f"{'L':>3}  {'scan':>15}  {'scan, unrolled':>15}  {'Repeat.unroll()':>15}")
    windows = jax.ShapeDtypeStruct((B, CONFIGS["small"]["context"] + 1), jnp.int32)
    for L in Ls:
        model = build(config("small", n_layers=L))
        blocks = model.find("blocks")
        forms = [
            model,
            model.replace("blocks", dataclasses.replace(blocks, unrolled=True)),
            model.replace("blocks", blocks.unroll()),
        ]
        cells = []
        for m in forms:
            params = jax.eval_shape(m.init, jax.random.key(0))
            f = jax.jit(jax.value_and_grad(lambda p, w, m=m: loss(m, p, w)))
            t0 = time.perf_counter()
            lowered = f.lower(params, windows)
            t1 = time.perf_counter()
            lowered.compile()
            t2 = time.perf_counter()
            cells.append(f"{t1 - t0:5.2f} / {t2 - t1:6.2f}")
        print(f"{L:>3}  " + "  ".join(f"{c:>15}" for c in cells))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per implementation")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--configs", default="small,medium", help=f"comma-separated: {list(CONFIGS)}")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="skip the compile-time table")
    p.add_argument("--torch-child", metavar="CONFIG", help=argparse.SUPPRESS)
    args = p.parse_args()
    names = args.configs.split(",")
    for name in names + [args.torch_child] * bool(args.torch_child):
        if name not in CONFIGS:
            p.error(f"unknown config {name!r}; choose from {list(CONFIGS)}")
    if args.torch_child:  # the PyTorch reference alone: print its step times as JSON
        c = config(args.torch_child)
        step = torch_step(c, c.context, args.torch_threads)
        print(json.dumps(time_alternately({"t": step}, args.steps, args.warmup)["t"]))
        return

    from jaxformer.train import report, step  # noqa: F401  (step tunes malloc on import)

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} cores, load {load}")
    peak = report.measure_peak_flops(2048, 10)
    print(f"peak: jitted f32 2048² matmul {peak / 1e9:.0f} GFLOP/s\n")
    rows = [row for name in names for row in bench_config(name, args, peak)]

    print(f"\n{'config':7} {'impl':22} {'tokens/s':>8} {'ms/step':>8} {'min ms':>8} {'MFU':>6}")
    for cfg, impl, tps, ms, best, mfu in rows:
        print(f"{cfg:7} {impl:22} {tps:8.0f} {ms:8.1f} {best:8.1f} {mfu:6.1%}")
    tps = {(r[0], r[1]): r[2] for r in rows}
    for cfg in names:
        for ref in ("pytorch eager", "pytorch, tuned malloc"):
            if (cfg, ref) in tps:
                ratio = tps[(cfg, "jaxformer")] / tps[(cfg, ref)]
                print(f"{cfg}: jaxformer / {ref} = {ratio:.2f}×")
    if not args.no_compile:
        compile_times()
    print(f"\nload at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
