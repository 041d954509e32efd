"""Ctrl-C / SIGTERM semantics of edgepack/stopping.py with real signals: a stop that native code
swallowed still stops the command, another error on the way out keeps the stop's exit code, and a
second signal does not interrupt the cleanup of the first. Each case runs in a fresh interpreter: the
signals go to that process, never to the test runner (which hosts dozens of native libraries; a
SIGTERM sent to it during a full run crashed it with SIGSEGV)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PRELUDE = """
import os, signal, time
from edgepack.stopping import Terminated, stop_signals_raise

def sigterm_arrives():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)  # the handler raises during this sleep
    raise AssertionError("the handler did not raise")
"""

CASES = {
    "swallowed": """
try:
    with stop_signals_raise():
        try:
            sigterm_arrives()
        except Terminated:
            pass  # what onnxsim's C++ does with an exception of its Python callback
except Terminated:
    print("stopped", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
""",
    "another-error": """
try:
    with stop_signals_raise():
        try:
            sigterm_arrives()
        except Terminated:
            raise RuntimeError("a converter killed by the same signal")
except Terminated as e:
    print("stopped", type(e.__cause__).__name__)
""",
    "second-signal": """
cleaned = False
try:
    with stop_signals_raise():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # e.g. `timeout` after a Ctrl-C
            time.sleep(0.5)
            cleaned = True
except KeyboardInterrupt as e:
    print("stopped", cleaned, type(e).__name__)
""",
    "no-signal": """
with stop_signals_raise():
    time.sleep(0.01)
print("stopped", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
""",
}


@pytest.mark.parametrize("case, expected", [
    ("swallowed", "stopped True"),  # raised when the command ends; the handlers are restored
    ("another-error", "stopped RuntimeError"),  # Terminated, caused by the other error
    ("second-signal", "stopped True KeyboardInterrupt"),  # the cleanup finished; the first stop's kind
    ("no-signal", "stopped True"),  # nothing raised, handlers restored
])
def test_stop_semantics(case, expected):
    result = subprocess.run([sys.executable, "-c", PRELUDE + CASES[case]], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == expected, (result.stdout, result.stderr[-2000:])
