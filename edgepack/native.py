"""Native libraries (MNN, ncnn) print to file descriptor 1, which would mix with edgepack's
tables on stdout. This moves such output into the debug log instead."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def captured_native_stdout(subject: str) -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace").strip()
            if text:
                log.debug("%s printed:\n%s", subject, text)
