"""jaxformer against llama.cpp on CPU: the same random GPT-2 weights, batch 1, one run.

The model is jaxformer's GPT-2 (random init, seed 0), written as an HF directory by
``jaxformer.interop.to_hf`` with GPT-2's own tokenizer (``--ranks``: llama.cpp's converter
identifies the pre-tokenizer by hashing the ids of a test text) and converted by
llama.cpp's ``convert_hf_to_gguf.py`` to GGUF at f32, f16 and q8_0, in a temporary
directory. llama.cpp runs through llama-cpp-python (``--threads``, KV cache in f32 as
jaxformer's, no flash attention); XLA uses every core of the machine.

  1. the same function: llama.cpp's f32 model against jaxformer's forward pass, the logits
     at every position of the prompt and of llama.cpp's greedy continuation (token by
     token, the decode path) and at the prompt's last position in one batch (the prefill
     path): max |Δ logit| at most ``--rtol`` (1e-2) times the logits' standard deviation.
     Not float32's 1e-5: llama.cpp's CPU GELU is a table, the input rounded to float16 and
     the output a float16 (``ggml_vec_gelu_f32`` under ``GGML_GELU_FP16``). With that table
     emulated in jaxformer's model (printed beside) the difference falls from 1.5e-4 to
     8e-6 at d=64, 2 layers, but only from 4.3e-4 to 2.2e-4 at d=128, 12 layers, where
     float16 rounding flips compound; a wrong conversion is off by the logits' own scale.
     Greedy ids must equal ``jaxformer.generate``'s, or part only at a near-tie
     (jaxformer's gap between the two ids at most twice the max |Δ logit|). Otherwise it
     stops before timing anything. The lower precisions' max |Δ logit| against jaxformer's
     float32 on the same positions goes in the table;
  2. decode: greedy tokens/s, a prompt of ``--prompt-len`` tokens + ``--new-tokens`` new
     (llama.cpp: the prompt in one batch, then one token at a time, the argmax of its
     logits in numpy; jaxformer: one ``generate(..., temperature=0, weights=...)``
     call, which lays out and stores the matrices inside it);
  3. prefill: prompt tokens/s of ``--prefill`` tokens in one batch, to the last position's
     logits (llama.cpp: ``eval``, which unembeds that position alone; jaxformer: as
     ``generate`` runs a prompt, the jitted ``prefill`` of the first T - 1 tokens keeping
     its cache, then one decode step on the last, the matrices stored as
     ``generate(weights=...)`` stores them, made beforehand).

Each figure is the median of ``--repeats`` runs after a warm-up, the implementations
alternating (the order rotated each round), so a burst of load hits all of them. A markdown
table gives the ratios jaxformer / llama.cpp at the same storage: f32 / f32,
bfloat16 / f16, int8 (per output channel) / q8_0 (blocks of 32). On a loaded machine
llama.cpp's threads, which wait for one another at every operation, lose far more than XLA
to a core taken by another process (a smoke run beside another benchmark on 2 cores decoded
6 to 470 times slower): read the load averages printed before and after.

    .venv/bin/python scripts/bench_llamacpp.py --llama-src llama_cpp_python-0.3.36   # 124M
    .venv/bin/python scripts/bench_llamacpp.py --d-model 64 --n-layers 2 --n-heads 2 \\
        --new-tokens 32 --repeats 2 --llama-src llama_cpp_python-0.3.36         # smoke test

One-time setup (a benchmark-only dependency, not in the dev extras; llama-cpp-python
builds llama.cpp from source, ~20 minutes on 2 cores), and the converter, which is in the
same source distribution:

    .venv/bin/pip install llama-cpp-python==0.3.36 gguf
    .venv/bin/pip download --no-binary :all: --no-deps llama-cpp-python==0.3.36
    tar xzf llama_cpp_python-0.3.36.tar.gz       # --llama-src llama_cpp_python-0.3.36

The vocabulary must stay GPT-2's (V = 50257) for the converter's tokenizer check; shrink
the model with ``--d-model``/``--n-layers``/``--n-heads`` instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxformer import Config, build
from jaxformer.core import untie
from jaxformer.generate import decode_step, generate, prefill
from jaxformer.generate.cache import decode_weights

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
CONVERTER = "convert_hf_to_gguf.py"
INSTALL = "pip install llama-cpp-python==0.3.36 gguf"
GET_SOURCE = (
    "pip download --no-binary :all: --no-deps llama-cpp-python==0.3.36 && "
    "tar xzf llama_cpp_python-0.3.36.tar.gz, then --llama-src llama_cpp_python-0.3.36"
)
# (llama.cpp's GGUF type, jaxformer's generate(weights=...)), at the same storage
PAIRS = (("f32", "float32"), ("f16", "bfloat16"), ("q8_0", "int8"))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--n-layers", type=int, default=12)
    p.add_argument("--n-heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=50257, help="GPT-2's; the converter needs it")
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prefill", type=int, default=512, help="prefill's prompt length")
    p.add_argument("--check-tokens", type=int, default=32, help="greedy ids compared")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="llama.cpp's (decode and batch)")
    p.add_argument("--rtol", type=float, default=1e-2,
                   help="max |Δ logit| of the f32s over the logits' std")  # fmt: skip
    p.add_argument("--ranks", type=Path, default=SHARED / "vocab" / "gpt2.tiktoken",
                   help="GPT-2's tiktoken ranks (gpt2.tiktoken)")  # fmt: skip
    p.add_argument("--llama-src", type=Path, default=Path("llama_cpp_python-0.3.36"),
                   help="the extracted llama-cpp-python sdist or a llama.cpp tree")  # fmt: skip
    p.add_argument("--converter", type=Path, help=f"{CONVERTER} (default: under --llama-src)")
    p.add_argument("--keep", type=Path, help="write the HF directory and GGUF files here")
    return p.parse_args()


def fail(line: str, code: int = 2):
    print(line, file=sys.stderr)
    sys.exit(code)


def find_converter(args) -> Path:
    if args.converter is not None:
        if not args.converter.is_file():
            fail(f"--converter {args.converter}: no such file")
        return args.converter
    for c in (args.llama_src / CONVERTER, args.llama_src / "vendor" / "llama.cpp" / CONVERTER):
        if c.is_file():
            return c
    fail(f"no {CONVERTER} under --llama-src {args.llama_src}; get it: {GET_SOURCE}")


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(l.split(":", 1)[1].strip() for l in out.splitlines() if "Model name" in l)
    except (OSError, subprocess.CalledProcessError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} CPUs"


def convert(hf_dir: Path, converter: Path, outtype: str, out: Path) -> Path:
    """``hf_dir`` as GGUF at ``outtype``, by llama.cpp's converter (its output kept quiet
    unless it fails)."""
    path = out / f"model-{outtype}.gguf"
    cmd = [sys.executable, str(converter), str(hf_dir), "--outtype", outtype]
    cmd += ["--outfile", str(path)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not path.is_file():
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        fail(f"{converter.name} --outtype {outtype} failed (exit {r.returncode}):\n{tail}", 1)
    return path


def write_hf(model, params, tok, root: Path) -> Path:
    """The HF directory llama.cpp's converter reads: ``to_hf``'s, with its tokenizer and
    the ``n_ctx`` its GPT-2 reader asks for (= n_positions)."""
    from jaxformer.interop import to_hf

    hf = root / "hf"
    to_hf(model, params, hf, tokenizer=tok, overwrite=True)
    config = json.loads((hf / "config.json").read_text())
    config["n_ctx"] = config["n_positions"]
    (hf / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return hf


class LlamaCpp:
    """One GGUF model in llama.cpp: greedy decoding and prefill on token ids."""

    def __init__(self, path: Path, n_ctx: int, n_batch: int, threads: int):
        import llama_cpp

        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
            n_threads=threads, n_threads_batch=threads, type_k=llama_cpp.GGML_TYPE_F32,
            type_v=llama_cpp.GGML_TYPE_F32, flash_attn=False, verbose=False,
        )  # fmt: skip
        self.V = self.llm.n_vocab()

    def logits(self) -> np.ndarray:
        """The last evaluated position's logits (a view of llama.cpp's buffer)."""
        ptr = self.lib.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.V,))

    def greedy(self, prompt, n: int) -> list[int]:
        """n greedy ids after ``prompt`` (evaluated in one batch)."""
        self.llm.reset()
        self.llm.eval(prompt)
        ids = []
        for i in range(n):
            ids.append(int(np.argmax(self.logits())))
            if i < n - 1:
                self.llm.eval(ids[-1:])
        return ids

    def path_logits(self, prompt, n: int) -> tuple[list[int], np.ndarray]:
        """Token by token: the prompt, then n greedy ids; (the ids, the logits at every
        position but the last id's, [len(prompt) + n - 1, V])."""
        self.llm.reset()
        rows, ids = [], []
        for t in prompt:
            self.llm.eval([t])
            rows.append(self.logits().copy())
        for i in range(n):
            ids.append(int(np.argmax(rows[-1])))
            if i < n - 1:
                self.llm.eval(ids[-1:])
                rows.append(self.logits().copy())
        return ids, np.stack(rows)

    def last_logits(self, tokens) -> np.ndarray:
        """The last position's logits of ``tokens`` evaluated in one batch."""
        self.llm.reset()
        self.llm.eval(tokens)
        return self.logits().copy()


def jax_prefill(model, params, weights: str, T: int):
    """The closure of jaxformer's prefill of T tokens as ``generate`` runs a prompt: the
    jitted ``prefill`` keeping only the cache of the first T - 1 (so XLA drops its [T, V]
    unembedding, which slicing the last row of its logits would not), then one decode step
    on the last token, its logits the first new token's; the matrices stored as
    ``generate(weights=...)`` stores them, made beforehand."""
    model, params = untie(model, params)
    laid = jax.block_until_ready(decode_weights(model, params, weights))
    first = params if weights == "float32" else laid  # generate's prefill reads these

    @jax.jit
    def run(first, laid, t):
        _, cache = prefill(model, first, t, T, length=T - 1)
        return decode_step(model, laid, cache, t[T - 1], T - 1)[0]

    return lambda t: run(first, laid, t).block_until_ready()


def jax_logits(model, params, weights: str, tokens) -> np.ndarray:
    """Every position's logits with the matrices stored as ``weights`` (float32: the model)."""
    t = jnp.asarray(tokens, jnp.int32)
    if weights == "float32":
        return np.asarray(jax.jit(lambda p, t: model(p, t))(params, t))
    model, params = untie(model, params)
    run = lambda p, t: prefill(model, decode_weights(model, p, weights), t, len(tokens))[0]
    return np.asarray(jax.jit(run)(params, t))


@contextlib.contextmanager
def ggml_gelu():
    """Within: jaxformer's tanh-GELU as llama.cpp's CPU backend computes it in float32
    models (``ggml_vec_gelu_f32`` under ``GGML_GELU_FP16``): x ≤ -10 → 0, x ≥ 10 → x, else
    the input rounded to float16 and the output read from a table of float16s. The
    activation is looked up when a model is traced, so trace (jit) inside."""
    from jaxformer.layers import mlp

    plain = mlp.ACTIVATIONS["gelu_tanh"]
    f16 = lambda x: x.astype(jnp.float16).astype(jnp.float32)
    table = lambda x: jnp.where(x <= -10, 0.0, jnp.where(x >= 10, x, f16(plain(f16(x)))))
    mlp.ACTIVATIONS["gelu_tanh"] = table
    try:
        yield
    finally:
        mlp.ACTIVATIONS["gelu_tanh"] = plain


def check_same_function(model, params, llamas, prompt, args) -> dict:
    """Stop unless llama.cpp's f32 model is jaxformer's (see 1. in the docstring); returns
    {storage: max |Δ logit| against jaxformer's float32} on the same positions."""
    K, P = args.check_tokens, len(prompt)
    ids, rows = llamas["f32"].path_logits(prompt, K)
    batch = llamas["f32"].last_logits(prompt)
    path = prompt + ids[:-1]
    ref = jax_logits(model, params, "float32", path)
    with ggml_gelu():
        table = jax_logits(model, params, "float32", path)
    diff = float(max(np.abs(rows - ref).max(), np.abs(batch - ref[P - 1]).max()))
    emulated = float(max(np.abs(rows - table).max(), np.abs(batch - table[P - 1]).max()))
    scale = float(ref.std())
    ours = np.asarray(generate(model, params, prompt, K, temperature=0)).tolist()
    same = next((i for i, (a, b) in enumerate(zip(ids, ours)) if a != b), K)
    part, gap = "", 0.0
    if same < K:  # the same prefix up to here: jaxformer's gap between its id and theirs
        gap = float(ref[P - 1 + same, ours[same]] - ref[P - 1 + same, ids[same]])
        part = f" (they part at a gap of {gap:.1e})"
    print(f"same function: llama.cpp f32 against jaxformer f32, max |Δ logit| {diff:.1e} "
          f"(logits' std {scale:.2f}; {emulated:.1e} with ggml's float16 GELU table) over "
          f"{rows.shape[0]} positions token by token and the prompt's last in one batch; "
          f"{same}/{K} same greedy ids{part}")  # fmt: skip
    if not (diff <= args.rtol * scale and (same == K or gap <= 2 * diff)):
        fail(
            f"llama.cpp's f32 model is not jaxformer's (at most {args.rtol:g} × the logits' "
            f"std, and the same ids but at near-ties): not timing it", 1,
        )  # fmt: skip
    errors = {"f32": diff, "float32": 0.0}
    for gguf, w in PAIRS[1:]:
        _, theirs = llamas[gguf].path_logits(path, 1)
        errors[gguf] = float(np.abs(theirs - ref).max())
        errors[w] = float(np.abs(jax_logits(model, params, w, path) - ref).max())
    return errors


def timed(fns: dict, repeats: int) -> dict:
    """{name: median seconds of fns[name]()} after one warm-up each, the calls alternating
    (the order rotated every round)."""
    for fn in fns.values():
        fn()
    names, times = list(fns), {n: [] for n in fns}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {n: statistics.median(t) for n, t in times.items()}


def main() -> int:
    args = parse()
    try:
        import gguf  # noqa: F401  (the converter's)
        import llama_cpp
    except ImportError as e:
        fail(f"needs llama-cpp-python and gguf ({e.name} is missing): {INSTALL}")
    converter = find_converter(args)
    if not args.ranks.is_file():
        fail(f"--ranks {args.ranks}: no such file (GPT-2's gpt2.tiktoken)")
    if args.prompt_len + args.new_tokens > args.context or args.prefill > args.context:
        fail(f"--prompt-len + --new-tokens and --prefill must fit --context {args.context}")

    from jaxformer.tokenizer import Tokenizer

    tok = Tokenizer.from_tiktoken_file(args.ranks)
    if tok.n_vocab != args.vocab:
        fail(f"--ranks gives {tok.n_vocab} ids, --vocab is {args.vocab}: use GPT-2's 50257")
    c = Config(
        family="gpt2", vocab_size=args.vocab, n_layers=args.n_layers, d_model=args.d_model,
        n_heads=args.n_heads, context=args.context,
    )  # fmt: skip
    model = build(c)
    params = model.init(jax.random.key(0))
    n_params = sum(x.size for x in jax.tree.leaves(params))
    load = os.getloadavg()
    print(
        f"model: gpt2 d={c.d_model} L={c.n_layers} H={c.n_heads} V={c.vocab_size} "
        f"context={c.context} ({n_params / 1e6:.1f}M params), random init (seed 0), batch 1"
    )
    print(f"machine: {machine()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"jax {jax.__version__} (XLA on every core); llama-cpp-python {llama_cpp.__version__}"
          f" ({args.threads} threads, KV cache f32); converter {converter}")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="bench_llamacpp_") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        hf = write_hf(model, params, tok, root)
        t0 = time.perf_counter()
        paths = {g: convert(hf, converter, g, root) for g, _ in PAIRS}
        sizes = {g: p.stat().st_size for g, p in paths.items()}
        print(f"converted to GGUF in {time.perf_counter() - t0:.0f} s: "
              + ", ".join(f"{g} {s / 1e6:.0f} MB" for g, s in sizes.items()))  # fmt: skip
        n_ctx = args.prompt_len + max(args.new_tokens, args.check_tokens)
        n_ctx = max(n_ctx, args.prefill)
        llamas = {g: LlamaCpp(p, n_ctx, args.prefill, args.threads) for g, p in paths.items()}

        prompt = (np.arange(args.prompt_len) * 7 % c.vocab_size).tolist()
        errors = check_same_function(model, params, llamas, prompt, args)

        n = args.new_tokens
        decode = {}
        for g, w in PAIRS:
            decode[g] = lambda g=g: llamas[g].greedy(prompt, n)
            decode[w] = lambda w=w: generate(
                model, params, prompt, n, temperature=0, weights=w).block_until_ready()  # fmt: skip
        dec = timed(decode, args.repeats)

        T = args.prefill
        ids = (np.arange(T) * 13 % c.vocab_size).tolist()
        t_ids = jnp.asarray(ids, jnp.int32)
        pre = {}
        for g, w in PAIRS:
            pre[g] = lambda g=g: llamas[g].last_logits(ids)
            run = jax_prefill(model, params, w, T)
            pre[w] = lambda run=run: run(t_ids)
        pf = timed(pre, args.repeats)
        for m in llamas.values():  # before the files go (and before exit)
            m.llm.close()

    print(
        f"\ndecode: greedy, {args.prompt_len}-token prompt + {n} new, tokens/s; prefill: "
        f"{T} tokens in one batch, tokens/s; median of {args.repeats}. max |Δ logit| against "
        f"jaxformer f32 on the check's {len(prompt) + args.check_tokens - 1} positions\n"
    )
    print("| storage (llama.cpp / jaxformer) | llama.cpp decode | jaxformer decode | "
          "**decode ratio** | llama.cpp prefill | jaxformer prefill | **prefill ratio** | "
          "max abs Δ logit (llama.cpp / jaxformer) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for g, w in PAIRS:
        d_l, d_j = n / dec[g], n / dec[w]
        p_l, p_j = T / pf[g], T / pf[w]
        print(
            f"| {g} / {w} | {d_l:.1f} | {d_j:.1f} | **{d_j / d_l:.2f}×** | {p_l:.0f} | "
            f"{p_j:.0f} | **{p_j / p_l:.2f}×** | {errors[g]:.1e} / {errors[w]:.1e} |"
        )
    load = os.getloadavg()
    print(
        f"\nratio = jaxformer / llama.cpp; load average after: {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
