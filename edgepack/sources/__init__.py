"""Model intake: every source becomes one `CanonicalModel` (a simplified, static-shape ONNX
graph, plus the traced TorchScript module when the source is PyTorch)."""

from edgepack.sources.base import CanonicalModel, load_source

__all__ = ["CanonicalModel", "load_source"]
