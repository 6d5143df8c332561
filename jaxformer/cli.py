"""The ``jaxformer`` command: one sub-command per capability.

Each capability registers its sub-commands from its own module through
``add_parser(subparsers)``; a handler stores itself as ``run`` and returns the
exit status: 0, 2 for input it refuses (one line naming the value and the fix), 130
after Ctrl-C. Tracebacks are for bugs.

Every parser here is a ``Parser``: its errors are one line (exit 2), a flag may be
spelled ``--a_b`` or ``--a-b``, and an unknown flag gets the nearest known one as a hint.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import signal
import sys
import threading

from . import interrupts

COMMANDS = (
    "jaxformer.train.cli",  # train
    "jaxformer.generate.cli",  # sample
    "jaxformer.tokenizer.cli",  # tokenizer train|encode|decode
    "jaxformer.describe.cli",  # describe
    "jaxformer.interop.cli",  # convert
    "jaxformer.evaluation.cli",  # eval
    "jaxformer.sae.cli",  # sae train
)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, both spellings of a flag, and hints."""

    _innermost: Parser | None = None  # the last (sub-)parser that read arguments

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")

    def parse_known_args(self, args=None, namespace=None):
        Parser._innermost = self
        args = sys.argv[1:] if args is None else list(args)
        if "--" in args:
            i = args.index("--")
            args = [self._spelled(a) for a in args[:i]] + args[i:]
        else:
            args = [self._spelled(a) for a in args]
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            inner = Parser._innermost or self
            inner.error(f"unrecognized arguments: {' '.join(extras)}{inner._hint(extras)}")
        return namespace

    def _spelled(self, arg: str) -> str:
        """``--a-b`` for ``--a_b`` (or the other way) where only that spelling is known."""
        if not arg.startswith("--") or arg == "--":
            return arg
        name, eq, value = arg.partition("=")
        known = self._option_string_actions
        if name in known or any(o.startswith(name) for o in known):
            return arg
        for alt in (name[:2] + name[2:].replace("_", "-"), name[:2] + name[2:].replace("-", "_")):
            matches = {o for o in known if o == alt} or {o for o in known if o.startswith(alt)}
            if len(matches) == 1:
                return matches.pop() + eq + value
        return arg

    def _hint(self, extras: list[str]) -> str:
        flags = [a.partition("=")[0] for a in extras if a.startswith("--")]
        known = [o for o in self._option_string_actions if o.startswith("--")]
        norm = lambda o: o.replace("-", "_")
        for flag in flags:
            close = difflib.get_close_matches(norm(flag), [norm(o) for o in known], n=1)
            if close:
                return f" (did you mean {next(o for o in known if norm(o) == close[0])}?)"
        return ""


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="jaxformer", description="jaxformer: maps to language models")
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
    """Run ``jaxformer ARGV`` (``sys.argv`` when None, as the installed command does)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, interrupts.on_sigint)
    try:
        args = parser().parse_args(argv)
        code = int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("\njaxformer: interrupted", file=sys.stderr)
        code = 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        interrupts.settled()
    if code == 130 and argv is None:
        # After Ctrl-C, XLA's and orbax's threads may be mid-call: tearing the interpreter
        # down around them can crash (SIGSEGV). Everything worth keeping is on disk.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return code


if __name__ == "__main__":
    sys.exit(main())
