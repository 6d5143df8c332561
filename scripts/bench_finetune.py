"""Benchmark fine-tuning: LoRA against a full fine-tune, in jaxformer and in PyTorch (peft).

    .venv/bin/python scripts/bench_finetune.py [--d 768] [--L 6] [--T 256] [--B 8] [--rounds 7]

One GPT-2-shaped model (V=50257, H=d/64, tied, f32) and four train steps on the same batch:

    jaxformer full   the library's step (clipping, AdamW) on every parameter
    jaxformer LoRA   ``lora(model, r=8, α=16, W_Q, W_V)``: the adapters alone train and hold
                     optimizer state (``optax.multi_transform``, as ``train --lora_rank``)
    torch full       transformers' GPT2LMHeadModel, AdamW, clipping (when torch is installed)
    torch LoRA       the same with peft's LoRA on c_attn (r=8, α=16): the peer

It prints the trainable parameters, the optimizer state, and the median ms/step of
alternating rounds (a load that drifts falls on all alike), with each LoRA step's speed-up
over its own full fine-tune.
"""

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxformer import Config, build
from jaxformer.models.lora import lora
from jaxformer.train import step as S
from jaxformer.train.config import TrainConfig
from jaxformer.train.optim import labels, optimizer

V, RANK, ALPHA = 50257, 8, 16.0


def _size(tree) -> int:
    return sum(int(np.size(a)) for a in jax.tree.leaves(tree) if np.ndim(a) > 0)


def jax_step(model, params, cfg: TrainConfig, batch):
    opt = optimizer(cfg)
    state = opt.init(params)
    step = S.make_train_step(model, opt, "float32", labels(cfg))
    step = step.lower(params, state, batch).compile()
    box = {"params": params, "state": state}

    def run():
        box["params"], box["state"], m = step(box["params"], box["state"], batch)
        jax.block_until_ready(m)

    return run, state


def jax_rows(a, batch):
    c = Config(vocab_size=V, context=a.T, n_layers=a.L, d_model=a.d, n_heads=a.d // 64,
               attention="dense")  # fmt: skip
    model = build(c)
    params = model.init(jax.random.key(0))
    base = dict(n_layers=a.L, d_model=a.d, n_heads=a.d // 64, context=a.T, steps=1000)
    full_cfg = TrainConfig(**base, batch_size=a.B, weight_decay=0.0)
    full, full_state = jax_step(model, params, full_cfg, batch)
    adapted = lora(model, RANK, ALPHA, ("W_Q", "W_V"))
    own = jax.tree.map(jnp.copy, params)  # the steps donate their params: one copy each
    p_lora = own | {"lora": adapted.init(jax.random.key(1))["lora"]}
    lora_cfg = full_cfg.replace(init_from="x", lora_rank=RANK, lora_alpha=ALPHA)
    low, lora_state = jax_step(adapted, p_lora, lora_cfg, batch)
    n_lora = _size(p_lora["lora"])
    return {
        "jaxformer full": (full, _size(params), _size(full_state)),
        "jaxformer LoRA": (low, n_lora, _size(lora_state)),
    }


def torch_rows(a, batch):
    try:
        import peft
        import torch
        import transformers
    except ImportError as e:
        print(f"(no PyTorch rows: {e})")
        return {}
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    hf = transformers.GPT2Config(vocab_size=V, n_positions=a.T, n_embd=a.d, n_layer=a.L,
                                 n_head=a.d // 64, attn_implementation="eager")  # fmt: skip
    ids = torch.as_tensor(np.asarray(batch[0]), dtype=torch.long)
    rows = {}
    for name in ("torch full", "torch LoRA"):
        model = transformers.GPT2LMHeadModel(hf)
        if name == "torch LoRA":
            pc = peft.LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=["c_attn"],
                                 fan_in_fan_out=True, lora_dropout=0.0)  # fmt: skip
            model = peft.get_peft_model(model, pc)
        trained = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trained, lr=1e-4, weight_decay=0.0)

        def run(model=model, opt=opt, trained=trained):
            out = model(ids[:, :-1], labels=ids[:, :-1])
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        run()  # the optimizer's state exists after its first step
        state = sum(t.numel() for s in opt.state.values() for t in s.values() if t.ndim > 0)
        rows[name] = (run, sum(p.numel() for p in trained), state)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--L", type=int, default=6)
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; jax {jax.__version__}")
    rng = np.random.default_rng(0)
    batch = jnp.asarray(rng.integers(0, V, (1, a.B, a.T + 1)), jnp.int32)
    rows = jax_rows(a, batch) | torch_rows(a, batch)
    for run, _, _ in rows.values():
        run()  # warm
    times = {n: [] for n in rows}
    for _ in range(a.rounds):
        for n, (run, _, _) in rows.items():
            t = time.perf_counter()
            run()
            times[n].append(time.perf_counter() - t)
    ms = {n: 1e3 * statistics.median(ts) for n, ts in times.items()}
    print(f"\nGPT-2 shape L={a.L}, d={a.d}, V={V}; T={a.T}, B={a.B}; LoRA r={RANK}, α={ALPHA:g} "
          f"on W_Q, W_V (c_attn); medians of {a.rounds} alternating rounds")  # fmt: skip
    print(f"{'step':<16} {'trainable':>12} {'opt. state':>12} {'ms/step':>9} {'vs its full':>12}")
    for n, (_, trainable, state) in rows.items():
        full = ms[n.replace("LoRA", "full")]
        print(f"{n:<16} {trainable:>12,} {state:>12,} {ms[n]:>9.1f} {full / ms[n]:>11.2f}×")
    if "torch LoRA" in ms:
        lo, full = ms["torch LoRA"] / ms["jaxformer LoRA"], ms["torch full"] / ms["jaxformer full"]
        print(f"\njaxformer's speed / PyTorch's: LoRA (peft) {lo:.2f}×, full {full:.2f}×")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
