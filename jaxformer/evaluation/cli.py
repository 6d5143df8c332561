"""``jaxformer eval``: a checkpoint's loss on a text, perplexity and bits per byte.

    jaxformer eval --checkpoint runs/shakespeare --data held_out.txt
    jaxformer eval --checkpoint hf/gpt2 --data wiki/ --context 512 --stride 256 --json

``--checkpoint`` is a training run or an HF directory with its tokenizer
(``interop.load_checkpoint``); ``--data`` a UTF-8 file or a folder of them (as ``train``
reads it). Prints the loss in nats per token, the perplexity, bits per byte beside bzip2
-9's on the same text, and tokens/s; ``--json``: one JSON object on stdout instead
(``Result``). The bar (tqdm) goes to stderr, on a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="a checkpoint's loss, perplexity and bits per byte on a text",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint", required=True, type=Path, metavar="RUN_DIR|HF_DIR",
        help="a training run directory, or an HF directory with its tokenizer",
    )  # fmt: skip
    p.add_argument(
        "--data", required=True, type=Path, metavar="FILE_OR_DIR",
        help="a UTF-8 text file, or a folder of them (joined by blank lines, sorted by path)",
    )  # fmt: skip
    p.add_argument(
        "--context", type=int, default=None,
        help="the window length in tokens, at most the model's (default: the model's context)",
    )  # fmt: skip
    p.add_argument(
        "--stride", type=int, default=None,
        help="tokens between window starts, in [1, --context]; each window scores only the "
        "tokens the previous one did not (default: --context, disjoint windows)",
    )  # fmt: skip
    p.add_argument("--batch_size", type=int, default=8, help="windows per forward pass (8)")
    p.add_argument(
        "--max_tokens", type=int, default=None, help="evaluate the text's first N tokens only"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    p.add_argument(
        "--progress", choices=("true", "false"), default="true",
        help="show the progress bar on a terminal (default: true)",
    )  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ..interop import load_checkpoint
        from ..train.data import read_text
        from .perplexity import check_settings, evaluate

        check_settings(args.context, args.stride, args.batch_size, args.max_tokens)
        _check_paths(args)  # all before the weights: a bad flag costs no load

        text = read_text(args.data)
        config, params, tokenizer = load_checkpoint(args.checkpoint)
        r = evaluate(
            config, params, tokenizer, text, context=args.context, stride=args.stride,
            batch_size=args.batch_size, max_tokens=args.max_tokens,
            progress=args.progress == "true",
        )  # fmt: skip
    except ValueError as e:  # CheckpointError, DataError too
        print(f"jaxformer eval: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None and e.strerror is None:  # from_hf's: the message says it all
            print(f"jaxformer eval: error: {e}", file=sys.stderr)
        else:
            print(f"jaxformer eval: error: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "data": str(args.data),
                          **r.to_dict()}))  # fmt: skip
        return 0
    verdict = "below" if r.bits_per_byte < r.bzip2_bits_per_byte else "NOT below"
    print(
        f"eval   {args.checkpoint} on {args.data}: {r.tokens:,} tokens scored of "
        f"{r.text_tokens:,} ({r.windows:,} windows of {r.context}, stride {r.stride})\n"
        f"loss   {r.loss:.4f} nats/token   perplexity {r.perplexity:.3f}\n"
        f"bytes  {r.bits_per_byte:.4f} bits/byte, {verdict} bzip2 -9's "
        f"{r.bzip2_bits_per_byte:.4f} on the same text\n"
        f"speed  {r.tokens_per_s:,.0f} tokens/s ({r.seconds:.2f} s, after "
        f"{r.compile_seconds:.2f} s compiling)"
    )
    return 0


def _check_paths(args: argparse.Namespace) -> None:
    """The paths exist (read, and checked in full, later)."""
    if not args.data.exists():
        raise ValueError(f"--data {str(args.data)!r}: no such file or folder; pass a text file")
    if args.data.suffix.lower() in (".jsonl", ".ndjson"):  # its JSON would be scored as text
        raise ValueError(
            f"--data {str(args.data)!r}: eval scores plain text, not JSONL documents (a run "
            "trained on them reports their val loss); pass a text file"
        )
    if not args.checkpoint.exists():
        raise ValueError(
            f"--checkpoint {str(args.checkpoint)!r}: no such directory; pass a run directory "
            "(jaxformer train --out DIR) or an HF model directory"
        )
