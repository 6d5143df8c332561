"""Benchmark long-context training: dense attention against chunked and blockwise (flash).

    .venv/bin/python scripts/bench_attention.py [--T 512,1024,2048,4096,8192,16384]
                                                [--impls dense,chunked,blockwise,none]
                                                [--steps 5]

The model: a GPT-2 composite with L=2, d=256, H=4 (k=64), V=4096, context T, f32, one
window of T tokens (B=1), and the library's train step (``jaxformer.train.step``: clipping,
AdamW). Its attention map is the library's ``Attention`` ("dense": the T×T scores and
pattern of every head, masked; ``Config.attention="dense"``), the same with
``Config.attention="chunked"`` (``jaxformer.layers.chunked``: chunks of ``--block`` queries
against the keys they see, dense memory), a subclass defined below that calls
``jaxformer.layers.blockwise.blockwise_attention`` ("blockwise"; same fields, same
parameters), or one with z = v ("none": no attention at all, the rest of the step, which
bounds what any attention can gain).

Peak memory: each (T, implementation) compiles and runs two steps in a process of its own,
and its max RSS is read from os.wait4 (that child's ru_maxrss), so one configuration does not
inflate the next; XLA's own figure (memory_analysis: arguments + outputs + temporaries) is
printed beside it. Dense (and chunked, at half of it) is skipped, not run, when its
estimated peak exceeds
``--budget-gib`` (~DENSE_TENSORS·L·H·T²·4 bytes: the scores, the pattern and their gradients,
the factor measured at T=4096); a child that fails anyway (the address-space limit set for
it, XLA's allocator) is reported as OOM.

Step time: the configurations of one T are compiled in one more process and timed in
alternating rounds (medians), so a load that drifts (other processes share the CPU) falls
on all of them alike. XLA uses every core; XLA_FLAGS and the environment pass through. The
load is printed at the start and the end: rerun when it is low.
"""

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, fields

L, D, H, V = 2, 256, 4, 4096
DENSE_TENSORS = 4  # [H,T,T] f32 tensors alive per layer at the dense step's peak (measured)
GiB = 2**30


def compiled_step(T: int, impl: str, block: int):
    """(the compiled train step, params, optimizer state, batch) of implementation ``impl``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxformer import Config, build
    from jaxformer.layers import Attention
    from jaxformer.layers.blockwise import blockwise_attention
    from jaxformer.train import step as S
    from jaxformer.train.config import TrainConfig
    from jaxformer.train.optim import optimizer

    @dataclass(frozen=True, repr=False)
    class BlockwiseAttention(Attention):
        """The library's Attention with z computed blockwise (no pattern in the trace)."""

        def apply(self, params, x_Td):
            q, k, v = self.qkv(params, x_Td)
            return self.out(params, blockwise_attention(q, k, v, causal=self.causal, block=block))

        forward = lambda self, params, x_Td: (y := self.apply(params, x_Td), {self.name: y})

    @dataclass(frozen=True, repr=False)
    class NoAttention(Attention):
        """The same projections with z = v (no scores, no mixing): the step without attention."""

        def apply(self, params, x_Td):
            return self.out(params, self.expand_kv(self.qkv(params, x_Td)[2]))

        forward = BlockwiseAttention.forward

    c = dict(family="gpt2", vocab_size=V, n_layers=L, d_model=D, n_heads=H, context=T)
    if "attention" in {f.name for f in fields(Config)}:  # the library's own switch
        c["attention"] = "chunked" if impl == "chunked" else "dense"
    model = build(Config(**c))
    if impl == "chunked":
        attn = model.find("blocks.attn")
        model = model.replace("blocks.attn", dataclasses.replace(attn, block=block))
    elif impl != "dense":
        old = model.find("blocks.attn")
        cls = {"blockwise": BlockwiseAttention, "none": NoAttention}[impl]
        new = cls(**{f.name: getattr(old, f.name) for f in fields(old)})
        model = model.replace("blocks.attn", new)
    opt = optimizer(
        TrainConfig(n_layers=L, d_model=D, n_heads=H, context=T, batch_size=1, steps=1000)
    )
    params = model.init(jax.random.key(0))
    state = opt.init(params)
    batch = jnp.asarray(np.random.default_rng(0).integers(0, V, (1, 1, T + 1)), jnp.int32)
    t = time.perf_counter()
    compiled = S.make_train_step(model, opt, "float32").lower(params, state, batch).compile()
    m = compiled.memory_analysis()
    xla = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    return compiled, params, state, batch, dict(compile_s=time.perf_counter() - t, xla_bytes=xla)


def memory_child(T: int, impl: str, block: int) -> dict:
    """Compile and run two steps; the parent reads this process's max RSS."""
    import jax

    compiled, params, state, batch, info = compiled_step(T, impl, block)
    for _ in range(2):
        params, state, m = compiled(params, state, batch)
        jax.block_until_ready(m)
    return info


def time_child(T: int, impls: list[str], steps: int, block: int, budget_s: float) -> dict:
    """Seconds per step of each implementation, timed in alternating rounds after a warm-up;
    fewer than ``steps`` rounds (at least one) once they have taken ``budget_s``."""
    import jax

    runs = {impl: list(compiled_step(T, impl, block)[:4]) for impl in impls}
    times = {impl: [] for impl in impls}
    start = None
    for r in range(steps + 1):
        if r == 1:
            start = time.perf_counter()
        elif r > 1 and time.perf_counter() - start > budget_s:
            break
        for impl, (compiled, params, state, batch) in runs.items():
            t = time.perf_counter()
            params, state, m = compiled(params, state, batch)
            jax.block_until_ready(m)
            runs[impl][1:3] = params, state
            if r:  # round 0 is the warm-up
                times[impl].append(time.perf_counter() - t)
    return {impl: dict(step_s=statistics.median(ts), steps=len(ts)) for impl, ts in times.items()}


def spawn(args, *child_args) -> tuple[dict | None, float, str]:
    """Run this script as a child: (its JSON result or None, its max RSS in bytes, error)."""
    cmd = [sys.executable, __file__, "--child", *child_args, "--block", str(args.block)]
    cmd += ["--steps", str(args.steps), "--budget-s", str(args.budget_s)]
    limit = int(args.limit_gib * GiB)  # a failed allocation, not the machine's OOM killer
    pre = lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, preexec_fn=pre)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)  # this child's own rusage (RUSAGE_CHILDREN: a max)
        p.returncode = rc = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = " ".join(err.read().decode(errors="replace").strip().splitlines()[-1:])
    if rc:
        return None, usage.ru_maxrss * 1024, f"OOM/failed (rc {rc}: {tail[:80]})"
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss * 1024, ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", default="512,1024,2048,4096,8192,16384", help="comma-separated")
    p.add_argument("--impls", default="dense,chunked,blockwise,none")
    p.add_argument("--steps", type=int, default=5, help="timed rounds per T")
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--budget-s", type=float, default=120.0, help="fewer rounds past this")
    p.add_argument("--budget-gib", type=float, default=16.0, help="skip dense above this")
    p.add_argument("--limit-gib", type=float, default=20.0, help="each child's address space")
    p.add_argument("--stop-after-s", type=float, default=180.0, help="no larger T past this")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # T, memory|time, impl[,impl]
    args = p.parse_args()
    if args.child:
        T, kind, impls = int(args.child[0]), args.child[1], args.child[2].split(",")
        if kind == "memory":
            print(json.dumps(memory_child(T, impls[0], args.block)))
        else:
            print(json.dumps(time_child(T, impls, args.steps, args.block, args.budget_s)))
        return

    import jax

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    cpu = next((s.split(":", 1)[1].strip() for s in lscpu if s.startswith("Model name")), "?")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"jax {jax.__version__}, {cpu}, {os.cpu_count()} cores, load {load}")
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; gpt2 L={L} d={D} H={H} k={D // H} V={V}")
    print(f"B=1, f32, block={args.block}; step: median of ≤{args.steps} alternated rounds\n")
    print(f"{'T':>6} {'impl':10} {'ms/step':>9} {'rounds':>6} {'max RSS':>8} {'XLA':>8} "
          f"{'compile':>7}  note")  # fmt: skip
    Ts = [int(t) for t in args.T.split(",")]
    for T in Ts:
        t0, mem = time.perf_counter(), {}
        for impl in args.impls.split(","):
            need = DENSE_TENSORS * L * H * T * T * 4 // (2 if impl == "chunked" else 1)
            if impl in ("dense", "chunked") and need > args.budget_gib * GiB:
                mem[impl] = (None, 0, f"skipped (needs ~{need / GiB:.0f} GiB)")
            else:
                mem[impl] = spawn(args, str(T), "memory", impl)
        ok = [impl for impl, (info, _, _) in mem.items() if info]
        timed, _, error = spawn(args, str(T), "time", ",".join(ok)) if ok else ({}, 0, "")
        for impl, (info, rss, note) in mem.items():
            if not info:
                print(f"{T:>6} {impl:10} {'—':>9} {'—':>6} {'—':>8} {'—':>8} {'—':>7}  {note}")
                continue
            r = (timed or {}).get(impl)
            step = f"{r['step_s'] * 1e3:9.0f} {r['steps']:6}" if r else f"{'—':>9} {'—':>6}"
            if impl in ("chunked", "blockwise") and r and "dense" in (timed or {}):
                note = f"dense / {impl} = {timed['dense']['step_s'] / r['step_s']:.2f}×"
            print(f"{T:>6} {impl:10} {step} {rss / GiB:7.2f}G {info['xla_bytes'] / GiB:7.2f}G "
                  f"{info['compile_s']:6.1f}s  {note or error}", flush=True)  # fmt: skip
        if time.perf_counter() - t0 > args.stop_after_s * (1 + len(mem)) and T != Ts[-1]:
            print(f"(T={T} took over {args.stop_after_s:.0f} s a configuration: stopping here)")
            break
    print(f"\nload at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
