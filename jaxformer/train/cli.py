"""``jaxformer train``: a preset, ``--key value`` overrides, and the loop.

jaxformer train                                  # the default preset (what `make train` runs)
jaxformer train --preset tiny --steps 100        # a preset with overrides
jaxformer train --data my_texts/ --out runs/mine --lr 1e-3
jaxformer train --out runs/mine --resume         # continue where it stopped (SIGTERM, Ctrl-C, kill)
jaxformer train --out runs/mine --resume --steps 2000   # train a finished run further
jaxformer train --init-from gpt2-dir/ --data my_texts/   # fine-tune a pretrained model
jaxformer train --mesh data=2,fsdp=2,tensor=2    # on 8 devices: data, FSDP and tensor parallel
jaxformer train --coordinator HOST:PORT --num-processes N --process-id I   # on each of N hosts
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .config import (
    HINTS,
    MIN_EVAL_TOKENS,
    PRESETS,
    ConfigError,
    TrainConfig,
    base_type,
    parse_value,
)

HELP = {
    "data": "a UTF-8 text file or a folder of them (default: the bundled Shakespeare)",
    "tokenizer": "a tokenizer directory to load (default: train a BPE on the train split)",
    "vocab_size": "the BPE vocabulary to train",
    "init_from": "start from a pretrained model: an HF directory (save_pretrained's) or a "
    "run; its weights, model and tokenizer (the data is tokenized with it), with the "
    "finetune preset's settings unless --preset is given",
    "lora_rank": "train LoRA adapters of this rank alone, W = W0 + (alpha/r) A B on "
    "--lora_targets (needs --init-from; 0 = off)",
    "lora_alpha": "the LoRA scale's numerator: the adapters add (alpha/r) A B",
    "lora_targets": "the matrices LoRA adapts: names (W_Q, W_V, W_O, W_in, ...) or dotted "
    "globs, comma-separated",
    "freeze": "keep the parameters whose dotted path matches a glob fixed, e.g. --freeze "
    "'embed.*' 'pos.*' (no update, no optimizer state; blocks.* is every layer's)",
    "val_fraction": "the tail of the text held out for validation",
    "family": "the model family (models/families: gpt2, llama, ...)",
    "n_kv_heads": "key/value heads G (grouped-query attention; none = n_heads)",
    "d_head": "the head dimension k (none = d_model / n_heads)",
    "d_mlp": "the MLP width m (none = the family's default)",
    "context": "the model's context T, also the training sequence length",
    "batch_size": "sequences per step (over all micro-batches)",
    "micro_batches": "gradient accumulation: split each batch into this many micro-batches",
    "steps": "the length of the run and of its learning-rate schedule (0 = as long as "
    "--max_minutes allows)",
    "schedule": "wsd: linear warmup, constant --lr, then a 1 - sqrt decay to --min_lr over "
    "the last --decay_share of the run; with --steps 0 the decay starts when that share of "
    "--max_minutes is left, its length set from the measured speed to end with the budget. "
    "cosine: warmup, then a cosine over --steps (or over the steps estimated to fit)",
    "decay_share": "wsd: the decay's share of the run, in (0, 1): of --steps, or of "
    "--max_minutes' time when --steps is 0",
    "lr": "peak learning rate (after the linear warmup of --warmup_steps)",
    "min_lr": "the learning rate the schedule decays to",
    "weight_decay": "AdamW weight decay, on the matrices W_* only",
    "grad_clip": "clip the gradient's global norm to this (0 = off)",
    "compute_dtype": "float32 or bfloat16 (f32 master weights either way)",
    "remat": "recompute activations in the backward pass: none, full, dots or names",
    "max_minutes": "the training time budget, evals included (0 = none): with --steps 0 the "
    "run fills it (a wsd run ends with its decay, at most --decay_share over when the "
    "machine slows down); with --steps N it stops a run that takes longer",
    "eval_batches": f"batches per periodic eval, raised to hold {MIN_EVAL_TOKENS:,} val tokens "
    "(a fixed subset, or all of val); the final eval reads all of val",
    "decay_steps": "the LR schedule's length (0 = --steps); a run continued with --resume "
    "--steps N keeps its schedule, then stays at --min_lr",
    "seed": "the seed of the init and of the batches, in [0, 2**32)",
    "temperature": "sampling temperature of the final sample (0 = greedy)",
    "prompt": "the final sample's prompt (default: the first line of the val text)",
    "out": "the run directory (default: runs/<name>)",
    "cache": "where tokenizers and token files are cached",
    "progress": "show the progress bar",
    "mesh": "the device mesh, e.g. data=2,fsdp=2,tensor=2 or data=2,expert=4 (default: "
    "every device on data)",
    "n_layers": "the blocks L",
    "d_model": "the residual stream's width d",
    "n_heads": "attention heads H",
    "sliding_window": "local attention: each position sees this many (none = all)",
    "attention": "dense, blockwise (online softmax over key blocks) or auto (by T)",
    "n_experts": "mixtral, qwen3_moe: each MLP a mixture of E experts of width d_mlp",
    "top_k": "the experts each token uses",
    "norm_topk": "renormalise the k chosen gates to sum to 1",
    "balance_weight": "the load-balancing loss' weight, per layer (Switch: E Σ f_e P̄_e)",
    "z_weight": "the router z-loss' weight, per layer (mean (logsumexp x W_R)²)",
    "capacity_factor": "on an expert mesh axis, each device sends each other at most "
    "⌈c·N·k/P⌉ of its N·k (token, expert) pairs, dropping the rest (0 = no limit)",
    "warmup_steps": "the linear warmup's steps",
    "eval_every": "steps between evals of the val loss",
    "checkpoint_every": "steps between checkpoints",
}


def add_parser(subparsers) -> None:
    presets = "\n".join(
        f"  {name:<11} {', '.join(f'{k}={v}' for k, v in p.items()) or '(the defaults below)'}"
        for name, p in PRESETS.items()
    )
    p = subparsers.add_parser(
        "train",
        help="train a model on a text corpus",
        description=__doc__,
        usage="jaxformer train [--preset NAME] [--resume | --overwrite] [--KEY VALUE ...]\n"
        "       [--coordinator HOST:PORT --num-processes N --process-id I]",
        epilog=f"presets:\n{presets}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset",
        help="start from this preset (default: default, or finetune with --init-from)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest intact checkpoint (or start it); "
        "with --steps N, train a finished run further",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    hosts = p.add_argument_group(
        "many processes",
        "every process runs the same command with its own --process-id\n"
        "(or sets JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID)",
    )
    hosts.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="process 0's address and a free port; auto on a TPU slice, SLURM or Open MPI",
    )
    hosts.add_argument("--num-processes", type=int, metavar="N", help="how many processes")
    hosts.add_argument("--process-id", type=int, metavar="I", help="this process: 0 … N-1")
    settings = p.add_argument_group("settings (each overrides the preset; defaults shown)")
    for f in dataclasses.fields(TrainConfig):
        default = f" (default: {f.default!r})" if f.default != "" else ""
        settings.add_argument(
            f"--{f.name}",
            dest=f"set_{f.name}",
            default=argparse.SUPPRESS,
            metavar=_METAVARS.get(f.name, base_type(HINTS[f.name]).__name__.upper()),
            type=_parser(f.name),
            help=f"{HELP.get(f.name, '')}{default}".lstrip(),
            **({"nargs": "+", "action": _Joined} if f.name == "freeze" else {}),
        )
    p.set_defaults(run=run)


_METAVARS = {"init_from": "DIR", "freeze": "GLOB"}


class _Joined(argparse.Action):
    """``--freeze a b,c`` ↦ "a,b,c": one setting, the globs comma-separated."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, ",".join(values))


def _parser(key: str):
    def parse(text: str):
        try:
            return parse_value(key, text)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = key
    return parse


def preset_of(preset: str | None, overrides: dict) -> str:
    """The preset a command means: ``--preset``, else finetune with --init-from, else default."""
    return preset or ("finetune" if overrides.get("init_from") else "default")


def run(args: argparse.Namespace) -> int:
    from .preempt import Preemption

    with Preemption() as stop:  # from here on SIGTERM means: checkpoint, then exit 0
        return _run(args, stop)


def _run(args: argparse.Namespace, stop) -> int:
    from .process import keep_freed_memory

    keep_freed_memory()  # before JAX's threads first allocate
    from ..parallel import DistributedError, MeshError, initialize  # jax loads only here
    from . import checkpoint, data, loop, resolve

    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("set_")}
    args.preset = preset_of(args.preset, overrides)
    errors = (ConfigError, data.DataError, checkpoint.CheckpointError)
    errors += (MeshError, DistributedError)  # the mesh, the processes
    run_dir = resolve.run_dir_of(args.preset, overrides)
    try:
        # before anything runs on a device: JAX must know all processes first
        initialize(args.coordinator, args.num_processes, args.process_id)
        cfg, mode = resolve.resolve(args.preset, overrides, args.resume, args.overwrite)
        if mode == "done":
            return 0
        loop.train(cfg, resume=mode == "resume", stop=stop)
    except errors as e:
        print(f"jaxformer train: error: {e}", file=sys.stderr)
        return 2
    except loop.Diverged as e:
        print(f"jaxformer train: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the file system refused: a path, a permission, a full disk
        print(f"jaxformer train: error: {os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        steps = checkpoint.complete_steps(run_dir)
        how = (
            f"the last checkpoint is step {steps[-1]}: continue with "
            f"`jaxformer train --out {run_dir} --resume`"
            if steps
            else "no checkpoint was written yet: run the same command again to start over"
        )
        print(f"\njaxformer train: interrupted; {how}", file=sys.stderr)
        return 130
    return 0


def os_error(e: OSError) -> str:
    """An OSError as one line: what failed, on which path, and what to check."""
    where = f" {e.filename}" if e.filename else ""
    return f"cannot write or read{where}: {e.strerror or e}; check the path and its permissions"
