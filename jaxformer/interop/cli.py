"""``jaxformer convert``: a run or an HF directory → an HF directory, or an HF directory → a run.

    jaxformer convert --to-hf runs/default --out hf/default
    jaxformer convert --from-hf hf/default --out runs/imported
    jaxformer convert --to-peft runs/tuned-lora --out peft/tuned   # a LoRA run's adapters

``--to-hf SOURCE`` writes ``config.json``, ``model.safetensors``, ``tokenizer.json`` and their
``SHA256SUMS`` from SOURCE's latest checkpoint (verified first); SOURCE is a training run or
an HF directory (``load_checkpoint``). ``AutoModelForCausalLM`` and ``AutoTokenizer`` open
the result. ``--from-hf HF_DIR`` writes a run directory (``rundir.write_run``): its model
config, its tokenizer, and the weights as checkpoint 0 (no optimizer state), which
``sample``, ``eval``, ``describe`` and ``convert --to-hf`` read. ``--to-peft RUN_DIR`` writes
a LoRA run's adapters as an HF PEFT adapter (``adapters.to_peft``), which
``PeftModel.from_pretrained`` loads onto the run's ``--init-from`` model. An existing
``--out`` is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="export a run as an HF checkpoint, or import an HF checkpoint as a run"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--to-hf",
        type=Path,
        metavar="RUN_DIR|HF_DIR",
        help="the training run (its latest checkpoint) or HF directory to export",
    )
    src.add_argument(
        "--to-peft",
        type=Path,
        metavar="RUN_DIR",
        help="a LoRA run (--lora_rank): its adapters as an HF PEFT adapter for its --init-from",
    )
    src.add_argument(
        "--from-hf",
        type=Path,
        metavar="HF_DIR",
        help="the HF directory (config.json, *.safetensors, tokenizer.json) to import as a run",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(run=convert)  # fmt: skip


def _to_peft(run: Path, out: Path) -> str:
    """A LoRA run's adapters → ``out`` as an HF PEFT adapter (``adapters.to_peft``)."""
    from ..models.lora import LoRA
    from ..rundir_load import is_hf_config, load_trained, read_configs
    from .adapters import to_peft

    if is_hf_config(run / "config.json"):
        raise ValueError(f"--to-peft {run}: an HF directory holds no adapters; pass a LoRA run")
    _, model, params, _ = load_trained(run)
    if not isinstance(model, LoRA):
        raise ValueError(
            f"--to-peft {run}: the run trained every parameter, not LoRA adapters (no "
            "--lora_rank); export it whole with --to-hf"
        )
    base = read_configs(run)[0].get("init_from", "")
    to_peft(model, params, out, base_model=base)
    return "adapter_config.json, adapter_model.safetensors, SHA256SUMS"


def convert(args: argparse.Namespace) -> int:
    try:
        out: Path = args.out
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out}: is a file; pass a directory to write the export to")
        if out.is_dir() and any(out.iterdir()) and not args.overwrite:
            raise ValueError(
                f"--out {out} exists and is not empty; pass --overwrite to replace it, or "
                "another --out"
            )
        source = args.to_hf or args.from_hf or args.to_peft
        if source.resolve() == out.resolve():
            raise ValueError(f"--out {out} is the directory read; pass another --out")
        from ..models import build
        from ..rundir import write_run
        from .hf import to_hf
        from .load import is_hf_dir, load_checkpoint

        if args.to_peft is not None:
            wrote = _to_peft(source, out)
        elif args.from_hf is not None:
            if not is_hf_dir(source):
                raise ValueError(
                    f"--from-hf {source}: not a Hugging Face model directory (no config.json "
                    "naming a model_type); pass a save_pretrained directory"
                )
            config, params, tok = load_checkpoint(source)
            origin = {"converted_from": str(source.resolve())}
            write_run(out, config, params, tok, origin, overwrite=args.overwrite)
            wrote = "config.json, tokenizer/, checkpoints/0, SHA256SUMS"
        else:
            config, params, tok = load_checkpoint(source, tokenizer=False)
            to_hf(build(config), params, out, tokenizer=tok, overwrite=args.overwrite)
            wrote = "config.json, model.safetensors" + (", tokenizer.json" if tok else "")
            wrote += ", SHA256SUMS"
    except ValueError as e:
        print(f"jaxformer convert: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None and e.strerror is None:  # from_hf's: the message says it all
            print(f"jaxformer convert: error: {e}", file=sys.stderr)
            return 2
        where = f" {e.filename}" if e.filename else ""
        print(f"jaxformer convert: error: cannot write{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {wrote}")
    return 0
