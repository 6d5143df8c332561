"""Peak memory of selective traces at the GPT-2-124M shape (T=1024, f32, one sequence).

The peak is XLA's own accounting of each compiled function: its temporaries plus its
outputs (the parameters and the input, the same for every row, are left out); the
functions are compiled, not run. Rows:

    forward            the plain forward pass (logits)
    one point          trace(points=["blocks.5.resid_post"])  stops after layer 5
    one point, last    trace(points=["blocks.11.resid_post"])
    a point per layer  trace(points=["blocks.*.resid_post"])  12 × [T, d]
    full trace         trace() every point of every layer (patterns and scores included)
    backward           the gradient of the mean next-token loss (for scale)

    .venv/bin/python scripts/bench_trace_memory.py            # 124M, T=1024
    .venv/bin/python scripts/bench_trace_memory.py --T 256 --n-layers 4
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from jaxformer import Config, build


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--T", type=int, default=1024)
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--n-layers", type=int, default=12)
    p.add_argument("--n-heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=50257)
    return p.parse_args()


def peak(f, *args) -> int:
    a = jax.jit(f).lower(*args).compile().memory_analysis()
    return a.temp_size_in_bytes + a.output_size_in_bytes


def main() -> None:
    a = parse()
    c = Config(vocab_size=a.vocab, context=a.T, n_layers=a.n_layers, d_model=a.d_model,
               n_heads=a.n_heads, family="gpt2")  # fmt: skip
    model = build(c)
    params = jax.eval_shape(model.init, jax.random.key(0))  # shapes only: nothing is run
    x = jax.ShapeDtypeStruct((a.T,), jnp.int32)
    mid, last = a.n_layers // 2 - 1, a.n_layers - 1

    def loss(p, x):
        logits = model(p, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits[:-1]), x[1:, None], -1))

    rows = {
        "forward": model,
        f"one point (blocks.{mid}.resid_post)": lambda p, x: model.trace(
            p, x, points=[f"blocks.{mid}.resid_post"]
        )[1],
        f"one point, last (blocks.{last}.resid_post)": lambda p, x: model.trace(
            p, x, points=[f"blocks.{last}.resid_post"]
        )[1],
        "a point per layer (blocks.*.resid_post)": lambda p, x: model.trace(
            p, x, points=["blocks.*.resid_post"]
        )[1],
        "full trace": lambda p, x: model.trace(p, x)[1],
        "backward (for scale)": jax.grad(loss),
    }
    print(f"GPT-2 shape: L={a.n_layers} d={a.d_model} H={a.n_heads} V={a.vocab} T={a.T}, f32")
    print(f"{'function':<44} {'peak MiB':>10} {'× forward':>10}")
    base = None
    for name, f in rows.items():
        mib = peak(f, params, x) / 2**20
        base = base or mib
        print(f"{name:<44} {mib:>10.1f} {mib / base:>10.2f}")


if __name__ == "__main__":
    main()
