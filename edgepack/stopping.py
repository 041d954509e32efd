"""Ctrl-C and SIGTERM (CI cancellation, `timeout`, `docker stop`) stop a run by raising in the main thread,
so that every `finally` on the way out cleans up: the staging folder, the work folder, the workers.

Raising at whatever instruction the main thread is on is not always safe, because native code calls back
into Python:
- inside an import, a C extension's initialisation may be running Python code (onnx's nanobind enums); an
  exception there makes the extension call std::terminate: SIGABRT, and the staging folder is left behind.
  While an import runs, the handler only records the request and sends the signal again 50 ms later.
- native code may swallow the exception (onnxsim's constant folding catches errors of its Python callback
  and goes on). The request stays recorded, and `checkpoint()`, called at every progress step, raises it
  again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

RETRY_SECONDS = 0.05


class Terminated(KeyboardInterrupt):
    """SIGTERM: cleaned up like Ctrl-C, exit code 143 instead of 130."""


_pending: int | None = None  # the signal that asked this run to stop, until the run is over
_raised = False  # the stop is on its way out: cleanup must not be interrupted by another one
_installed = False
_resend_lock = threading.Lock()  # a re-sent signal never reaches the handlers restored after the run


def _stop_exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _importing(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _send_again(signum: int) -> None:
    with _resend_lock:
        if _installed and _pending is not None and not _raised:
            os.kill(os.getpid(), signum)


def _raise(signum: int) -> None:
    global _raised
    _raised = True
    raise _stop_exception(signum)


def _on_stop_signal(signum: int, frame) -> None:
    global _pending
    if _raised:  # a second Ctrl-C, or a retry, while the first stop is cleaning up
        return
    _pending = signum
    if _importing(frame):
        retry = threading.Timer(RETRY_SECONDS, _send_again, (signum,))
        retry.daemon = True
        retry.start()
        return
    _raise(signum)


def checkpoint() -> None:
    """Raise the stop that a signal asked for, if native code swallowed it or an import delayed it."""
    if _pending is not None:
        _raise(_pending)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """For the length of a command (main thread only): SIGINT and SIGTERM raise as described above."""
    global _pending, _raised, _installed
    _pending, _raised, _installed = None, False, True
    previous = {sig: signal.signal(sig, _on_stop_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
        checkpoint()  # a stop that arrived after the last progress step
    except BaseException as e:
        # a tool killed by the same Ctrl-C, or native code that turned the interrupt into its own
        # error: the exit code is still the stop's
        if _pending is not None and not isinstance(e, KeyboardInterrupt):
            raise _stop_exception(_pending) from e
        raise
    finally:
        with _resend_lock:
            _installed = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _pending, _raised = None, False
