"""Importing coremltools for reading saved packages, or with its PyTorch frontend for converting.

`import coremltools` imports TensorFlow, PyTorch, ExecuTorch, torchao and scikit-learn to find
out which converter frontends it can offer (28 s measured on this machine; 5.6 s with only torch
visible). Reading a package and evaluating its program needs none of them, and converting needs
only torch (every source reaches Core ML as a torch module). So the import hides the frameworks
the process has not imported yet, and coremltools records them as absent; a converting import
after a reading one purges that coremltools and imports it again with torch visible.
"""

from __future__ import annotations

import sys
from types import ModuleType

from edgepack.native import captured_native_output, quiet_tensorflow

FRONTEND_FRAMEWORKS = ("tensorflow", "tf_keras", "keras", "torch", "torchao", "executorch", "sklearn", "xgboost", "libsvm")
_with_torch: bool | None = None  # whether the loaded coremltools saw torch (None: not loaded by us)


def coremltools_readers() -> ModuleType:
    """coremltools for load_spec, the MIL proto loader and weight files (no converter frontends)."""
    if "coremltools" in sys.modules:
        return sys.modules["coremltools"]
    return _import_hiding(FRONTEND_FRAMEWORKS)


def coremltools_full() -> ModuleType:
    """coremltools with its PyTorch frontend, the only one edgepack converts with (every source
    reaches Core ML as a torch module). The other frameworks stay hidden when this process has not
    imported them yet: TensorFlow and ExecuTorch alone add about 18 s to the import."""
    if "coremltools" in sys.modules and _with_torch is not False:
        return sys.modules["coremltools"]
    for name in [n for n in sys.modules if n == "coremltools" or n.startswith("coremltools.")]:
        del sys.modules[name]  # imported for reading only: again, with torch visible
    import torch  # noqa: F401

    quiet_tensorflow()
    return _import_hiding(tuple(n for n in FRONTEND_FRAMEWORKS if n != "torch"))


def _import_hiding(frameworks: tuple[str, ...]) -> ModuleType:
    """Import coremltools while `import <framework>` raises ImportError for each framework this
    process has not imported yet, so coremltools records them as absent."""
    global _with_torch
    hidden = [name for name in frameworks if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        with captured_native_output("coremltools import", (1, 2)):  # version warnings, missing macOS proxies
            import coremltools
            import coremltools.converters.mil.frontend.milproto.load  # noqa: F401
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    _with_torch = "torch" not in hidden
    return coremltools
