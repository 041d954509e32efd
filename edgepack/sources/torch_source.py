"""PyTorch intake: nn.Module, TorchScript file, `package.module:factory`, built-in example.

PyTorch sources keep their traced TorchScript (pnnx prefers it) and are exported to ONNX with
the TorchScript-based exporter, which honours the requested opset; the opset is read back from
the written file, never assumed.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from edgepack.errors import SourceError
from edgepack.sources.base import CanonicalModel
from edgepack.sources.onnx_source import canonicalize
from edgepack.spec import ModelSpec
from edgepack.tools import sha256_file

log = logging.getLogger(__name__)

ONNX_OPSET = 17
INPUT_NAME = "images"


def _example_input(spec: ModelSpec, example_input: Any, default_shape: tuple[int, ...] | None):
    import torch

    if example_input is not None:
        if tuple(example_input.shape) != tuple(spec.input_shape or example_input.shape):
            raise SourceError(
                f"wrong input size: example input is {list(example_input.shape)} but the spec says {list(spec.input_shape)}"
            )
        return example_input.float()
    shape = spec.input_shape or default_shape
    if shape is None:
        raise SourceError("the PyTorch model has no known input shape", "pass --input-shape 1,3,H,W")
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


def _unsupported_op(message: str) -> str | None:
    found = re.search(r"operator '?([\w:.]+)'? to ONNX", message) or re.search(r"aten::\w+", message)
    if not found:
        return None
    return found.group(1) if found.groups() else found.group(0)


def _export(module: Any, example: Any, workdir: Path, num_outputs: int) -> Path:
    import torch

    path = workdir / "exported.onnx"
    output_names = ["output0"] if num_outputs == 1 else [f"output{i}" for i in range(num_outputs)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(path),
                opset_version=ONNX_OPSET,
                dynamo=False,  # the dynamo exporter may silently write another opset
                input_names=[INPUT_NAME],
                output_names=output_names,
            )
    except Exception as e:
        text = str(e)
        op = _unsupported_op(text)
        if op:
            raise SourceError(
                f"unsupported op {op}: torch cannot export it to ONNX opset {ONNX_OPSET}",
                "replace that operation in the model with standard layers",
            ) from e
        raise SourceError(f"torch.onnx.export failed: {text.strip().splitlines()[0][:200]}") from e
    return path


def _module_digest(module: Any) -> str:
    import torch

    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def from_module(
    module: Any,
    example_input: Any,
    spec: ModelSpec,
    workdir: Path,
    *,
    source_text: str,
    kind: str,
    default_shape: tuple[int, ...] | None = None,
    digest: str | None = None,
) -> CanonicalModel:
    import onnx
    import torch

    if not isinstance(module, torch.nn.Module):
        raise SourceError(f"{source_text} is a {type(module).__name__}, not a torch.nn.Module")
    module = module.eval()
    example = _example_input(spec, example_input, default_shape)
    with torch.no_grad():
        try:
            outputs = module(example)
        except Exception as e:
            raise SourceError(
                f"the model fails on an input of shape {list(example.shape)}: {str(e).splitlines()[0][:160]}",
                "check --input-shape",
            ) from e
        num_outputs = len(outputs) if isinstance(outputs, (tuple, list)) else 1
        try:
            traced = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.trace(module, example)
        except Exception as e:
            raise SourceError(f"torch.jit.trace failed: {str(e).splitlines()[0][:200]}") from e
    ts_path = workdir / "model.pt"
    traced.save(str(ts_path))
    exported = _export(module, example, workdir, num_outputs)
    spec_with_shape = ModelSpec(**{**spec.__dict__, "input_shape": tuple(example.shape)})
    canonical = canonicalize(
        onnx.load(str(exported)),
        spec_with_shape,
        workdir,
        source=source_text,
        kind=kind,
        source_sha256=digest or _module_digest(module),
    )
    canonical.torchscript_path = ts_path
    canonical.torch_module = module
    return canonical


def from_torchscript_file(path: Path, spec: ModelSpec, workdir: Path) -> CanonicalModel:
    import torch

    if not path.is_file():
        raise SourceError(f"model file {path} does not exist", "check the path")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception:
        raise SourceError(
            f"{path} is not a TorchScript file",
            "save it with torch.jit.trace(model, x).save(path), or pass package.module:factory",
        ) from None
    if spec.input_shape is None:
        raise SourceError(f"TorchScript file {path.name} does not record its input shape", "pass --input-shape 1,3,H,W")
    return from_module(module, None, spec, workdir, source_text=str(path), kind="torchscript", digest=sha256_file(path))


def from_factory(text: str, spec: ModelSpec, workdir: Path) -> CanonicalModel:
    module_name, _, attr = text.partition(":")
    # `python -m` puts the current directory on sys.path, a console script does not: a user's
    # package next to them must import the same way under both
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise SourceError(f"cannot import {text}: {e}", "give package.module:factory importable from here") from None
    model = factory()
    shape = getattr(model, "input_shape", None)
    return from_module(model, None, spec, workdir, source_text=text, kind="torch", default_shape=shape)


def from_builtin(name: str, spec: ModelSpec, workdir: Path) -> CanonicalModel:
    from edgepack import builtin

    example = builtin.get_example(name)
    model = example.load()
    return from_module(
        model,
        None,
        spec,
        workdir,
        source_text=f"builtin:{name}",
        kind="builtin",
        default_shape=example.input_shape,
    )
