"""The evaluator's thread count: numpy's bundled OpenBLAS runs its convolutions and matrix
products, and its thread pool is set explicitly around a run (no threadpoolctl dependency); so is
torch's intra-op pool when torch is loaded, as `ops.as_dtype` casts through it."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
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
    """OpenBLAS, and torch if loaded, limited to `threads` inside the block. torch's two spinning
    threads doubled an fp16 program's evaluation time while another build used the other core
    (measured: 0.87 vs 0.43 s per YOLOv8n image)."""
    if threads <= 0:
        yield
        return
    calls = _openblas()
    torch = sys.modules.get("torch")
    previous = int(calls[1]()) if calls is not None else None
    previous_torch = torch.get_num_threads() if torch is not None else None
    if calls is not None:
        calls[0](int(threads))
    if torch is not None and previous_torch != threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if calls is not None:
            calls[0](previous)
        if torch is not None and previous_torch != threads:
            torch.set_num_threads(previous_torch)
