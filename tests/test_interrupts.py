"""Ctrl-C at any moment of the command, the first second (jax loading) included: exit 130
with one line, no traceback. The deferral itself, then real SIGINTs at several moments."""

import signal
import subprocess
import sys
import time

import pytest

HOLD = """
import os, signal, sys, time
sys.argv = [{argv0!r}]
from jaxformer.interrupts import deferred_while_importing
with deferred_while_importing():
    os.kill(os.getpid(), signal.SIGINT)  # held: the block goes on to its end
    time.sleep(0.2)
    print("block finished", flush=True)
print("after the block", flush=True)
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_a_ctrl_c_during_the_import_waits_for_it_then_the_command_exits_130():
    r = _run(HOLD.format(argv0="/usr/bin/jaxformer"))
    assert r.returncode == 130, r.stderr
    assert r.stdout == "block finished\n"
    assert r.stderr.strip() == "jaxformer: interrupted"


def test_a_library_user_gets_the_keyboard_interrupt_after_the_import():
    r = _run(HOLD.format(argv0="notebook.py"))
    assert r.stdout == "block finished\n" and "KeyboardInterrupt" in r.stderr
    assert r.returncode != 0


@pytest.mark.parametrize("after", [0.2, 1.0])
def test_ctrl_c_in_the_first_seconds_exits_130_without_a_traceback(after):
    cmd = [sys.executable, "-m", "jaxformer.cli", "describe", "llama-tiny"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode in (130, 0), err  # 0: it had finished before the signal came
    assert "Traceback" not in err, err
    if p.returncode == 130:
        assert err.strip().endswith("jaxformer: interrupted")
