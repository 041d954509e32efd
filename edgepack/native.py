"""Native libraries (MNN, ncnn, LiteRT, TensorFlow) print to file descriptors 1 and 2, which
would mix with edgepack's tables and progress. This moves such output into the debug log."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def captured_native_output(subject: str, fds: tuple[int, ...] = (1,)) -> Iterator[None]:
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    with tempfile.TemporaryFile(mode="w+b") as sink:
        for fd in fds:
            os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text = sink.read().decode(errors="replace").strip()
            if text:
                log.debug("%s printed:\n%s", subject, text)


def captured_native_stdout(subject: str) -> contextlib.AbstractContextManager[None]:
    return captured_native_output(subject, (1,))


def quiet_tensorflow() -> None:
    """TensorFlow/LiteRT/absl log levels, set before they are imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
