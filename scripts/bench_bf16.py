"""bf16 on CPU, bounded: what each route gives a matmul, in one run.

    .venv/bin/python scripts/bench_bf16.py [--repeats 20] [--flags ...]
    # the MKL row needs the mkl wheel (not a dependency):
    .venv/bin/pip install mkl intel-openmp

The matmuls of the train step (f32 in, f32 out; bf16 in, f32 accumulated out) through:

    XLA f32            jax.jit(a @ b), float32
    XLA bf16           jax.jit(jnp.dot(a, b, preferred_element_type=float32)), bfloat16 a, b
    PyTorch f32        torch.mm, 2 threads (MKL/oneDNN as the wheel ships them)
    PyTorch bf16       torch.mm of bfloat16 tensors, 2 threads (oneDNN: AMX or AVX512-BF16)
    MKL bf16           cblas_gemm_bf16bf16f32 (ctypes, 2 threads): the kernel a jax.ffi
                       custom call would reach; f32 out
    MKL f32            cblas_sgemm, the same library's f32

GFLOP/s = 2·m·k·n / the median seconds of ``--repeats`` calls after a warm-up. The CPU's bf16
support is printed from /proc/cpuinfo (amx_bf16, avx512_bf16). XLA flags given with
``--flags`` are set before jax is imported, to try them on the XLA rows.
"""

import argparse
import ctypes
import ctypes.util
import os
import statistics
import sys
import time

SHAPES = [(2048, 2048, 2048), (4096, 512, 2048), (4096, 2048, 512), (2048, 256, 1024)]


def timed(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def xla_rows(repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    rows = {}
    for dtype in ("float32", "bfloat16"):
        f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
        for m, k, n in SHAPES:
            a = jnp.ones((m, k), dtype)
            b = jnp.ones((k, n), dtype)
            call = lambda f=f, a=a, b=b: f(a, b).block_until_ready()
            rows[(f"XLA {dtype}", (m, k, n))] = timed(call, repeats)
    return rows


def torch_rows(repeats: int, threads: int) -> dict:
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(threads)
    rows = {}
    for dtype in (torch.float32, torch.bfloat16):
        for m, k, n in SHAPES:
            a, b = torch.ones(m, k, dtype=dtype), torch.ones(k, n, dtype=dtype)
            name = f"PyTorch {str(dtype).removeprefix('torch.')}"
            rows[(name, (m, k, n))] = timed(lambda a=a, b=b: torch.mm(a, b), repeats)
    return rows


def mkl():
    """MKL's runtime library from the mkl wheel, or None."""
    import glob

    found = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))  # the wheel's
    path = found[-1] if found else ctypes.util.find_library("mkl_rt")
    return ctypes.CDLL(path) if path else None


def mkl_rows(repeats: int, threads: int) -> dict:
    import numpy as np

    lib = mkl()
    if lib is None:
        return {}
    lib.MKL_Set_Num_Threads(threads)
    row, no = 101, 111  # CblasRowMajor, CblasNoTrans
    i, f, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    lib.cblas_gemm_bf16bf16f32.argtypes = [i, i, i, i, i, i, f, p, i, p, i, f, p, i]
    lib.cblas_sgemm.argtypes = [i, i, i, i, i, i, f, p, i, p, i, f, p, i]
    rows = {}
    for m, k, n in SHAPES:
        c = np.zeros((m, n), np.float32)
        for name, fn, dt in (("MKL bf16", lib.cblas_gemm_bf16bf16f32, np.uint16),
                             ("MKL f32", lib.cblas_sgemm, np.float32)):  # fmt: skip
            one = np.float32(1).view(np.uint32) >> 16 if dt == np.uint16 else 1
            a, b = np.full((m, k), one, dt), np.full((k, n), one, dt)
            args = (row, no, no, m, n, k, 1.0, a.ctypes.data, k, b.ctypes.data, n, 0.0,
                    c.ctypes.data, n)  # fmt: skip
            call = lambda fn=fn, args=args: fn(*args)
            call()
            if not np.all(c == k):  # the product of ones: k everywhere
                sys.exit(f"{name}: {m}x{k}x{n} of ones is not {k}; not timing it")
            rows[(name, (m, k, n))] = timed(call, repeats)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2, help="PyTorch and MKL threads")
    p.add_argument("--flags", default="", help="XLA_FLAGS for the XLA rows")
    args = p.parse_args()
    if args.flags:
        os.environ["XLA_FLAGS"] = args.flags
    flags = open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0].split()
    bf16 = [x for x in ("amx_bf16", "avx512_bf16") if x in flags] or ["none"]
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        "?",
    )
    print(f"{model}, {os.cpu_count()} cores; bf16 instructions: {', '.join(bf16)}")
    print(f"load {', '.join(f'{x:.2f}' for x in os.getloadavg())}; XLA_FLAGS={args.flags!r}\n")
    rows = xla_rows(args.repeats) | torch_rows(args.repeats, args.threads)
    rows |= mkl_rows(args.repeats, args.threads)
    impls = list(dict.fromkeys(name for name, _ in rows))
    head = " | ".join(f"{m}×{k}×{n}" for m, k, n in SHAPES)
    print(f"| route (GFLOP/s) | {head} |")
    print("|---|" + "---:|" * len(SHAPES))
    for name in impls:
        cells = [
            f"{2 * m * k * n / rows[(name, (m, k, n))] / 1e9:.0f}" if (name, (m, k, n)) in rows
            else "" for m, k, n in SHAPES
        ]  # fmt: skip
        print(f"| {name} | " + " | ".join(cells) + " |")
    if not any(name.startswith("MKL") for name in impls):
        print("\n(no MKL row: `.venv/bin/pip install mkl intel-openmp` to add it)")


if __name__ == "__main__":
    main()
