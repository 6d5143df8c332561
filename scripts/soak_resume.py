"""Soak test of stopping and resuming: a training run killed at random moments, with
SIGKILL, SIGTERM and SIGINT, and resumed each time, ends with the parameters of an
uninterrupted run, bit for bit. Not part of ``make test`` (it runs for --minutes).

    .venv/bin/python scripts/soak_resume.py --minutes 20 --kills 6 --out /tmp/soak

1. A probe run times a step; the run's length is set so that it would take about
   --minutes uninterrupted.
2. The soaked run: one command (``jaxformer train … --resume``, the same every time) is
   started, killed after a random delay (a third of them in the first seconds: imports,
   data, compiling), and started again, until it has been killed at least --kills times,
   each signal at least twice, and --minutes have passed. If it finishes sooner, it is
   continued for more steps (``--resume --steps N``, the documented way), which keeps
   its learning-rate schedule (``--decay_steps``). Each exit status is checked: SIGKILL
   -9; SIGTERM 0 with a "Resume with" line; SIGINT 130 (-2 in the package's first
   import, before any handler of jaxformer's can be installed).
3. The reference: the same final settings, trained once without a stop.
4. The final parameters and optimizer state of both are compared leaf by leaf, bit for
   bit, and so are the per-step losses and the final sample.

Prints a report (markdown) to stdout; exit status 0 when everything agrees.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = ["--preset", "tiny", "--d_model", "64", "--context", "64", "--batch_size", "16"]
LOOP = ["--checkpoint_every", "50", "--eval_every", "1000", "--progress", "false"]
LOOP += ["--sample_tokens", "20", "--warmup_steps", "50"]
# SIGINT: 130, or -2 (ended by the signal: 130 to a shell) if it lands while Python is
# still importing the package, before jaxformer's own handler is installed.
EXPECTED = {signal.SIGKILL: {-9}, signal.SIGTERM: {0}, signal.SIGINT: {130, -2}}


def command(corpus: Path, out: Path, *extra: str) -> list[str]:
    data = ["--data", str(corpus), "--cache", str(out.parent / "cache"), "--out", str(out)]
    return [sys.executable, "-m", "jaxformer.cli", "train", *MODEL, *LOOP, *data, *extra]


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k != "JAXFORMER_FAULT_AT_STEP"}
    return e | {"PYTHONHASHSEED": "0"}  # one environment for every run: the same numbers


def run(cmd: list[str], log: Path) -> subprocess.CompletedProcess:
    with open(log, "a") as f:
        return subprocess.run(cmd, env=env(), stdout=f, stderr=subprocess.STDOUT, text=True)


def latest(out: Path) -> int | None:
    sys.path.insert(0, str(REPO))
    from jaxformer.rundir import complete_steps

    steps = complete_steps(out)
    return steps[-1] if steps else None


def last_metric_step(out: Path) -> int | None:
    path = out / "metrics.jsonl"
    if not path.exists():
        return None
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return max(steps) if steps else None


def probe(corpus: Path, root: Path) -> float:
    """Seconds a training step takes here (a 300-step run, its timed steps)."""
    out = root / "probe"
    shutil.rmtree(out, ignore_errors=True)
    r = run(command(corpus, out, "--steps", "300", "--sample_tokens", "0"), root / "probe.log")
    if r.returncode != 0:
        sys.exit(f"the probe run failed; see {root / 'probe.log'}")
    text = (root / "probe.log").read_text()
    tok_s = float(text.split(" tok/s")[0].rsplit(", ", 1)[1].replace(",", ""))
    return 16 * 64 / tok_s


def soak(corpus: Path, out: Path, steps: int, args, rng: random.Random) -> dict:
    """The killed-and-resumed run; its kills, and the final steps and decay_steps."""
    log = out.parent / "soak.log"
    signals = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT] * 2
    rng.shuffle(signals)
    kills, t0, target, decay = [], time.time(), steps, 0
    while True:
        cmd = command(corpus, out, "--resume", "--steps", str(target))
        with open(log, "a") as f:
            p = subprocess.Popen(cmd, env=env(), stdout=f, stderr=subprocess.STDOUT)
        enough = len(kills) >= args.kills and not signals and time.time() - t0 >= 60 * args.minutes
        if not enough:
            early = rng.random() < 1 / 3  # in the first seconds: imports, data, compiling
            delay = rng.uniform(0.5, 8.0) if early else rng.uniform(8.0, args.max_delay)
            try:
                p.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                kills.append(kill(p, signals.pop() if signals else rng.choice(list(EXPECTED))))
                kills[-1] |= dict(t=round(time.time() - t0), delay=round(delay, 1))
                kills[-1] |= dict(checkpoint=latest(out), metrics_step=last_metric_step(out))
                k = kills[-1]
                print(
                    f"  kill {len(kills):>2} at {k['t']:>5} s: {k['signal']:<7} after "
                    f"{delay:5.1f} s: exit {k['rc']}, checkpoint {k['checkpoint']}",
                    file=sys.stderr,
                )
                continue
        rc = p.wait()
        if rc != 0:
            sys.exit(f"the soaked run failed (exit {rc}); see {log}")
        if latest(out) == target and enough:
            return dict(kills=kills, steps=target, decay_steps=decay, seconds=time.time() - t0)
        if latest(out) == target:  # finished too soon: continue it, the documented way
            decay = decay or target
            target += max(500, target // 4)
            print(f"  finished; continued with --resume --steps {target}", file=sys.stderr)


def kill(p: subprocess.Popen, sig: signal.Signals) -> dict:
    p.send_signal(sig)
    rc = p.wait()
    return dict(signal=sig.name, rc=rc, ok=rc in EXPECTED[sig])


def compare(a: Path, b: Path) -> dict:
    sys.path.insert(0, str(REPO))
    import jax
    import numpy as np

    from jaxformer.models import build
    from jaxformer.rundir import Checkpoints
    from jaxformer.rundir_load import read_configs
    from jaxformer.train.config import TrainConfig

    def state(run: Path):
        train, config = read_configs(run)
        cfg = TrainConfig.from_dict(train)
        from jaxformer.train.optim import optimizer

        like = jax.eval_shape(build(config).init, jax.random.key(0))
        opt_like = jax.eval_shape(optimizer(cfg).init, like)
        ck = Checkpoints(run, read_only=True)
        step = ck.latest()
        params, opt_state, _ = ck.restore(step, like, opt_like)
        ck.close()
        return step, params, opt_state

    (sa, pa, oa), (sb, pb, ob) = state(a), state(b)
    leaves = lambda t: [np.asarray(x) for x in jax.tree.leaves(t)]

    def same(x, y):
        return len(x) == len(y) and all(
            u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes()
            for u, v in zip(x, y)
        )

    def losses(run: Path):
        records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        return [(m["step"], m["loss"]) for m in records if "loss" in m]

    return dict(
        steps=(sa, sb),
        params=same(leaves(pa), leaves(pb)),
        opt_state=same(leaves(oa), leaves(ob)),
        losses=losses(a) == losses(b),
        n_losses=len(losses(a)),
        sample=(a / "sample.txt").read_text() == (b / "sample.txt").read_text(),
        n_params=sum(x.size for x in leaves(pa)),
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=20.0, help="the soaked run's least length")
    p.add_argument("--kills", type=int, default=6, help="at least this many kills (≥ 6)")
    p.add_argument("--max-delay", type=float, default=150.0, help="longest wait before a kill (s)")
    p.add_argument("--seed", type=int, default=0, help="the seed of the kill times and signals")
    p.add_argument("--out", type=Path, default=Path("/tmp/jaxformer-soak"), help="a work folder")
    args = p.parse_args()
    rng = random.Random(args.seed)
    root = args.out
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    corpus = root / "corpus.txt"
    text = (REPO / "jaxformer" / "data" / "shakespeare.txt").read_text()
    corpus.write_text(text[:200_000])
    t_step = probe(corpus, root)
    steps = max(1000, int(0.8 * 60 * args.minutes / t_step))
    print(f"probe: {t_step * 1000:.1f} ms a step; the run: {steps} steps", file=sys.stderr)
    soaked = soak(corpus, root / "soaked", steps, args, rng)
    extra = ["--steps", str(soaked["steps"])]
    if soaked["decay_steps"]:
        extra += ["--decay_steps", str(soaked["decay_steps"])]
    t = time.time()
    r = run(command(corpus, root / "reference", *extra), root / "reference.log")
    if r.returncode != 0:
        sys.exit(f"the reference run failed; see {root / 'reference.log'}")
    ref_s = time.time() - t
    result = compare(root / "soaked", root / "reference")
    kills = soaked["kills"]
    by = {s: sum(k["signal"] == s for k in kills) for s in ("SIGKILL", "SIGTERM", "SIGINT")}
    ok = result["params"] and result["opt_state"] and result["losses"] and result["sample"]
    statuses_ok = all(k["ok"] for k in kills)
    shown = " ".join(command(corpus, root / "soaked", "--resume")[2:])
    decay = soaked["decay_steps"] or soaked["steps"]
    signals = ", ".join(f"{n} × {s}" for s, n in by.items())
    print(f"## Soak: {len(kills)} kills, {soaked['seconds'] / 60:.1f} min\n")
    print(f"- command: `python {shown}`")
    params = f"{result['n_params']:,} parameters"
    print(f"- model: {params}; {soaked['steps']} steps (decay_steps {decay})")
    print(f"- a step: {t_step * 1000:.1f} ms in the probe run")
    print(f"- soaked run: {soaked['seconds'] / 60:.1f} min; the reference: {ref_s / 60:.1f} min")
    print(f"- kills: {signals}; seed {args.seed}; exit statuses as expected: {statuses_ok}")
    print(f"- final params bit-identical: {result['params']}")
    print(f"- final optimizer state bit-identical: {result['opt_state']}")
    print(f"- all {result['n_losses']} per-step losses identical: {result['losses']}")
    print(f"- final sample identical: {result['sample']}\n")
    print("| # | at (s) | signal | after (s) | exit | last metrics step | checkpoint after |")
    print("|---|---|---|---|---|---|---|")
    for i, k in enumerate(kills, 1):
        cells = [i, k["t"], k["signal"], k["delay"], k["rc"], k["metrics_step"], k["checkpoint"]]
        print("| " + " | ".join(map(str, cells)) + " |")
    return 0 if ok and statuses_ok else 1


if __name__ == "__main__":
    sys.exit(main())
