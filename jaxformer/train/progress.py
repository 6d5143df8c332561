"""What a run shows and records as it goes: the bar, the metrics file, the evals,
throughput and MFU (``Progress``, process 0 writing), and a mixture of experts' part of
each step's line (``expert_metrics``)."""

from __future__ import annotations

import math

import jax
from tqdm import tqdm

from . import report
from .loss import bits_per_byte


class _NoMetrics:  # what processes other than 0 write
    def write(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


class Progress:
    """The bar, the metrics file, the evals, throughput and MFU of a run (process 0 writes).

    Throughput counts the training steps only, from the step after the first (which
    compiles): neither compiling, evals nor checkpoints. The bar, and so its ETA, starts
    once the first step is done."""

    def __init__(self, run, start: int, resume: bool):
        cfg = run.cfg
        self.run, self.show = run, cfg.progress and run.lead
        # Process 0 alone opens the file: a second opener would unlink the one it writes.
        path, keep = cfg.run_dir / "metrics.jsonl", start if resume else None
        self.metrics = report.Metrics(path, keep) if run.lead else _NoMetrics()
        self.bar = None
        # The peak is re-measured at every eval and kept at its best: on a shared machine one
        # measurement can land in a busy moment, which would overstate the MFU. It is one
        # device's, times the devices (CPU devices forced by XLA_FLAGS share their cores).
        self.peak = report.measure_peak_flops()
        cpu = jax.default_backend() == "cpu"
        self.chips = jax.process_count() if cpu else run.mesh.size
        self.flops = report.flops_per_token(run.model, cfg.context)
        self.timed_steps, self.step_s = 0, 0.0  # steps after the first, and their seconds
        self.params = None  # the final params, once the loop has run

    def step(self, k: int, seconds: float, loss: float, experts: dict | None = None) -> None:
        """Step ``k`` is done in ``seconds`` (its batch, the step and the sync of its loss);
        ``experts``: a mixture's load, as ``expert_metrics``."""
        cfg = self.run.cfg
        if self.bar is None:  # the first step compiled: the bar and its ETA start here
            self.bar = tqdm(total=cfg.steps, initial=k, unit="step", disable=not self.show,
                            leave=False)  # fmt: skip
            return
        self.timed_steps += 1
        self.step_s += seconds
        self.bar.update(1)
        if k % cfg.log_every == 0 or k == cfg.steps:
            tok_s = self.tokens_per_s()
            load, dropped = (experts or {}).get("expert_load"), (experts or {}).get("dropped")
            busiest = f"  busiest expert {max(load) * len(load):.2f}× its share" if load else ""
            busiest += f"  dropped {dropped:.2%}" if dropped else ""
            self.bar.set_postfix_str(
                f"loss {loss:.3f}  {tok_s:,.0f} tok/s  MFU {self.mfu(tok_s):.1%}{busiest}"
            )

    def tokens_per_s(self) -> float:
        cfg = self.run.cfg
        return self.timed_steps * cfg.batch_size * cfg.context / self.step_s if self.step_s else 0.0

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def say(self, line: str) -> None:
        self.bar.write(line) if self.show and self.bar is not None else self.run.log(line)

    def mfu(self, tok_s: float) -> float:
        return tok_s * self.flops / (self.peak * self.chips)

    def evaluate(self, params, k: int, full: bool) -> dict:
        corpus, cfg = self.run.corpus, self.run.cfg
        self.peak = max(self.peak, report.measure_peak_flops())
        nll, n_tok, n_bytes = self.run.evaluate(params, None if full else cfg.periodic_eval_batches)
        r = {
            "step": k, "val_loss": nll / n_tok, "val_ppl": math.exp(min(nll / n_tok, 50)),
            "val_bpb": bits_per_byte(nll, n_bytes), "bzip2_bpb": corpus.bzip2_bpb,
            "val_tokens": n_tok,
        }  # fmt: skip
        self.metrics.write(r)
        b = cfg.batch_size // cfg.micro_batches
        every = full or cfg.periodic_eval_batches * b >= self.run.evaluate.windows
        self.say(
            f"eval   step {k:>6}: val loss {r['val_loss']:.4f}  ppl {r['val_ppl']:.2f}  "
            f"bits/byte {r['val_bpb']:.4f} (bzip2 -9: {corpus.bzip2_bpb:.4f})"
            + ("  [all of val]" if every else f"  [a fixed {n_tok:,} of val's tokens]")
        )
        return r


def expert_metrics(m: dict) -> dict:
    """A mixture of experts' part of a step's metrics line: its auxiliary loss, each
    expert's share of the routed (token, expert) pairs (over layers), and the fraction of
    pairs dropped (by an expert axis' capacity; 0 otherwise); {} for a model without experts."""
    if "expert_load" not in m:
        return {}
    load = [round(float(v), 5) for v in m["expert_load"]]
    return {"aux_loss": float(m["aux_loss"]), "expert_load": load, "dropped": float(m["dropped"])}
