"""The ``jaxformer`` command: one sub-command per capability.

Each capability registers its sub-commands from its own module through
``add_parser(subparsers)``; a handler stores itself as ``run`` and returns the
exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = (
    "jaxformer.train.cli",  # train
    "jaxformer.generate.cli",  # sample
    "jaxformer.tokenizer.cli",  # tokenizer train|encode|decode
    "jaxformer.describe.cli",  # describe
    "jaxformer.interop.cli",  # convert
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxformer", description="jaxformer: maps to language models")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if not name.startswith(e.name or "?"):  # a missing dependency, not an absent module
                raise
            continue
        module.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
