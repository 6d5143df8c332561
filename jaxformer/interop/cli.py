"""``jaxformer convert``: a training run → an HF transformers directory.

    jaxformer convert --to-hf runs/default --out hf/default

writes ``config.json``, ``model.safetensors`` and ``tokenizer.json`` from the run's
latest checkpoint; ``AutoModelForCausalLM`` and ``AutoTokenizer`` open the result.
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
    from ..models import build
    from ..rundir import load_for_inference
    from .hf import to_hf

    try:
        config, params, tok = load_for_inference(args.to_hf)
        to_hf(build(config), params, args.out, tokenizer=tok, overwrite=args.overwrite)
    except (OSError, ValueError) as e:
        print(f"jaxformer convert: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: config.json, model.safetensors, tokenizer.json")
    return 0
