"""Importing coremltools for reading saved packages, or in full for converting.

`import coremltools` imports TensorFlow, PyTorch, ExecuTorch, torchao and scikit-learn to find
out which converter frontends it can offer (8 s on a quiet machine, 40 s on a loaded CI runner);
reading a package and evaluating its program needs none of them. The reader import hides the
frameworks the process has not imported yet, so coremltools records them as absent; a later
converting import in the same process purges that coremltools and imports it again in full.
"""

from __future__ import annotations

import sys
from types import ModuleType

from edgepack.native import captured_native_output, quiet_tensorflow

FRONTEND_FRAMEWORKS = ("tensorflow", "tf_keras", "keras", "torch", "torchao", "executorch", "sklearn", "xgboost", "libsvm")
_readers_only = False


def coremltools_readers() -> ModuleType:
    """coremltools for load_spec, the MIL proto loader and weight files (no converter frontends)."""
    global _readers_only
    if "coremltools" in sys.modules:
        return sys.modules["coremltools"]
    hidden = [name for name in FRONTEND_FRAMEWORKS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError meanwhile
    try:
        with captured_native_output("coremltools import", (1, 2)):  # version warnings, missing macOS proxies
            import coremltools
            import coremltools.converters.mil.frontend.milproto.load  # noqa: F401
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    _readers_only = bool(hidden)
    return coremltools


def coremltools_full() -> ModuleType:
    """coremltools with every converter frontend the environment has."""
    global _readers_only
    if _readers_only:
        for name in [n for n in sys.modules if n == "coremltools" or n.startswith("coremltools.")]:
            del sys.modules[name]
        _readers_only = False
    quiet_tensorflow()
    with captured_native_output("coremltools import", (1, 2)):
        import coremltools
    return coremltools
