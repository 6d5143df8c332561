"""The training recipe against nanoGPT's: the same tokens, the same minutes, the same machine.

    .venv/bin/python scripts/bench_recipe.py [--minutes 10] [--data FILE] [-- TRAIN FLAGS]

Two runs, one after the other, each with the machine to itself:

1. ``jaxformer train`` as ``make train`` runs it (the default preset; flags after ``--``
   are passed on), in a fresh run directory, its budget ``--minutes``.
2. nanoGPT (Karpathy, github.com/karpathy/nanoGPT), written again below in PyTorch: its
   ``model.py`` GPT (pre-LN blocks with biased LayerNorms, learned positions, exact GELU,
   tied unembedding, N(0, 0.02²) init with the residual projections at 0.02/√(2L)) and its
   recipe for small data on a CPU, the README's
   ``config/train_shakespeare_char.py --device=cpu --block_size=64 --batch_size=12
   --n_layer=4 --n_head=4 --n_embd=128 --dropout=0.0``: AdamW (β 0.9, 0.99; decay 0.1 on
   the ≥2-D params), lr 1e-3 with 100 warm-up steps and a cosine to 1e-4 over
   ``lr_decay_iters = max_iters``, clipping at 1, an estimate of the loss on 20 batches
   every 250 steps. nanoGPT has no time budget: ``max_iters`` is sized here so that its
   run fills the same minutes (from 20 timed steps), and it also stops when they end.

Both read jaxformer's tokens of the corpus (the BPE the jaxformer run trains, its
train/val split), and both are scored the same way: the summed next-token NLL over all of
val, each token a target once in windows of the model's own context, over the bytes those
tokens stand for (bits per byte). PyTorch runs with 2 threads in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NANOGPT = dict(  # the README's CPU run of config/train_shakespeare_char.py
    n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0,
    learning_rate=1e-3, min_lr=1e-4, warmup_iters=100, beta1=0.9, beta2=0.99,
    weight_decay=0.1, grad_clip=1.0, eval_interval=250, eval_iters=20, seed=1337,
)  # fmt: skip


def jaxformer_run(out: Path, minutes: float, data: str, flags: list[str]) -> dict:
    """``jaxformer train`` in a process of its own; its final metrics line (all of val)."""
    cmd = [str(ROOT / ".venv/bin/jaxformer"), "train", "--out", str(out), "--progress", "false"]
    cmd += ["--max_minutes", str(minutes)] + (["--data", data] if data else []) + flags
    t = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    final = next(m for m in reversed(lines) if "val_bpb" in m)
    steps = max(m["step"] for m in lines if "loss" in m)
    cfg = json.loads((out / "config.json").read_text())["train"]
    return {
        "bpb": final["val_bpb"], "steps": steps, "wall_s": time.time() - t,
        "tokens": steps * cfg["batch_size"] * cfg["context"], "cache": cfg["cache"], "cfg": cfg,
    }  # fmt: skip


def corpus_of(run_cfg: dict):
    """The jaxformer run's corpus (its cached tokenizer and token files)."""
    from jaxformer.train import TrainConfig
    from jaxformer.train.data import prepare

    return prepare(TrainConfig.from_dict(run_cfg), log=lambda _: None)


# -- nanoGPT, as its model.py and train.py define it ---------------------------------------


def nanogpt(V: int, c: dict):
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(c["n_embd"], 3 * c["n_embd"])
            self.c_proj = nn.Linear(c["n_embd"], c["n_embd"])

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (
                a.view(B, T, c["n_head"], C // c["n_head"]).transpose(1, 2) for a in (q, k, v)
            )
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn = nn.LayerNorm(c["n_embd"]), Attention()
            self.ln_2 = nn.LayerNorm(c["n_embd"])
            self.c_fc = nn.Linear(c["n_embd"], 4 * c["n_embd"])
            self.c_proj = nn.Linear(4 * c["n_embd"], c["n_embd"])

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, c["n_embd"])
            self.wpe = nn.Embedding(c["block_size"], c["n_embd"])
            self.h = nn.ModuleList(Block() for _ in range(c["n_layer"]))
            self.ln_f = nn.LayerNorm(c["n_embd"])
            self.lm_head = nn.Linear(c["n_embd"], V, bias=False)
            self.lm_head.weight = self.wte.weight  # tied
            for m in self.modules():
                if isinstance(m, nn.Linear | nn.Embedding):
                    nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, std=0.02 / math.sqrt(2 * c["n_layer"]))

        def forward(self, idx):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.h:
                x = block(x)
            return self.lm_head(self.ln_f(x))

    return GPT()


def nanogpt_lr(it: int, max_iters: int, c: dict) -> float:
    """train.py's get_lr: linear warmup, then a cosine to min_lr at lr_decay_iters."""
    lr, lo, w = c["learning_rate"], c["min_lr"], c["warmup_iters"]
    if it < w:
        return lr * (it + 1) / (w + 1)
    if it > max_iters:
        return lo
    ratio = (it - w) / (max_iters - w)
    return lo + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - lo)


def nanogpt_child(run_cfg: dict, minutes: float, out: Path) -> None:
    import torch
    from torch.nn import functional as F

    from jaxformer.train.sampler import eval_windows

    torch.set_num_threads(2)
    c = NANOGPT
    corpus = corpus_of(run_cfg)
    train = torch.from_numpy(np.asarray(corpus.train, np.int64))
    val = torch.from_numpy(np.asarray(corpus.val, np.int64))  # once, not at every estimate
    torch.manual_seed(c["seed"])
    model = nanogpt(corpus.tokenizer.n_vocab, c)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": c["weight_decay"]},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=c["learning_rate"], betas=(c["beta1"], c["beta2"]))
    T, b = c["block_size"], c["batch_size"]

    def batch():
        ix = torch.randint(len(train) - T, (b,))
        x = torch.stack([train[i : i + T] for i in ix])
        return x, torch.stack([train[i + 1 : i + 1 + T] for i in ix])

    def step(it, max_iters):
        for g in opt.param_groups:
            g["lr"] = nanogpt_lr(it, max_iters, c)
        x, y = batch()
        loss = F.cross_entropy(model(x).view(-1, corpus.tokenizer.n_vocab), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c["grad_clip"])
        opt.step()

    budget = 60 * minutes
    t0 = time.perf_counter()
    sizing = 20
    for it in range(sizing):  # timed at the start rate; these are the run's first steps
        step(it, 10**9)
    per_step = (time.perf_counter() - t0) / sizing
    max_iters = max(sizing + 1, int(0.97 * budget / per_step))
    it = sizing
    while it < max_iters and time.perf_counter() - t0 < budget:
        step(it, max_iters)
        it += 1
        if it % c["eval_interval"] == 0:
            val_estimate(model, val, T, b, c["eval_iters"])
    train_s = time.perf_counter() - t0
    nll, n_bytes = 0.0, 0
    starts, mask = eval_windows(corpus.val.size, T)
    offsets = np.arange(T + 1)
    model.eval()
    with torch.no_grad():
        for i in range(0, len(starts), 64):
            w = np.asarray(corpus.val[starts[i : i + 64, None] + offsets], np.int64)
            m = torch.from_numpy(mask[i : i + 64])
            logits = model(torch.from_numpy(w[:, :-1]))
            tok_nll = F.cross_entropy(
                logits.transpose(1, 2), torch.from_numpy(w[:, 1:]), reduction="none"
            )
            nll += float(tok_nll[m].sum())
            n_bytes += int(corpus.token_bytes[w[:, 1:]][mask[i : i + 64]].sum())
    n_params = sum(p.numel() for p in model.parameters())  # the tied matrix once
    result = {
        "bpb": nll / math.log(2) / n_bytes, "steps": it, "max_iters": max_iters,
        "tokens": it * b * T, "train_s": train_s, "n_params": n_params,
    }  # fmt: skip
    out.write_text(json.dumps(result))


def val_estimate(model, val, T: int, b: int, n: int) -> float:
    """train.py's periodic estimate_loss on val (it costs the run time, as there)."""
    import torch
    from torch.nn import functional as F

    model.eval()
    losses = []
    with torch.no_grad():
        for _ in range(n):
            ix = torch.randint(len(val) - T, (b,))
            x = torch.stack([val[i : i + T] for i in ix])
            y = torch.stack([val[i + 1 : i + 1 + T] for i in ix])
            losses.append(float(F.cross_entropy(model(x).flatten(0, 1), y.flatten())))
    model.train()
    return float(np.mean(losses))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--data", default="", help="the corpus (default: the bundled one)")
    ap.add_argument(
        "--nanogpt-child", nargs=2, metavar=("RUN_CONFIG", "OUT"), help=argparse.SUPPRESS
    )
    args, flags = ap.parse_known_args()
    flags = [f for f in flags if f != "--"]
    if args.nanogpt_child:
        cfg_path, out = map(Path, args.nanogpt_child)
        nanogpt_child(json.loads(cfg_path.read_text()), args.minutes, out)
        return
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        jx = jaxformer_run(tmp / "jaxformer", args.minutes, args.data, flags)
        (tmp / "cfg.json").write_text(json.dumps(jx["cfg"]))
        print(f"jaxformer done: {jx['bpb']:.4f} bits/byte; load {os.getloadavg()[0]:.1f}")
        t = time.time()
        child = [sys.executable, __file__, "--minutes", str(args.minutes)]
        child += ["--nanogpt-child", str(tmp / "cfg.json"), str(tmp / "nanogpt.json")]
        subprocess.run(child, check=True)
        ng = json.loads((tmp / "nanogpt.json").read_text()) | {"wall_s": time.time() - t}
    cfg = jx["cfg"]
    rows = [
        ("jaxformer (make train)", f"{cfg['family']} L={cfg['n_layers']} d={cfg['d_model']} "
         f"T={cfg['context']} B={cfg['batch_size']}", jx),
        ("nanoGPT (CPU recipe)", f"gpt2 L={NANOGPT['n_layer']} d={NANOGPT['n_embd']} "
         f"T={NANOGPT['block_size']} B={NANOGPT['batch_size']}", ng),
    ]  # fmt: skip
    print(f"\n{args.minutes:g} minutes each, the same tokens (V={cfg['vocab_size']}), all of val")
    print("| recipe | model | steps | tokens seen | wall s | val bits/byte |")
    print("|---|---|---:|---:|---:|---:|")
    for name, model, r in rows:
        cells = (name, model, f"{r['steps']:,}", f"{r['tokens']:,}", f"{r['wall_s']:.0f}")
        print("| " + " | ".join(cells) + f" | {r['bpb']:.4f} |")
    print(f"\njaxformer − nanoGPT: {jx['bpb'] - ng['bpb']:+.4f} bits/byte")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
