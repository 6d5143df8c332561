"""Generation speed on CPU, in one run:

  0. the machine's memory bandwidth (a STREAM-like copy of 256 MB), which
     bounds decoding: a token reads every weight and the whole cache once, so its
     roofline is (bytes read per token) / bandwidth; each figure below is given against it;
  1. per-token latency of a cached decode step at positions 16, 256 and 1024
     (a fixed cache of ``--context`` slots: the cost must not grow with the position),
     with the weights as stored and laid out once before the loop (``decode_weights``, as
     ``generate`` does);
  2. the speedup of cached decoding over recompute-the-prefix decoding at T=512
     (one token = the model run on the 512-token prefix);
  3. greedy tokens/s of ``jaxformer.generate`` against transformers' ``generate``
     (PyTorch, ``--torch-threads``, ``use_cache=True``) on the same weights, written with
     ``jaxformer.interop.to_hf``. Before any time is printed the two models are checked to
     be one: max |Δ logits| ≤ 1e-4 on the prompt and the same greedy ids; else it stops;
  4. prefill: prompt tokens/s at T = 512 and 2048, against transformers' forward pass;
  5. batched greedy ``generate`` throughput at B = ``--batches`` (ragged prompts of 8–32
     tokens, each row stopping on its own), new tokens/s;
  6. continuous batching: 4·B prompts that stop at spread-out steps (stop tokens drawn from
     the rows' own greedy ids) through B slots (``generate_batched``) against ``generate``
     on fixed batches of B; each row's useful tokens (up to its stop) per second;
  7. weight storage: the decode step with its matrices in float32, bfloat16 and int8 (per
     output channel; ``generate(weights=...)``): ms/token, bytes read per token and the
     fraction of that storage's roofline, and the logits against float32's (max |Δ logit|,
     top-1 agreement) at every position of a few random prompts; a markdown table.

``--sections 0 7`` runs those alone (0, the bandwidth, is measured whenever a roofline is
printed; the transformers check runs only for sections 3 and 4).

    .venv/bin/python scripts/bench_generate.py                 # GPT-2-shaped, d=256 L=4
    .venv/bin/python scripts/bench_generate.py --d-model 768 --n-layers 12 --n-heads 12  # 124M

XLA uses every core of the machine (CI's has 2). torch is timed at 2 threads and at 1: on a
loaded machine its OpenMP threads contend with the other processes and one thread is faster.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxformer import Config, build
from jaxformer.core import stored, untie
from jaxformer.core.stored import WEIGHTS, StoredMatrix
from jaxformer.generate import decode_step, empty_cache, generate, generate_batched
from jaxformer.generate.cache import decode_weights, prefill

MAX_LOGIT_DIFF = 1e-4  # float32 on both sides


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--torch-threads", type=int, nargs="+", default=[2, 1])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--sections", type=int, nargs="+", default=list(range(8)), metavar="N")
    p.add_argument("--storage-prompts", type=int, default=4, help="section 7's prompts")
    p.add_argument(
        "--storage-blocks", type=int, nargs="+", default=[17], metavar="LOG2",
        help="section 7: the stored matrices' column blocks, log2 of their entries (17)",
    )  # fmt: skip
    return p.parse_args()


def best_time(fn, repeats: int) -> float:
    """The best wall time of ``fn()`` (which blocks) over ``repeats`` calls after a warm-up,
    as ``timeit`` reports: on a shared machine the others' load only ever adds time."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bandwidth(repeats: int, threads: int, mb: int = 256) -> float:
    """The machine's memory bandwidth, bytes/s: a STREAM-like copy of ``mb`` MB of float32
    (read once, written once) by torch on ``threads`` threads, or XLA's y = 2x if faster
    (XLA:CPU runs that loop on fewer threads), best of repeats."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.ones(mb * 2**20 // 4), torch.empty(mb * 2**20 // 4)
    copy = 2 * a.numel() * 4 / best_time(lambda: b.copy_(a), repeats)
    x = jnp.ones(mb * 2**20 // 4, jnp.float32)
    scale = jax.jit(lambda x: 2 * x)
    return max(copy, 2 * x.nbytes / best_time(lambda: scale(x).block_until_ready(), repeats))


def bytes_per_token(model, params, S: int, weights: str = "float32") -> int:
    """What one decode step reads: every weight but the embedding tables (one row each),
    its matrices as ``weights`` stores them (``decode_weights``), and the whole cache of S
    slots (k and v of every layer: the slots past the position are read, then masked)."""
    model, params = untie(model, params)
    laid = decode_weights(model, params, weights)
    is_stored = lambda x: isinstance(x, StoredMatrix)
    read = sum(x.nbytes for x in jax.tree.leaves(laid, is_leaf=is_stored))
    tables = params["embed"]["W_E"].nbytes + params.get("pos", {}).get("W_pos", np.zeros(0)).nbytes
    cache = sum(x.nbytes for x in jax.tree.leaves(empty_cache(model, S)))
    return read - tables + cache


def decode_latency(
    model, params, S: int, positions, repeats: int, k: int = 32, layout=True, weights="float32"
):  # fmt: skip
    """Seconds per token of k cached decode steps from each position, in one jitted loop
    on a cache of S slots (as inside ``generate``, so no per-call dispatch is counted);
    ``layout``: the weights split, laid out and stored (``weights``) once before the loop,
    as ``generate`` does."""
    model, params = untie(model, params)
    if layout:
        params = decode_weights(model, params, weights)

    @functools.partial(jax.jit, donate_argnums=1)
    def steps(params, cache, pos):
        def one(i, t_cache):
            logits, cache = decode_step(model, params, t_cache[1], t_cache[0], pos + i)
            return jnp.argmax(logits).astype(jnp.int32), cache

        return jax.lax.fori_loop(0, k, one, (jnp.int32(1), cache))

    cache = empty_cache(model, S)
    best = dict.fromkeys(positions, float("inf"))
    for _ in range(1 + 4 * repeats):  # round robin: a burst of load hits every position
        for pos in positions:
            t0 = time.perf_counter()
            t, cache = steps(params, cache, pos)
            t.block_until_ready()
            best[pos] = min(best[pos], (time.perf_counter() - t0) / k)
    return best


def recompute_latency(model, params, T: int, repeats: int) -> float:
    """One token by recompute-the-prefix: the model on T tokens, the last row's argmax."""
    full = jax.jit(lambda p, t: jnp.argmax(model(p, t)[-1]))
    tokens = jnp.arange(T) % model.codomain.shape[-1]
    return best_time(lambda: full(params, tokens).block_until_ready(), repeats)


def ours_tokens_per_s(model, params, prompt, n, repeats) -> float:
    run = lambda: generate(model, params, prompt, n, temperature=0).block_until_ready()
    return n / best_time(run, repeats)


def hf_model(model, params):
    """transformers' model of the same weights, written by ``to_hf`` and read back."""
    from transformers import AutoModelForCausalLM

    from jaxformer.interop import to_hf

    with tempfile.TemporaryDirectory() as d:
        to_hf(model, params, d, overwrite=True)
        hf = AutoModelForCausalLM.from_pretrained(d).eval()
    hf.generation_config.eos_token_id = None  # n tokens, as ours (no stop token)
    return hf


def hf_generate(hf, prompt, n):
    """The closure of transformers' greedy ``generate`` of n tokens after ``prompt``."""
    import torch

    ids = torch.tensor([prompt])
    kw = dict(do_sample=False, max_new_tokens=n, use_cache=True)
    return lambda: hf.generate(ids, attention_mask=torch.ones_like(ids), **kw)


def check_same_model(model, params, hf, prompt, n) -> float:
    """Stop unless transformers' model is ours: the prompt's logits within MAX_LOGIT_DIFF
    and the same n greedy ids (a broken export would otherwise be timed as if it were).
    Returns the seconds of our first ``generate``: its compile and one run."""
    import torch

    with torch.no_grad():
        theirs = hf(torch.tensor([prompt])).logits[0].numpy()
        hf_ids = hf_generate(hf, prompt, n)()[0, len(prompt) :].numpy()
    diff = float(np.abs(theirs - np.asarray(model(params, jnp.asarray(prompt)))).max())
    t0 = time.perf_counter()
    ours_ids = np.asarray(generate(model, params, prompt, n, temperature=0))
    compile_s = time.perf_counter() - t0
    same = int(np.cumprod(ours_ids == hf_ids).sum()) if len(hf_ids) == n else 0
    line = f"same weights: max |logit diff| {diff:.1e} on the prompt; {same}/{n} same greedy ids"
    print(line)
    if not (diff <= MAX_LOGIT_DIFF and same == n):
        sys.exit(
            f"the transformers model is not jaxformer's (at most {MAX_LOGIT_DIFF:g}, all "
            f"ids): not timing it"
        )
    return compile_s


def hf_tokens_per_s(hf, prompt, n, repeats, threads: list[int]) -> dict:
    """transformers' greedy ``generate`` on the same weights: {threads: tokens/s}."""
    import torch

    run = hf_generate(hf, prompt, n)
    tps = {}
    with torch.no_grad():
        for t in threads:
            torch.set_num_threads(t)
            tps[t] = n / best_time(run, repeats)
    return tps


def prefill_tokens_per_s(model, params, hf, lengths, repeats, threads) -> tuple[dict, dict]:
    """Prompt tokens/s of one forward pass at each length: ours (jitted, the cache
    written as ``prefill`` does) and transformers' forward on the same weights."""
    import torch

    run = jax.jit(lambda p, t: prefill(model, p, t, t.shape[0])[0][-1])
    torch.set_num_threads(threads)
    ours, theirs = {}, {}
    for T in lengths:
        ids = np.arange(T) % model.codomain.shape[-1]
        t = jnp.asarray(ids, jnp.int32)
        ours[T] = T / best_time(lambda t=t: run(params, t).block_until_ready(), repeats)
        with torch.no_grad():
            x = torch.tensor(ids[None])
            theirs[T] = T / best_time(lambda x=x: hf(x, use_cache=True), repeats)
    return ours, theirs


def batched_tokens_per_s(model, params, batches, n, repeats) -> dict:
    """{B: new tokens/s} of greedy ``generate`` on B ragged prompts (8–32 random ids)."""
    rng = np.random.default_rng(0)
    out = {}
    for B in batches:
        prompts = [rng.integers(0, model.codomain.shape[-1], rng.integers(8, 33)).tolist()
                   for _ in range(B)]  # fmt: skip
        run = lambda prompts=prompts: generate(model, params, prompts, n, temperature=0)
        out[B] = B * n / best_time(lambda run=run: run().block_until_ready(), repeats)
    return out


def continuous_tokens_per_s(model, params, B, n, repeats) -> tuple[float, float]:
    """Useful new tokens/s (each row up to and with its stop token) of 4·B ragged prompts
    through B slots, continuously (``generate_batched``) and in fixed batches of B."""
    V = model.codomain.shape[-1]
    rng = np.random.default_rng(1)
    prompts = [rng.integers(0, V, rng.integers(8, 33)).tolist() for _ in range(4 * B)]
    # stop tokens that make the rows stop at spread-out steps: for each row, the id it
    # emits at a random step of its own greedy run (greedy ids on random weights repeat)
    rows = [np.asarray(r) for i in range(0, len(prompts), B)
            for r in generate(model, params, prompts[i : i + B], n, temperature=0)]  # fmt: skip
    stops = tuple({int(r[rng.integers(0, n)]) for r in rows})

    def useful(rows) -> int:
        return sum(next((i + 1 for i, t in enumerate(r) if t in stops), n) for r in rows)

    def fixed():
        rows = []
        for i in range(0, len(prompts), B):
            got = generate(model, params, prompts[i : i + B], n, temperature=0, stop_tokens=stops)
            rows += [list(np.asarray(r)) for r in got]
        return rows

    cont = lambda: generate_batched(model, params, prompts, n, slots=B, stop_tokens=stops)
    tokens = useful(cont())
    return tokens / best_time(cont, repeats), tokens / best_time(fixed, repeats)


def storage_table(model, params, S, bw, repeats, n_prompts, blocks, T: int = 32) -> dict:
    """Section 7: {(storage, log2 block): (seconds per token at position 16 from a cache of
    S slots, bytes read per token, the fraction of its own roofline, max |Δ logit| against
    float32, the share of positions with float32's argmax)} over ``n_prompts`` random
    prompts of T tokens, every position's logits (the prefill reads the stored matrices,
    as decoding does). ``blocks``: the column blocks' sizes tried (``core.stored.BLOCK``,
    as log2 of its entries)."""
    model, params = untie(model, params)
    V = model.codomain.shape[-1]
    prompts = np.random.default_rng(2).integers(0, V, (n_prompts, T)).astype(np.int32)
    logits = jax.jit(jax.vmap(lambda w, t: prefill(model, w, t)[0], in_axes=(None, 0)))
    ref = np.asarray(logits(params, prompts))
    rows, default = {}, stored.BLOCK
    for w in WEIGHTS:
        for b in blocks if w != "float32" else [None]:
            stored.BLOCK = default if b is None else 2**b
            sec = decode_latency(model, params, S, [16], repeats, weights=w)[16]
            read = bytes_per_token(model, params, S, w)
            z = np.asarray(logits(decode_weights(model, params, w), prompts))
            err = float(np.abs(z - ref).max())
            top1 = float((z.argmax(-1) == ref.argmax(-1)).mean())
            rows[w, b] = (sec, read, (read / bw) / sec, err, top1)
    stored.BLOCK = default
    return rows


def main() -> int:
    args = parse()
    c = Config(
        family="gpt2", vocab_size=args.vocab, context=args.context, n_layers=args.n_layers,
        d_model=args.d_model, n_heads=args.n_heads,
    )  # fmt: skip
    model = build(c)
    params = model.init(jax.random.key(0))
    n_params = sum(x.size for x in jax.tree.leaves(params))
    load = os.getloadavg()
    print(
        f"model: gpt2 d={c.d_model} L={c.n_layers} H={c.n_heads} V={c.vocab_size} "
        f"context={c.context} ({n_params / 1e6:.1f}M params), float32, batch 1, "
        f"jax {jax.__version__}, torch threads {args.torch_threads}; load average {load[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    prompt = (np.arange(args.prompt_len) * 7 % c.vocab_size).tolist()
    n, run = args.new_tokens, set(args.sections)
    if run & {3, 4}:
        hf = hf_model(model, params)
        compile_s = check_same_model(model, params, hf, prompt, n)  # before any time is printed

    bw = bandwidth(args.repeats, os.cpu_count())
    roof = lambda S: bw / bytes_per_token(model, params, S)  # tokens/s
    print(f"\n0. memory bandwidth (a copy of 256 MB, best of {args.repeats}): {bw / 1e9:.1f} GB/s")
    per_token = bytes_per_token(model, params, c.context) / 1e6
    print(f"   bytes per decode token: {per_token:.0f} MB with a cache of {c.context} slots: "
          f"roofline {roof(c.context):.1f} tokens/s")  # fmt: skip

    if 1 in run:
        positions = [p for p in (16, 256, 512, 1024) if p + 32 <= c.context]
        lat = decode_latency(model, params, c.context, positions, args.repeats)
        stored = decode_latency(model, params, c.context, positions, args.repeats, layout=False)
        print(f"\n1. cached decode, 32 steps from each position, cache of {c.context} slots")
        print("   (ms/token, best of repeats; tokens/s as a fraction of the roofline)")
        print("                   laid out once          as stored")
        for pos in positions:
            a, b = lat[pos], stored[pos]
            print(f"   position {pos:5d}: {a * 1e3:8.2f} ({1 / a / roof(c.context):4.0%})   "
                  f"{b * 1e3:8.2f} ({1 / b / roof(c.context):4.0%})")  # fmt: skip

    T = 512
    if 2 in run:
        rec = recompute_latency(model, params, T, args.repeats)
        at_T = lat[T] if 1 in run else decode_latency(model, params, c.context, [T], args.repeats)
        at_T = at_T[T]
        print(f"\n2. one token at T={T} (ms, best of repeats)")
        print(f"   recompute the prefix {rec * 1e3:8.2f}")
        print(f"   cached decode step   {at_T * 1e3:8.2f}   speedup {rec / at_T:.1f}x")

    if 3 in run:
        ours = ours_tokens_per_s(model, params, prompt, n, args.repeats)
        theirs = hf_tokens_per_s(hf, prompt, n, args.repeats, args.torch_threads)
        S = min(c.context, max(16, 1 << (args.prompt_len + n - 1).bit_length()))  # its cache
        print(f"\n3. greedy generate, prompt {args.prompt_len} tokens + {n} new (tokens/s, best;")
        print(f"   the fraction of the roofline with generate's cache of {S} slots)")
        print(f"   jaxformer.generate              {ours:8.1f} ({ours / roof(S):4.0%})   "
              f"(compile: {compile_s:.1f} s)")  # fmt: skip
        for t, tps in theirs.items():
            print(f"   transformers, torch {t} thread(s) {tps:8.1f} ({tps / roof(S):4.0%})   "
                  f"jaxformer / transformers {ours / tps:.2f}x")  # fmt: skip
    if 4 in run:
        lengths = [T for T in (512, 2048) if T <= c.context]
        threads = max(args.torch_threads)
        ours, theirs = prefill_tokens_per_s(model, params, hf, lengths, args.repeats, threads)
        print(f"\n4. prefill: the prompt's forward pass (tokens/s, best; torch {threads} threads)")
        for T in lengths:
            print(f"   T={T:5d}: jaxformer {ours[T]:8.0f}   transformers {theirs[T]:8.0f}   "
                  f"jaxformer / transformers {ours[T] / theirs[T]:.2f}x")  # fmt: skip
    if 5 in run:
        print(f"\n5. batched generate, ragged prompts of 8–32 tokens + {n} new "
              "(new tokens/s, best)")  # fmt: skip
        for B, tps in batched_tokens_per_s(model, params, args.batches, n, args.repeats).items():
            print(f"   B={B:4d}: {tps:8.1f}   ({tps / B:.1f} per sequence)")
    if 6 in run:
        B = max(args.batches) // 4 or 1
        cont, fixed = continuous_tokens_per_s(model, params, B, n, args.repeats)
        print(f"\n6. {4 * B} prompts stopping at random, {B} slots, up to {n} new tokens each "
              "(useful tokens/s, best)")  # fmt: skip
        print(f"   fixed batches (generate)          {fixed:8.1f}")
        print(f"   continuous (generate_batched)     {cont:8.1f}   speedup {cont / fixed:.2f}x")
    if 7 in run:
        k, T7 = args.storage_prompts, 32
        rows = storage_table(model, params, c.context, bw, args.repeats, k, args.storage_blocks, T7)
        print(f"\n7. weight storage: the decode step at position 16, cache of {c.context} slots "
              f"(best of repeats); logits against float32 at all {k}×{T7} positions of "
              f"{k} random prompts")  # fmt: skip
        print("\n| weights | block | ms/token | MB read/token | of its roofline | speedup | "
              "max abs Δ logit | top-1 = f32 |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        f32 = rows["float32", None][0]
        for (w, b), (sec, read, frac, err, top1) in rows.items():
            block = "" if b is None else f"2^{b}"
            print(f"| {w} | {block} | {sec * 1e3:.2f} | {read / 1e6:.1f} | {frac:.0%} | "
                  f"{f32 / sec:.2f}× | {err:.2e} | {top1:.1%} |")  # fmt: skip
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
