"""``jaxformer sae train``: a sparse autoencoder on a point of a trained run.

jaxformer sae train --checkpoint runs/default --at blocks.1.resid_post --latents 2048 --k 32
jaxformer sae train --checkpoint runs/default --at blocks.1.mlp --latents 1536 --variant relu --l1 2
jaxformer sae train --checkpoint runs/default --at blocks.1.resid_post --latents 2048 --minutes 5
jaxformer sae train ... --out runs/sae/mine --resume   # continue after SIGTERM or Ctrl-C

The activations come from the run's own training text (or --data), the evals from its
validation split. The SAE lands in OUT/sae (cfg.json, sae.safetensors; jaxformer.sae.load),
the step and eval lines in OUT/metrics.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

from .train import SAETrainConfig

HELP = {
    "at": "the point: embed, or blocks.<l>.<key> with key resid_mid, resid_post, attn, mlp, "
    "ln1, ln2 (e.g. blocks.1.resid_post, layer 1's residual stream after its MLP)",
    "latents": "the SAE's width n (latents)",
    "variant": "topk (with --k), relu (with an --l1 penalty) or jumprelu (with an --l0 penalty)",
    "k": "topk: the latents active per token",
    "l1": "relu: the L1 coefficient (on activations scaled to E‖x‖ = √d)",
    "l0": "jumprelu: the L0 coefficient (on scaled activations)",
    "steps": "training steps (0 = as many as --minutes allows)",
    "minutes": "a time budget in minutes (0 = none); the run ends at --steps or here",
    "batch": "activations per step",
    "lr": "Adam's peak learning rate",
    "warmup": "steps of linear learning-rate warmup",
    "decay_share": "the share of the run over which the rate decays linearly to 0",
    "buffer": "activations the shuffled buffer holds (refilled by halves)",
    "model_batch": "sequences per model trace that fills the buffer",
    "seed": "the seed of the init, the windows and the shuffles",
    "aux": "topk: the aux-k loss' coefficient",
    "k_aux": "topk: latents the aux-k loss uses (0 = d/2)",
    "dead_tokens": "a latent not fired on this many tokens is dead",
    "resample_every": "resample dead latents every N steps (0 = off)",
    "bandwidth": "jumprelu: the pseudo-derivative's bandwidth ε",
    "threshold": "jumprelu: the threshold θ at init",
    "eval_sequences": "validation windows the evals read",
    "eval_every": "steps between evals (0 = at the end only)",
    "checkpoint_every": "steps between checkpoints",
    "log_every": "steps between metrics lines",
    "progress": "show the progress bar",
}


# sae-lens' names for the same settings, accepted too
SAE_LENS = {"at": ["--hook_name"], "latents": ["--d_sae"], "l1": ["--l1_coefficient"],
            "l0": ["--l0_coefficient"], "batch": ["--train_batch_size_tokens"]}  # fmt: skip


def add_parser(subparsers) -> None:
    sae = subparsers.add_parser("sae", help="sparse autoencoders on a model's activations")
    sub = sae.add_subparsers(dest="sae_command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "train",
        help="train an SAE on a point of a run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint", required=True, metavar="RUN", help="a run `jaxformer train` wrote"
    )
    p.add_argument(
        "--out", metavar="DIR", help="where the SAE goes (default: runs/sae/<RUN>.<POINT>)"
    )
    p.add_argument(
        "--data", metavar="PATH", help="text to read activations from (default: the run's)"
    )
    p.add_argument("--resume", action="store_true", help="continue the SAE run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the SAE run in --out")
    for f in dataclasses.fields(SAETrainConfig):
        required = f.default is dataclasses.MISSING
        kind = type(f.default) if not required else (int if f.name == "latents" else str)
        p.add_argument(
            f"--{f.name}", *SAE_LENS.get(f.name, ()), dest=f.name, required=required,
            type=_typed(f.name, kind),
            default=argparse.SUPPRESS, metavar=kind.__name__.upper(),
            help=HELP[f.name] + ("" if required else f" (default: {f.default!r})"),
        )  # fmt: skip
    p.set_defaults(run=run)


def _typed(name: str, kind: type):
    def parse(text: str):
        if kind is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return low in ("1", "true", "yes", "on")
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        try:
            return kind(text)
        except ValueError:
            what = {int: "an integer", float: "a number"}.get(kind, kind.__name__)
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    parse.__name__ = name
    return parse


def run(args: argparse.Namespace) -> int:
    from ..train.preempt import Preemption

    with Preemption() as stop:  # SIGTERM: a checkpoint at the next step, then exit 0
        try:
            return _run(args, stop)
        except KeyboardInterrupt:
            print(f"\njaxformer sae train: interrupted; continue with --resume --out {_out(args)}",
                  file=sys.stderr)  # fmt: skip
            return 130


def _out(args) -> Path:
    return Path(args.out or f"runs/sae/{Path(args.checkpoint).name}.{args.at}")


def _run(args: argparse.Namespace, stop) -> int:
    from ..models import build
    from ..rundir_load import load_for_inference
    from ..train.checkpoint import read_run_config
    from .train import train as train_sae
    from .train import validate

    names = {f.name for f in dataclasses.fields(SAETrainConfig)}
    cfg = SAETrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    out = _out(args)
    try:
        _check_out(out, args.resume, args.overwrite)
        config, params, tok = load_for_inference(args.checkpoint)
        model = build(config)
        validate(cfg, model, config.context)  # before the corpus is read: a typo fails at once
        train_cfg, _ = read_run_config(Path(args.checkpoint))
        corpus = _corpus(train_cfg, tok, args.data)
        source = {"checkpoint": str(args.checkpoint), "data": corpus.source, "at": cfg.at}
        if args.overwrite and out.exists():
            shutil.rmtree(out)
        train_sae(cfg, model, params, corpus.train, corpus.val, out,
                  resume=args.resume, stop=stop, source=source)  # fmt: skip
    except (ValueError, OSError) as e:  # CheckpointError, DataError, SAEFileError: ValueErrors
        print(f"jaxformer sae train: error: {_line(e)}", file=sys.stderr)
        return 2
    return 0


def _line(e: Exception) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"cannot read or write {e.filename}: {e.strerror or e}; check the path"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other; pass one of them")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; choose a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:
        ours = "sae" in json.loads((out / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        ours = False
    if not ours:
        raise ValueError(f"--out {out} is a directory that holds no SAE run; choose another --out")
    if not (resume or overwrite):
        raise ValueError(
            f"--out {out} holds an SAE run; pass --resume to continue it, or --overwrite"
        )


def _corpus(train_cfg, tok, data: str | None):
    """The run's corpus (its token files, tokenized with the run's own tokenizer)."""
    from ..train import data as train_data

    cfg = dataclasses.replace(train_cfg, data=data) if data else train_cfg
    return train_data.prepare(cfg, log=lambda line: print(line, file=sys.stderr), tokenizer=tok)
