"""The canonical model every target format starts from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.errors import SourceError
from edgepack.spec import BUILTIN_PREFIX, ModelSpec


@dataclass
class CanonicalModel:
    onnx_path: Path  # simplified, static shapes, one image input
    input_name: str
    input_shape: tuple[int, ...]
    output_names: list[str]
    output_shapes: list[tuple[int, ...]]
    opset: int
    source_kind: str  # onnx | torchscript | torch | builtin
    source: str  # what the user gave, for the manifest
    source_sha256: str
    torchscript_path: Path | None = None  # traced module, when the source is PyTorch
    torch_module: Any = None  # the eager module, when there is one (Core ML and TFLite use it)
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # what the exporter recorded: labels, image_size, task, licence
    cache: dict[str, Any] = field(default_factory=dict)  # intermediates shared by the jobs of one build

    @property
    def image_size(self) -> tuple[int, int]:
        return self.input_shape[2], self.input_shape[3]


def through_onnx2torch(model: CanonicalModel) -> bool:
    """Whether the PyTorch-based converters get the canonical ONNX graph converted by onnx2torch."""
    return model.torch_module is None or model.source_kind == "torchscript"


def pytorch_module(model: CanonicalModel) -> Any:
    """The model as an eval-mode torch module, for the converters that start from PyTorch
    (litert-torch, coremltools): the user's own module when there is one, else the canonical
    ONNX graph converted by onnx2torch (ONNX and Keras sources, and TorchScript files: a
    ScriptModule cannot go through torch.export, which litert-torch and coremltools start from)."""
    if not through_onnx2torch(model):
        return model.torch_module.eval()
    if "torch_from_onnx" not in model.cache:
        from edgepack.sources.onnx_to_torch import onnx_to_torch

        model.cache["torch_from_onnx"] = onnx_to_torch(model.onnx_path)
    return model.cache["torch_from_onnx"]


def load_source(model: ModelSpec, workdir: Path, module: Any = None, example_input: Any = None) -> CanonicalModel:
    """Dispatch on what the user gave: an nn.Module, a file, a `module:factory` string or a built-in name."""
    from edgepack.sources import keras_source, onnx_source, torch_source

    if module is not None:
        return torch_source.from_module(module, example_input, model, workdir, source_text=type(module).__name__, kind="torch")
    source = model.source
    if source is None:
        source = BUILTIN_PREFIX + ("shapes-classifier" if model.task == "classify" else "shapes-detector")
    if source.startswith(BUILTIN_PREFIX):
        return torch_source.from_builtin(source[len(BUILTIN_PREFIX):], model, workdir)
    path = Path(source)
    if path.suffix.lower() == ".onnx":
        return onnx_source.from_onnx_file(path, model, workdir)
    if path.suffix.lower() in keras_source.KERAS_SUFFIXES or (path.is_dir() and (path / "saved_model.pb").is_file()):
        return keras_source.from_keras_file(path, model, workdir)
    if path.suffix.lower() in (".pt", ".pth", ".torchscript", ".ts"):
        return torch_source.from_torchscript_file(path, model, workdir)
    if ":" in source and not path.exists():
        return torch_source.from_factory(source, model, workdir)
    if not path.exists():
        raise SourceError(f"model file {source} does not exist", "check the path, or pass package.module:factory")
    raise SourceError(
        f"model file {source} has an unknown type {path.suffix!r}",
        "give an .onnx file, a Keras .keras/.h5 file, a TorchScript .pt file, or package.module:factory",
    )
