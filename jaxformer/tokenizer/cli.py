"""The ``jaxformer tokenizer`` commands: train (corpus → tokenizer directory), encode
(text → ids) and decode (ids → text).

    jaxformer tokenizer train --input A.txt texts/ --vocab-size 8192 --out runs/tok
    jaxformer tokenizer encode --tokenizer runs/tok --text "hello world"     # ids, one line
    echo "hello world" | jaxformer tokenizer encode --tokenizer gpt2.tiktoken  # 31373 995 198
    jaxformer tokenizer decode --tokenizer gpt2.tiktoken 31373 995             # hello world

``--tokenizer`` takes a directory written by ``Tokenizer.save`` or a bare ``.tiktoken`` ranks
file (with ``--pattern``, and ``<|endoftext|>`` after the ranks). ``--input`` takes files and
folders (every file below a folder, in path order, hidden ones left out), each file one
document. Nothing is lost silently: an existing ``--out`` is replaced only with
``--overwrite``, input that is not valid UTF-8 is refused unless ``--errors replace``, and a
special token in the text unless ``--allow-special``. Each handler returns an exit status:
0, or 2 after one line naming the bad value and the fix.
"""

import argparse
import sys
from pathlib import Path

from .patterns import PATTERNS
from .tokenizer import ENDOFTEXT, Tokenizer


class _Refused(Exception):
    """Input this command will not take; the message names it and the fix."""


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
        metavar="PATH",
        help="UTF-8 text files or folders of them, each file one document",
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
    train.add_argument("--overwrite", action="store_true", help="replace a tokenizer in --out")
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
    train.set_defaults(run=_command(train_command, "train"))

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
        sub.set_defaults(run=_command(func, name))
        if name == "encode":
            sub.add_argument("--text", help="the text to encode (default: read stdin)")
            sub.add_argument(
                "--allow-special",
                action="store_true",
                help="encode special tokens in the text as their ids",
            )
            sub.add_argument(
                "--errors",
                choices=("strict", "replace"),
                default="strict",
                help="input that is not valid UTF-8: refuse it (strict, the default) or "
                "replace the bad bytes with U+FFFD",
            )
        else:
            sub.add_argument("ids", nargs="*", help="token ids (default: read stdin)")
    return parser


def _command(func, name: str):
    """``func`` as a handler: a refusal prints one line and returns 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except _Refused as e:
            print(f"jaxformer tokenizer {name}: error: {e}", file=sys.stderr)
            return 2

    run.__name__ = func.__name__
    return run


def train_command(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise _Refused(f"--out {out}: is a file; pass a directory for the tokenizer")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise _Refused(
            f"--out {out} exists and is not empty; pass --overwrite to replace it, or another --out"
        )
    files = _input_files(args.input)
    texts = (_read(path) for path in files)  # one file in memory at a time
    tok = _run(
        lambda: Tokenizer.train(
            texts,
            args.vocab_size,
            args.pattern,
            args.special,
            processes=args.processes,
            progress=sys.stderr.isatty(),  # a bar for a person; none in a log or a pipe
        )
    )
    _run(lambda: tok.save(out))
    print(f"wrote {out}: {tok}", file=sys.stderr)
    return 0


def encode_command(args: argparse.Namespace) -> int:
    tok = _tokenizer(args)
    if args.text is None:
        stdin = sys.stdin  # its bytes: the text layer would decode them with its own errors
        raw = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
        text = _decode(raw, args.errors, "stdin")
    else:
        text = _decode(args.text.encode("utf-8", "surrogateescape"), args.errors, "--text")
    if not args.allow_special and (found := [t for t in tok.special_tokens if t in text]):
        raise _Refused(
            f"the text contains the special token {found[0]!r} at char {text.index(found[0])}; "
            "pass --allow-special to encode it as its id"
        )
    ids = _run(lambda: tok.encode(text, allowed_special="all" if args.allow_special else ()))
    print(" ".join(map(str, ids)))
    return 0


def decode_command(args: argparse.Namespace) -> int:
    tok = _tokenizer(args)
    words = args.ids or sys.stdin.read().split()
    ids = []
    for word in words:
        try:
            ids.append(int(word))
        except ValueError:
            raise _Refused(f"ids must be integers, got {word!r}") from None
    sys.stdout.write(_run(lambda: tok.decode(ids)))
    return 0


def _decode(data: bytes, errors: str, where: str) -> str:
    """UTF-8 bytes as text: invalid bytes are refused, or U+FFFD with ``--errors replace``."""
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as e:
        raise _Refused(
            f"{where} is not valid UTF-8 ({e.reason} at byte {e.start}: "
            f"{data[e.start : e.start + 4]!r}); pass UTF-8 text, or --errors replace to "
            "replace the bad bytes with U+FFFD"
        ) from None


def _tokenizer(args: argparse.Namespace) -> Tokenizer:
    if not args.tokenizer.exists():
        raise _Refused(f"--tokenizer {args.tokenizer}: no such file or directory")
    if args.tokenizer.is_dir():
        return _run(lambda: Tokenizer.load(args.tokenizer))
    return _run(lambda: Tokenizer.from_tiktoken_file(args.tokenizer, args.pattern))


def _input_files(paths: list[Path]) -> list[Path]:
    """The files ``--input`` names: each file, and every visible file below each folder."""
    files = []
    for p in paths:
        if p.is_dir():
            below = sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and not any(s.startswith(".") for s in f.relative_to(p).parts)
            )
            if not below:
                raise _Refused(f"--input {p}: the folder holds no files")
            files += below
        elif p.is_file():
            files.append(p)
        else:
            raise _Refused(f"--input {p}: no such file or folder")
    return files


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise _Refused(
            f"--input {path} is not UTF-8 text ({e.reason} at byte {e.start}); convert it "
            "to UTF-8 or leave it out"
        ) from None
    except OSError as e:
        raise _Refused(f"--input: cannot read {path}: {e.strerror or e}") from None


def _run(thunk):
    # Input errors end the command with their message, not a traceback.
    try:
        return thunk()
    except (OSError, TypeError, ValueError) as e:
        raise _Refused(str(e)) from None
