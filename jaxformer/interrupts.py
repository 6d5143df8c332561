"""Ctrl-C that never breaks an import: the SIGINT handling of the ``jaxformer`` command.

Python raises KeyboardInterrupt wherever the main thread is; inside an import (of jax,
say) that leaves a C extension initialised half-way, and the interpreter may then crash
on the way out. So a Ctrl-C that lands in an import is held until the import is done.

    deferred_while_importing()   context: the package's own import (``jaxformer/__init__``)
    on_sigint                    the command's handler, from ``cli.main`` on

Standard library only: this runs before anything else of jaxformer is imported.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading


class _pending:
    now = False  # a Ctrl-C not yet seen through to its exit


def on_sigint(signum, frame) -> None:
    """Ctrl-C: KeyboardInterrupt, but never inside an import: there it comes again 50 ms
    later. And again every half second until the command ends, since a callback (such as
    the garbage collector's) may swallow it."""
    _pending.now = True
    f = frame
    while f is not None:
        if f.f_code.co_filename.startswith("<frozen importlib"):
            _again(0.05)
            return
        f = f.f_back
    _again(0.5)
    raise KeyboardInterrupt


def settled() -> None:
    """The command has ended: stop re-sending a Ctrl-C."""
    _pending.now = False


def _again(seconds: float) -> None:
    def fire():
        if _pending.now:
            _thread.interrupt_main(signal.SIGINT)

    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()


def _is_the_command() -> bool:
    """This process is ``jaxformer …`` or ``python -m jaxformer.…`` (while ``-m`` resolves
    its module, argv[0] is "-m")."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    return name in ("jaxformer", "-m")


@contextlib.contextmanager
def deferred_while_importing():
    """Hold a Ctrl-C that arrives during the block; once it is done, the command exits 130
    with one line (nothing is written yet), a library user gets the KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda *_: held.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        if _is_the_command():
            print("\njaxformer: interrupted", file=sys.stderr, flush=True)
            os._exit(130)
        raise KeyboardInterrupt
