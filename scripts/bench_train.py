"""Benchmark the training step: jaxformer's jitted step against PyTorch eager, torch.compile
and bf16 autocast.

    .venv/bin/python scripts/bench_train.py [--steps 10] [--configs small,medium]
                                            [--impls ...] [--no-torch] [--no-compile]

Configs (GPT-2 family, f32, B=8 windows, V=4096): small L=4 H=4 d=256 T=256 and medium
L=8 H=8 d=512 T=512. For each, ``jaxformer.train.step.make_train_step`` (the library's
step: clipping, AdamW with decay on W_* only) and the same model and optimizer written in
PyTorch eager below (pre-LN blocks, tied embeddings, GELU tanh, SDPA, 2 threads): medians
of ms/step after warm-up, tokens/s, MFU, and the ratios. PyTorch runs in processes of its
own, one per way of running it (``TORCH``): eager as a PyTorch user runs it; eager with the
glibc malloc settings that ``jaxformer.train.process.keep_freed_memory`` applies to the
jaxformer process (they speed PyTorch up too); ``torch.compile`` of the loss (the model and
its cross-entropy, Inductor's C++ kernels); and eager under bf16 ``torch.autocast`` (CPU
matmuls in bf16 through oneDNN, f32 master weights). jaxformer runs in f32 and with
``compute_dtype="bfloat16"`` (a bf16 copy of the weights for the forward and backward).

The two are first shown to be one model: the PyTorch processes load jaxformer's initial
weights and its batch, and the first step's loss and gradient norm must agree (to 1e-4 and
1e-3, relative; in bf16 to 1e-2 and 5e-2) before anything is timed. Then the
implementations take turns, in rounds (jaxformer, PyTorch eager, …; again; …), so that a
load that drifts during the run weighs on all of them alike; each round gives a ratio per
pair, and their median is the ratio reported.

    model FLOPs = 3 × the forward's FLOPs as describe counts them (the matmuls, ≈ 6·N +
    12·L·T·H·k per token, plus the elementwise work; the attention over all T keys, as the
    masked product computes it): the count the training loop's MFU uses. Printed beside
    XLA's cost_analysis of the compiled step (which adds the optimizer).
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
import tempfile
import time
from pathlib import Path

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
    """FLOPs of one training step on B windows of T: 3 × the forward's, as describe counts
    them from each map's term (``train.report.flops_per_token``, the MFU's count)."""
    from jaxformer.train import report

    return report.flops_per_token(build(c.replace(attention="dense")), T) * B * T


def flops_of(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", float("nan")))


# -- jaxformer ---------------------------------------------------------------------------
class JaxStep:
    """The library's train step on fixed random windows, compiled once."""

    def __init__(self, c: Config, T: int, compute_dtype: str = "float32"):
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
        self.initial = jax.tree.map(np.asarray, self.params)  # before the step donates them
        t = time.perf_counter()
        step = S.make_train_step(model, opt, compute_dtype)
        self.compiled = step.lower(self.params, self.state, self.batch).compile()
        self.compile_s = time.perf_counter() - t
        self.xla_flops = flops_of(self.compiled)

    def first_step(self) -> dict:
        """The first step's loss and gradient norm (on the initial weights)."""
        return {k: float(v) for k, v in self.step().items()}

    def step(self):
        self.params, self.state, m = self.compiled(self.params, self.state, self.batch)
        return jax.block_until_ready(m)

    def __call__(self):
        self.step()


def torch_weights(params) -> dict[str, np.ndarray]:
    """jaxformer's gpt2 params as the state dict of ``torch_step``'s GPT (same function)."""
    b = params["blocks"]
    L, H, d, k = b["attn"]["W_Q"].shape
    heads = lambda W: W.transpose(1, 0, 2).reshape(d, H * k)  # [H, d, k] → [d, H·k]
    sd = {"W_E.weight": params["embed"]["W_E"], "W_pos.weight": params["pos"]["W_pos"]}
    sd |= {"ln_f.weight": params["ln_f"]["gamma"], "ln_f.bias": params["ln_f"]["beta"]}
    for l in range(L):
        a, m = ({n: w[l] for n, w in b[x].items()} for x in ("attn", "mlp"))
        qkv = [heads(a[f"W_{n}"]) for n in "QKV"]
        sd |= {  # nn.Linear keeps its weight as [out, in]
            f"blocks.{l}.qkv.weight": np.concatenate(qkv, 1).T,
            f"blocks.{l}.qkv.bias": np.concatenate([a[f"b_{n}"].reshape(-1) for n in "QKV"]),
            f"blocks.{l}.out.weight": a["W_O"].reshape(H * k, d).T,
            f"blocks.{l}.out.bias": a["b_O"],
            f"blocks.{l}.w_in.weight": m["W_in"].T, f"blocks.{l}.w_in.bias": m["b_in"],
            f"blocks.{l}.w_out.weight": m["W_out"].T, f"blocks.{l}.w_out.bias": m["b_out"],
        }  # fmt: skip
        for n in ("ln1", "ln2"):
            sd |= {
                f"blocks.{l}.{n}.weight": b[n]["gamma"][l],
                f"blocks.{l}.{n}.bias": b[n]["beta"][l],
            }
    return {n: np.ascontiguousarray(w) for n, w in sd.items()}


# -- the PyTorch eager reference -----------------------------------------------------------
def torch_step(c: Config, T: int, threads: int, shared: Path | None = None, mode="eager"):
    """One step of the same model and optimizer in PyTorch, as a closure returning the loss
    and the gradient norm. ``shared``: an .npz of jaxformer's weights (``torch_weights``)
    and its batch, to start from instead of PyTorch's own. ``mode``: "eager", "compile"
    (``torch.compile`` of the loss: the model and its cross-entropy) or "bf16" (eager under
    ``torch.autocast(bfloat16)``)."""
    import contextlib

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
    rng = np.random.default_rng(0)
    w = torch.as_tensor(rng.integers(0, V, (B, T + 1)))
    if shared is not None:
        with np.load(shared) as f:
            model.load_state_dict({n: torch.as_tensor(f[n]) for n in f.files if n != "batch"})
            w = torch.as_tensor(f["batch"].astype(np.int64))
    matrices = [p for p in model.parameters() if p.ndim == 2]
    others = [p for p in model.parameters() if p.ndim != 2]
    groups = [{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95))
    x, y = w[:, :-1], w[:, 1:]
    loss_of = lambda x, y: F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
    if mode == "compile":
        loss_of = torch.compile(loss_of)
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    context = bf16 if mode == "bf16" else contextlib.nullcontext

    def step():
        with context():
            loss = loss_of(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return {"loss": loss.item(), "grad_norm": norm.item()}

    return step


# -- timing ------------------------------------------------------------------------------
def timed(fn, k: int) -> list[float]:
    """Seconds of each of k calls of ``fn``."""
    out = []
    for _ in range(k):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


# glibc's spelling of what keep_freed_memory sets with mallopt: one arena, no mmap, no trim
TUNED_MALLOC = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=" + (
    str(2**63)
)
# the ways PyTorch runs, each in its own process: (torch_step's mode, tuned malloc)
TORCH = {
    "pytorch eager": ("eager", False),
    "pytorch tuned malloc": ("eager", True),
    "torch.compile": ("compile", False),
    "pytorch bf16 autocast": ("bf16", False),
}
JAX = {"jaxformer": "float32", "jaxformer bf16": "bfloat16"}
BF16 = {"jaxformer bf16", "pytorch bf16 autocast"}  # checked to bf16's tolerance


class TorchProcess:
    """The PyTorch reference in a process of its own (default or tuned malloc), started on
    jaxformer's weights and batch and driven over a pipe: ``first_step()`` once, then
    ``times(k)`` when its turn comes (it waits, idle, while the others run)."""

    def __init__(self, name: str, args, shared: Path, mode: str, tuned_malloc: bool):
        env = dict(os.environ)  # a GLIBC_TUNABLES given to this run applies to every process
        if tuned_malloc:
            tunables = [TUNED_MALLOC, env.get("GLIBC_TUNABLES")]
            env["GLIBC_TUNABLES"] = ":".join(filter(None, tunables))
        cmd = [sys.executable, __file__, "--torch-child", name, "--shared", str(shared)]
        cmd += ["--torch-threads", str(args.torch_threads), "--torch-mode", mode]
        pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.p = subprocess.Popen(cmd, env=env, **pipes)

    def ask(self, line: str):
        self.p.stdin.write(line + "\n")
        reply = self.p.stdout.readline()
        if not reply:
            raise RuntimeError(f"the PyTorch process ended (exit {self.p.wait()})")
        return json.loads(reply)

    def first_step(self) -> dict:
        return self.ask("first")

    def times(self, k: int) -> list[float]:
        return self.ask(f"time {k}")

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait()


def torch_child(name: str, shared: Path, threads: int, mode: str) -> None:
    """The PyTorch side of ``TorchProcess``: one JSON line per request on stdin."""
    c = config(name)
    step = torch_step(c, c.context, threads, shared, mode)
    for line in sys.stdin:
        cmd, *arg = line.split()
        out = step() if cmd == "first" else timed(step, int(arg[0]))
        print(json.dumps(out), flush=True)


def check_same_model(first: dict[str, dict]) -> None:
    """Stop unless every implementation's first step on the shared weights has jaxformer's
    loss (to 1e-4) and gradient norm (to 1e-3, relative; the bf16 ones to 1e-2 and 5e-2):
    else the timings compare two different models."""
    ours = first["jaxformer"]
    for impl, m in first.items():
        print(f"  first step, {impl:22} loss {m['loss']:.6f}  grad norm {m['grad_norm']:.6f}")
    for impl, m in first.items():
        tolerance = (1e-2, 5e-2) if impl in BF16 else (1e-4, 1e-3)
        for key, rtol in zip(("loss", "grad_norm"), tolerance):
            if not abs(m[key] - ours[key]) <= rtol * abs(ours[key]):
                sys.exit(f"{impl}'s first-step {key} {m[key]} is not jaxformer's {ours[key]}: "
                         "the PyTorch model is not the same model; not timing it")  # fmt: skip


def bench_config(name: str, args, peak: float) -> tuple[list[tuple], dict]:
    c = config(name)
    T = c.context
    jxs = {impl: JaxStep(c, T, dtype) for impl, dtype in JAX.items() if impl in args.impls}
    jx = jxs["jaxformer"]
    first = {impl: j.first_step() for impl, j in jxs.items()}
    procs = []
    if not args.no_torch:
        shared = Path(tempfile.mkdtemp()) / "shared.npz"
        np.savez(shared, batch=np.asarray(jx.batch[0]), **torch_weights(jx.initial))
        for impl, (mode, tuned) in TORCH.items():
            if impl in args.impls:
                procs.append((impl, TorchProcess(name, args, shared, mode, tuned)))
        first |= {impl: proc.first_step() for impl, proc in procs}  # torch.compile compiles
        shared.unlink()
        shared.parent.rmdir()
    print(f"{name}: the same model on the same weights?")
    check_same_model(first)
    runs = {impl: lambda k, j=j: timed(j, k) for impl, j in jxs.items()}
    runs |= {impl: p.times for impl, p in procs}
    for run in runs.values():  # warm-up
        run(args.warmup)
    per_round = 2
    rounds = [{impl: run(per_round) for impl, run in runs.items()}  # each in turn, each round
              for _ in range(max(1, args.steps // per_round))]  # fmt: skip
    for _, proc in procs:
        proc.close()
    times = {impl: [t for r in rounds for t in r[impl]] for impl in runs}
    # jaxformer / the other per round: the ratio of their speeds, measured side by side;
    # jaxformer bf16 against PyTorch's bf16
    pairs = [("jaxformer", impl) for impl in runs if impl != "jaxformer"]
    pairs += [("jaxformer bf16", "pytorch bf16 autocast")] * (BF16 <= set(runs))
    ratios = {pair: [statistics.median(r[pair[1]]) / statistics.median(r[pair[0]])
                     for r in rounds] for pair in pairs}  # fmt: skip
    flops = model_flops(c, T)
    print(
        f"{name}: L={c.n_layers} H={c.n_heads} d={c.d_model} T={T} B={B} V={V}; model "
        f"FLOPs/step {flops / 1e9:.1f} G, XLA cost_analysis {jx.xla_flops / 1e9:.1f} G "
        f"(×{jx.xla_flops / flops:.2f}); jaxformer compile {jx.compile_s:.1f} s (f32); "
        f"{len(rounds)} rounds of {per_round} steps each"
    )
    rows = []
    for impl, ts in times.items():
        sec = statistics.median(ts)
        rows.append((name, impl, B * T / sec, sec * 1e3, min(ts) * 1e3, flops / sec / peak))
    return rows, ratios


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
    p.add_argument(
        "--impls", default=",".join([*JAX, *TORCH]),
        help="comma-separated, of these (jaxformer f32 always runs)",
    )  # fmt: skip
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="skip the compile-time table")
    p.add_argument("--torch-child", metavar="CONFIG", help=argparse.SUPPRESS)
    p.add_argument("--shared", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--torch-mode", default="eager", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.impls = set(args.impls.split(",")) | {"jaxformer"}
    if unknown := args.impls - {*JAX, *TORCH}:
        p.error(f"unknown --impls {sorted(unknown)}; choose from {[*JAX, *TORCH]}")
    names = args.configs.split(",")
    for name in names + [args.torch_child] * bool(args.torch_child):
        if name not in CONFIGS:
            p.error(f"unknown config {name!r}; choose from {list(CONFIGS)}")
    if args.torch_child:  # the PyTorch reference, driven by the parent (TorchProcess)
        torch_child(args.torch_child, args.shared, args.torch_threads, args.torch_mode)
        return

    from jaxformer.train import report
    from jaxformer.train.process import keep_freed_memory

    keep_freed_memory()  # as jaxformer train does: before the first step allocates

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} cores, load {load}")
    peak = report.measure_peak_flops(2048, 10)
    print(f"peak: jitted f32 2048² matmul {peak / 1e9:.0f} GFLOP/s\n")
    rows, ratios = [], {}
    for name in names:
        r, ratios[name] = bench_config(name, args, peak)
        rows += r

    print(f"\n{'config':7} {'impl':22} {'tokens/s':>8} {'ms/step':>8} {'min ms':>8} {'MFU':>6}")
    for cfg, impl, tps, ms, best, mfu in rows:
        print(f"{cfg:7} {impl:22} {tps:8.0f} {ms:8.1f} {best:8.1f} {mfu:6.1%}")
    for cfg in names:
        for (ours, ref), per_round in ratios[cfg].items():
            each = " ".join(f"{x:.2f}" for x in per_round)
            print(
                f"{cfg}: {ours} / {ref} = {statistics.median(per_round):.2f}× "
                f"(the median of the rounds: {each})"
            )
    if not args.no_compile:
        compile_times()
    print(f"\nload at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
