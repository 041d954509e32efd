"""Running external tools, recording their versions, and a lock between processes."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

from edgepack.errors import ConversionError

log = logging.getLogger(__name__)


def run_tool(subject: str, argv: Sequence[str], cwd: Path, log_file: Path, timeout: float = 600) -> str:
    """Run one external command, keep its whole output in `log_file`, raise on failure.

    Returns the combined output so callers can look for known failure markers.
    """
    log.info("running %s", " ".join(str(a) for a in argv))
    try:
        proc = subprocess.run(
            [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise ConversionError(f"{subject}: {Path(argv[0]).name} did not finish within {timeout:.0f} s") from None
    output = proc.stdout + proc.stderr
    log_file.write_text(output)
    log.debug("%s output:\n%s", subject, output)
    if proc.returncode != 0:
        tail = " | ".join(line.strip() for line in output.strip().splitlines()[-3:])
        raise ConversionError(f"{subject}: {Path(argv[0]).name} exited {proc.returncode}: {tail} (full log: {log_file})")
    return output


def run_python(subject: str, code: str, args: Sequence[str], cwd: Path, log_file: Path, timeout: float = 600) -> str:
    """Run a snippet in a fresh interpreter: native tools that print to fd 1 or may crash
    (MNN's converter and quantizer) are isolated from the edgepack process this way."""
    return run_tool(subject, [sys.executable, "-c", code, *args], cwd=cwd, log_file=log_file, timeout=timeout)


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an advisory lock on `path` (created, with its folder, when missing) against other
    processes and other opens; the OS releases it if the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
