"""The ``jaxformer tokenizer`` commands: train (corpus → tokenizer directory), encode
(text → ids) and decode (ids → text).

    jaxformer tokenizer train --input A.txt B.txt --vocab-size 8192 --out runs/tok
    jaxformer tokenizer encode --tokenizer runs/tok --text "hello world"     # ids, one line
    echo "hello world" | jaxformer tokenizer encode --tokenizer gpt2.tiktoken  # 31373 995 198
    jaxformer tokenizer decode --tokenizer gpt2.tiktoken 31373 995             # hello world

``--tokenizer`` takes a directory written by ``Tokenizer.save`` or a bare ``.tiktoken`` ranks
file (with ``--pattern``, and ``<|endoftext|>`` after the ranks). Each handler takes the
parsed namespace and returns an exit status; errors in the input exit with a message.
"""

import argparse
import sys
from pathlib import Path

from .patterns import PATTERNS
from .tokenizer import ENDOFTEXT, Tokenizer


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``tokenizer train|encode|decode``; each stores its handler as ``run``."""
    parser = subparsers.add_parser("tokenizer", help="train a BPE tokenizer, encode, decode")
    commands = parser.add_subparsers(dest="tokenizer_command", required=True)

    train = commands.add_parser("train", help="learn BPE merges from text files")
    train.add_argument(
        "--input",
        nargs="+",
        required=True,
        type=Path,
        metavar="FILE",
        help="UTF-8 text files, each one document",
    )
    train.add_argument(
        "--vocab-size",
        type=int,
        required=True,
        metavar="N",
        help="256 bytes + merges + special tokens",
    )
    train.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="PATH",
        help="directory to write vocab.tiktoken and tokenizer.json to",
    )
    train.add_argument(
        "--pattern", default="gpt2", help=f"pre-tokenization regex or one of {', '.join(PATTERNS)}"
    )
    train.add_argument(
        "--special",
        nargs="*",
        default=[ENDOFTEXT],
        metavar="TOKEN",
        help=f"special tokens, ids after the merges (default: {ENDOFTEXT})",
    )
    train.add_argument("--processes", type=int, default=1, help="parallel pre-token counting")
    train.set_defaults(run=train_command)

    for name, func, what in [
        ("encode", encode_command, "text (--text or stdin) → ids"),
        ("decode", decode_command, "ids (arguments or stdin) → text"),
    ]:
        sub = commands.add_parser(name, help=what)
        sub.add_argument(
            "--tokenizer",
            type=Path,
            required=True,
            metavar="PATH",
            help="a Tokenizer.save directory or a .tiktoken ranks file",
        )
        sub.add_argument(
            "--pattern", default="gpt2", help="pattern for a bare .tiktoken file (default: gpt2)"
        )
        sub.set_defaults(run=func)
        if name == "encode":
            sub.add_argument("--text", help="the text to encode (default: read stdin)")
            sub.add_argument(
                "--allow-special",
                action="store_true",
                help="encode special tokens in the text as their ids",
            )
        else:
            sub.add_argument("ids", nargs="*", help="token ids (default: read stdin)")
    return parser


def train_command(args: argparse.Namespace) -> int:
    texts = (_read(path) for path in args.input)  # one file in memory at a time
    tok = _run(
        lambda: Tokenizer.train(
            texts,
            args.vocab_size,
            args.pattern,
            args.special,
            processes=args.processes,
            progress=True,
        )
    )
    _run(lambda: tok.save(args.out))
    print(f"wrote {args.out}: {tok}", file=sys.stderr)
    return 0


def encode_command(args: argparse.Namespace) -> int:
    tok = _tokenizer(args)
    text = sys.stdin.read() if args.text is None else args.text
    ids = _run(lambda: tok.encode(text, allowed_special="all" if args.allow_special else ()))
    print(" ".join(map(str, ids)))
    return 0


def decode_command(args: argparse.Namespace) -> int:
    tok = _tokenizer(args)
    words = args.ids or sys.stdin.read().split()
    try:
        ids = [int(word) for word in words]
    except ValueError as e:
        raise SystemExit(f"jaxformer tokenizer decode: ids must be integers ({e})") from None
    sys.stdout.write(_run(lambda: tok.decode(ids)))
    return 0


def _tokenizer(args: argparse.Namespace) -> Tokenizer:
    if args.tokenizer.is_dir():
        return _run(lambda: Tokenizer.load(args.tokenizer))
    return _run(lambda: Tokenizer.from_tiktoken_file(args.tokenizer, args.pattern))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SystemExit(f"jaxformer tokenizer train: cannot read {path}: {e}") from None


def _run(thunk):
    # Input errors end the command with their message, not a traceback.
    try:
        return thunk()
    except (OSError, TypeError, ValueError) as e:
        raise SystemExit(f"jaxformer tokenizer: {e}") from None
