"""The GPU check: one table of what the library does on an accelerator, in a few minutes.

    rows   the train step of the GPT-2-124M shape (T=1024) in bf16 compute: ms/step,
           tokens/s and MFU; the attention it ran ("sdpa": jax.nn.dot_product_attention,
           cuDNN's fused kernel, where it applies); greedy decode tokens/s at batch 1 and 8

MFU = tokens/s × (training FLOPs per token) / peak, where the training FLOPs per token are
3 × the forward pass's as ``describe`` counts them (``train.report.flops_per_token``) and
the peak is the device's dense bf16 peak: ``--peak-tflops``, or the datasheet's for the
kinds known below; on CPU the measured f32 matmul peak (``measure_peak_flops``).

    bash scripts/device_check.sh                  # on the GPU machine (≤ 5 minutes)
    .venv/bin/python scripts/device_check.py --dry-run   # a tiny shape on any machine

``--dry-run`` runs every row on a tiny model (the CPU suite runs it: the script cannot rot
between the sessions that have a GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxformer import Config, build
from jaxformer.generate import generate
from jaxformer.train.report import flops_per_token, measure_peak_flops
from jaxformer.train.step import make_train_step

PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12}  # dense, datasheet


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="a tiny shape: seconds on a CPU")
    p.add_argument("--batch", type=int, default=16, help="windows per train step")
    p.add_argument("--steps", type=int, default=10, help="timed train steps (after 2 warm-ups)")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--json", default=None, help="also write the table here")
    return p.parse_args(argv)


def config(dry: bool) -> Config:
    if dry:
        return Config(vocab_size=256, context=64, n_layers=2, d_model=64, n_heads=4)
    return Config(vocab_size=50257, context=1024, n_layers=12, d_model=768, n_heads=12)


def peak_flops(args) -> tuple[float, str]:
    if args.peak_tflops:
        return args.peak_tflops * 1e12, "given"
    kind = jax.devices()[0].device_kind
    for name, peak in PEAK_BF16.items():
        if name in kind:
            return peak, f"{name} bf16 datasheet"
    return measure_peak_flops(), f"measured f32 matmul ({kind})"


def timed(f, n: int) -> float:
    """Median seconds of n calls of f (which blocks), after two warm-up calls."""
    f(), f()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def train_row(model, c: Config, B: int, steps: int) -> dict:
    params = model.init(jax.random.key(0))
    opt = optax.adamw(1e-4)
    step = make_train_step(model, opt, "bfloat16")
    batch = jax.random.randint(jax.random.key(1), (1, B, c.context + 1), 0, c.vocab_size)
    state = [params, opt.init(params)]

    def one():
        state[0], state[1], m = step(state[0], state[1], batch)
        jax.block_until_ready(m["loss"])

    s = timed(one, steps)
    attn = model.find("blocks.attn")
    return dict(ms=s * 1e3, tok_s=B * c.context / s, how=attn.how(c.context, jnp.bfloat16))


def decode_row(model, params, B: int, n: int) -> float:
    prompts = [list(range(1 + b, 17 + b)) for b in range(B)]
    run = lambda: generate(model, params, prompts, n, temperature=0).block_until_ready()
    return B * n / timed(run, 3)


def main(argv=None) -> int:
    args = parse(argv)
    c = config(args.dry_run)
    B, steps = (2, 2) if args.dry_run else (args.batch, args.steps)
    n = 8 if args.dry_run else args.new_tokens
    model = build(c)
    peak, source = peak_flops(args)
    flops = flops_per_token(model, c.context)
    train = train_row(model, c, B, steps)
    params = model.init(jax.random.key(0))
    rows = {
        "device": jax.devices()[0].device_kind,
        "shape": f"L={c.n_layers} d={c.d_model} H={c.n_heads} V={c.vocab_size} T={c.context}",
        "train ms/step (bf16)": round(train["ms"], 2),
        "train tokens/s": round(train["tok_s"]),
        "train MFU": f"{train['tok_s'] * flops / peak:.1%} of {peak / 1e12:.3g} TFLOP/s ({source})",
        "model FLOPs per token (train, describe)": round(flops),
        "peak FLOP/s": peak,
        "attention": train["how"],
        "decode tokens/s, batch 1": round(decode_row(model, params, 1, n), 1),
        "decode tokens/s, batch 8": round(decode_row(model, params, 8, n), 1),
    }
    width = max(map(len, rows))
    print(f"| {'what':<{width}} | value |\n|{'-' * (width + 2)}|---|")
    for k, v in rows.items():
        print(f"| {k:<{width}} | {v} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
