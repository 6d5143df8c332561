"""What a run reports: metrics lines, throughput and MFU, the loss curve.

    MFU = 3 F(T) · tokens/s / peak FLOP/s

F(T) is the forward pass's FLOPs per token at the training length T, as ``describe``
counts them from each map's term (the one source of FLOP counts); the backward pass
costs about twice the forward, hence 3F (PaLM, appendix B, counts the same matmuls
as 6N + 12·L·T·d). The peak is the best of a few timed f32 1024³ matmuls on this
machine.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..atomic import atomic_open
from ..core import Map
from ..describe import chain

_matmul = jax.jit(jnp.matmul)


def measure_peak_flops(n: int = 1024, repeats: int = 5) -> float:
    """This machine's f32 matmul FLOP/s: the best of ``repeats`` timed [n,n]·[n,n] products."""
    f = _matmul  # one jitted function: a call per eval compiles once, not every time
    a = jnp.ones((n, n), jnp.float32)
    f(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


MFU = (
    "MFU = tokens/s × model FLOPs per token ÷ the measured f32 matmul peak; model FLOPs = 3 × "
    "the forward pass's as describe counts the math (causal attention: half the keys)"
)


def flops_per_token(model: Map, T: int) -> float:
    """Training model FLOPs per token at sequence length T: 3× the forward pass's as its math
    needs them (``describe``'s model FLOPs: causal attention counted as half, a window as
    its window), whatever the kernel computes; the basis of MFU."""
    return 3.0 * chain(model, T).model_flops


class Metrics:
    """Append-only JSON lines, one record per step or eval; flushed as written."""

    def __init__(self, path: Path, keep_until: int | None = None):
        """Open ``path``; with ``keep_until`` (a resumed run), drop records after that step
        (and any line a kill cut short) so the file reads as if never interrupted."""
        self.path = path
        if keep_until is None:
            path.unlink(missing_ok=True)
        elif path.exists():
            kept = [r for r in read_metrics(path) if r["step"] <= keep_until]
            with atomic_open(path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)
        self._f = open(path, "a", buffering=1)

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self._f.close()


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics file, skipping a last line cut short by a kill."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def plot_loss(metrics_path: Path, png: Path, bzip2_bpb: float, bytes_per_token: float) -> None:
    """Train loss (and its running mean) and val loss against step, saved as a PNG, with
    bzip2's bits per byte as a loss level: bpb · ln 2 · (val bytes per token) nats/token."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"], r["val_bpb"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        s, y = zip(*train)
        ax.plot(s, y, color="tab:blue", alpha=0.3, lw=0.8, label="train (per step)")
        w = max(1, len(y) // 50)
        c = np.cumsum(np.concatenate([[0.0], y]))
        mean = (c[w:] - c[:-w]) / w  # the running mean of the last w steps
        ax.plot(s[w - 1 :], mean, color="tab:blue", lw=1.5, label=f"train (mean of {w})")
    if val:
        s, y, b = zip(*val)
        ax.plot(s, y, "o-", color="tab:orange", lw=1.5, label=f"val (last: {b[-1]:.3f} bits/byte)")
    level = bzip2_bpb * math.log(2) * bytes_per_token
    ax.axhline(level, color="gray", ls="--", lw=1, label=f"bzip2 -9 ({bzip2_bpb:.3f} bits/byte)")
    ax.set(xlabel="step", ylabel="cross-entropy (nats/token)", title="loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(png) as f:
        fig.savefig(f, format="png")
    plt.close(fig)
