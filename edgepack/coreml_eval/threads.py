"""The evaluator's BLAS thread count: numpy's bundled OpenBLAS runs its convolutions and matrix
products, and its thread pool is set explicitly around a run (no threadpoolctl dependency)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
from pathlib import Path
from typing import Any, Iterator

import numpy as np

# (set, get) symbol pairs of the OpenBLAS builds numpy wheels bundle (scipy-openblas, 64-bit ints first)
_SYMBOLS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


@functools.cache
def _openblas() -> tuple[Any, Any] | None:
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(libs.glob("libscipy_openblas*.so*")) + sorted(libs.glob("libopenblas*.so*")):
        try:
            lib = ctypes.CDLL(str(path))  # already loaded by numpy: the same library instance
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                return getattr(lib, set_name), getattr(lib, get_name)
    return None


@contextlib.contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """OpenBLAS limited to `threads` inside the block (a no-op when numpy uses another BLAS)."""
    calls = _openblas()
    if calls is None or threads <= 0:
        yield
        return
    set_threads, get_threads = calls
    previous = int(get_threads())
    set_threads(int(threads))
    try:
        yield
    finally:
        set_threads(previous)
