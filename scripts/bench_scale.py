"""Scaling over CPU devices: tokens/s and communication per step, for 1, 2, 4, 8 devices.

    python scripts/bench_scale.py                        # the table in BENCHMARKS.md
    python scripts/bench_scale.py --devices 1,2 --steps 3

XLA fixes the device count when it starts, so each count runs in its own process
(XLA_FLAGS=--xla_force_host_platform_device_count=n). In each, the sharded train step
of one GPT-2 (L=4, d=128, H=8, T=64, V=512; 0.9M params) runs on three layouts, and a
Mixtral of the same shape (E=8 experts of width 128, k=2) on the expert axis:

    data (n,1,1,1)   fsdp (1,n,1,1)   tensor (1,1,1,n)   expert (1,1,n,1)     (d, f, e, t)
    strong scaling: the global batch fixed (B=16);  weak: B = 2 per device · n (data, fsdp)

tokens/s is of the best of --steps steps, after a compile and a warm-up step. The
communication is read from the compiled per-device program (``compiled.as_text()``):
the result bytes of every all-reduce, all-gather, reduce-scatter, all-to-all and
collective-permute, each counted as often as it runs (the known trip counts of the while
loops that hold it: the scan over layers). Next to it, a first model of the cost, with
P params of 4 bytes and activations x of B/(data·fsdp)·T·d floats per device:

    data    all-reduce of the gradients                              4P
    fsdp    all-gather of the weights (forward, backward): 2·4P; the gradients' reduction: 4P
    tensor  all-reduce of x: per block 2 forward (the attention's and the MLP's sums), 4
            backward (the input gradients of W_Q, W_K, W_V and W_in, reduced one by one),
            and 2 for the embedding and unembedding:                 (6L + 2) · 4x
    expert  all-reduce of the shared (non-expert) gradients: 4P_shared; per layer, the
            all-to-alls of the tokens to their experts and back (``parallel/experts.py``):
            P·C rows of 4 exchanges of d floats and 1 of (id, weight), C = N·k (no drop)

On one machine the n "devices" share its cores, so expect no speedup: the point is how
the communication grows with n and the batch, which the model should predict.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

LAYOUTS = {
    "data": lambda n: (n, 1, 1, 1),
    "fsdp": lambda n: (1, n, 1, 1),
    "tensor": lambda n: (1, 1, 1, n),
    "expert": lambda n: (1, 1, n, 1),
}
B_STRONG, B_PER_DEVICE = 16, 2
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "pred": 1, "s8": 1, "u8": 1}


def config(layout: str = "data"):
    from jaxformer import Config

    if layout == "expert":
        return Config("mixtral", 512, 64, 4, 128, n_heads=8, n_kv_heads=8, d_mlp=128)
    return Config(vocab_size=512, context=64, n_layers=4, d_model=128, n_heads=8)


# -- the HLO: collectives × how often they run ------------------------------------------------
def collective_bytes(hlo: str) -> dict[str, int]:
    """Result bytes per collective kind in one run of the per-device program ``hlo``."""
    comps, entry, cur = {}, None, None
    for line in hlo.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith("{"):
            words = line.split()
            cur = (words[1] if words[0] == "ENTRY" else words[0]).lstrip("%")
            comps[cur] = []
            entry = cur if words[0] == "ENTRY" else entry
        elif cur and line.startswith("  "):
            comps[cur].append(line)
    edges = {c: [] for c in comps}  # caller → [(callee, times per call)]
    for c, lines in comps.items():
        for line in lines:
            trip = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
            for attr, callee in re.findall(r"\b(body|condition|calls|to_apply)=%?([\w.\-]+)", line):
                times = int(trip.group(1)) if trip and attr == "body" else 1
                edges[c].append((callee, times))
    runs = {c: 0 for c in comps}
    runs[entry] = 1
    for c in _topological(edges, entry):
        for callee, times in edges[c]:
            runs[callee] += runs[c] * times
    total = dict.fromkeys(COLLECTIVES, 0)
    pattern = re.compile(r"=\s*(.+?)\s+(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")
    for c, lines in comps.items():
        for line in lines:
            m = pattern.search(line)
            if m and runs[c]:
                total[m.group(2)] += runs[c] * _shape_bytes(m.group(1))
    return total


def _topological(edges: dict, entry: str) -> list[str]:
    seen, order = set(), []

    def visit(c):
        if c not in seen:
            seen.add(c)
            for callee, _ in edges.get(c, ()):
                visit(callee)
            order.append(c)

    visit(entry)
    return order[::-1]


def _shape_bytes(text: str) -> int:
    return sum(
        DTYPE_BYTES.get(dt, 4) * math.prod(int(n) for n in dims.split(",") if n)
        for dt, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", text)
    )


def model_bytes(layout: str, n: int, P: dict, B: int) -> float:
    """The first model of the collective bytes per device per step (see the docstring);
    P: the parameter counts, "all" and "experts"."""
    if n == 1:
        return 0.0
    c = config(layout)
    if layout == "data":
        return 4 * P["all"]
    if layout == "fsdp":
        return 3 * 4 * P["all"]
    if layout == "expert":
        from jaxformer.parallel.experts import exchange_bytes

        N = B * c.context // n  # each device's tokens
        a2a = exchange_bytes(N, c.top_k, c.d_model, n, c.capacity_factor, 4)
        return 4 * (P["all"] - P["experts"]) + c.n_layers * a2a
    x = B * c.context * c.d_model  # tensor: the batch is whole on every device
    return (6 * c.n_layers + 2) * 4 * x


# -- one device count, in its own process ----------------------------------------------------
def child(n: int, steps: int) -> None:
    import jax
    import numpy as np

    from jaxformer import build
    from jaxformer.core import is_param
    from jaxformer.parallel import AXES, global_batch, init_state, make_mesh
    from jaxformer.train.config import TrainConfig
    from jaxformer.train.optim import optimizer
    from jaxformer.train.sharded import make_sharded_step

    assert jax.device_count() == n, jax.devices()
    opt = optimizer(TrainConfig(lr=1e-3, warmup_steps=0, steps=100))
    runs = [(layout, "strong", B_STRONG) for layout in LAYOUTS]
    runs += [(layout, "weak", B_PER_DEVICE * n) for layout in ("data", "fsdp")]
    if n == 1:  # every layout is the one device
        runs = [("data", "strong", B_STRONG), ("data", "weak", B_PER_DEVICE)]
        runs += [("expert", "strong", B_STRONG)]  # the mixture on one device
    rng = np.random.default_rng(0)
    for layout, scaling, B in runs:
        c = config(layout)
        model = build(c)
        spec = jax.tree.leaves(model.spec(), is_leaf=is_param)
        P = {  # the experts' matrices: on axes E and m (the router's W_R is [d, E])
            "all": sum(math.prod(p.shape) for p in spec),
            "experts": sum(math.prod(p.shape) for p in spec if {"E", "m"} <= set(p.axes)),
        }
        mesh = make_mesh(**dict(zip(AXES, LAYOUTS[layout](n))))
        params, opt_state = init_state(model, opt, jax.random.key(0), mesh)
        step = make_sharded_step(model, opt, mesh)
        x = global_batch(rng.integers(0, c.vocab_size, (1, B, c.context + 1)), mesh)
        compiled = step.lower(params, opt_state, x).compile()
        comm = collective_bytes(compiled.as_text())
        cost = compiled.cost_analysis()
        params, opt_state, m = step(params, opt_state, x)  # warm-up
        jax.block_until_ready(m)
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            params, opt_state, m = step(params, opt_state, x)
            jax.block_until_ready(m)
            times.append(time.perf_counter() - t)
        dt = min(times)  # the best step: the machine's other load only ever adds time
        row = {
            "devices": n, "layout": layout, "mesh": list(LAYOUTS[layout](n)), "scaling": scaling,
            "B": B, "tok_s": B * c.context / dt, "step_ms": 1e3 * dt, "comm": comm,
            "model_bytes": model_bytes(layout, n, P, B), "gflop": cost.get("flops", 0) / 1e9,
            "params": P["all"],
        }  # fmt: skip
        print(json.dumps(row), flush=True)


# -- the table ---------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", default="1,2,4,8")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.steps)
    rows = []
    for n in map(int, a.devices.split(",")):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
        cmd = [sys.executable, __file__, "--child", str(n), "--steps", str(a.steps)]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"{n} devices failed:\n{r.stderr[-3000:]}")
        rows += [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        print(f"{n} device(s) done", file=sys.stderr, flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"model {rows[0]['params'] / 1e6:.2f}M params, T={config().context}")  # fmt: skip
    print(
        "\n| devices | layout | mesh (d,f,e,t) | scaling | B | tokens/s | step ms "
        "| collectives MB/step/device (AR / AG / A2A) | model MB | GFLOP/device |"
    )
    print("|---:|---|---|---|---:|---:|---:|---|---:|---:|")
    for r in rows:
        c = r["comm"]
        mb = lambda v: f"{v / 1e6:.2f}"
        total = sum(c.values())
        split = f"{mb(c['all-reduce'])} / {mb(c['all-gather'])} / {mb(c['all-to-all'])}"
        other = c["reduce-scatter"] + c["collective-permute"]
        print(
            f"| {r['devices']} | {r['layout']} | {tuple(r['mesh'])} | {r['scaling']} | {r['B']} "
            f"| {r['tok_s']:,.0f} | {r['step_ms']:.0f} | {mb(total)} ({split}"
            + (f", other {mb(other)}" if other else "")
            + f") | {mb(r['model_bytes'])} | {r['gflop']:.2f} |"
        )


if __name__ == "__main__":
    main()
