"""``jaxformer convert``: a training run → an HF transformers directory.

    jaxformer convert --to-hf runs/default --out hf/default

writes ``config.json``, ``model.safetensors``, ``tokenizer.json`` and their
``SHA256SUMS`` from the run's latest checkpoint (verified first); ``AutoModelForCausalLM``
and ``AutoTokenizer`` open the result. An existing ``--out`` is replaced only with
``--overwrite``.
(Importing goes through Python: ``model, params = jaxformer.interop.from_hf(dir)``.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("convert", help="export a training run as an HF checkpoint")
    p.add_argument(
        "--to-hf",
        type=Path,
        required=True,
        metavar="RUN_DIR",
        help="the training run to export (its latest checkpoint)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(run=convert)  # fmt: skip


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
        from ..models import build
        from ..rundir import load_for_inference
        from .hf import to_hf

        config, params, tok = load_for_inference(args.to_hf)
        to_hf(build(config), params, out, tokenizer=tok, overwrite=args.overwrite)
    except ValueError as e:
        print(f"jaxformer convert: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"jaxformer convert: error: cannot write{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: config.json, model.safetensors, tokenizer.json, SHA256SUMS")
    return 0
