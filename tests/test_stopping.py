"""Ctrl-C / SIGTERM semantics of edgepack/stopping.py with real signals to this process: a stop that
native code swallowed still stops the command, another error on the way out keeps the stop's exit
code, and a second signal does not interrupt the cleanup of the first."""

from __future__ import annotations

import os
import signal
import time

import pytest

from edgepack.stopping import Terminated, stop_signals_raise


def sigterm_arrives() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)  # the handler raises during this sleep
    raise AssertionError("the handler did not raise")


def test_a_swallowed_stop_is_raised_when_the_command_ends():
    with pytest.raises(Terminated):
        with stop_signals_raise():
            try:
                sigterm_arrives()
            except Terminated:
                pass  # what onnxsim's C++ does with an exception of its Python callback
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_another_error_on_the_way_out_keeps_the_stops_exit_code():
    with pytest.raises(Terminated) as stopped:
        with stop_signals_raise():
            try:
                sigterm_arrives()
            except Terminated:
                raise RuntimeError("a converter killed by the same signal")
    assert isinstance(stopped.value.__cause__, RuntimeError)


def test_a_second_signal_does_not_interrupt_the_cleanup():
    cleaned = False
    with pytest.raises(KeyboardInterrupt) as stopped:
        with stop_signals_raise():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # e.g. `timeout` after a Ctrl-C
                time.sleep(0.2)
                cleaned = True
    assert cleaned and not isinstance(stopped.value, Terminated)


def test_without_a_signal_nothing_is_raised():
    with stop_signals_raise():
        time.sleep(0.01)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
