"""The ``jaxformer`` command: one sub-command per capability."""

from __future__ import annotations

import argparse
import sys


def _train(args: argparse.Namespace) -> int:
    print(
        "jaxformer train: not yet available (the training pipeline has not landed); "
        "nothing was trained.",
        file=sys.stderr,
    )
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxformer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model on a text corpus")
    train.set_defaults(run=_train)
    try:
        from .tokenizer.cli import add_parser as add_tokenizer
    except ImportError:  # the tokenizer sub-command is optional until it lands
        add_tokenizer = None
    if add_tokenizer is not None:
        add_tokenizer(sub)
    args, extra = parser.parse_known_args(argv)
    args.extra = extra
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
