"""ONNX intake: read, check the input and the ops, fix the shape, simplify."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from edgepack.errors import SourceError
from edgepack.sources.base import CanonicalModel
from edgepack.spec import ModelSpec
from edgepack.tools import sha256_file

log = logging.getLogger(__name__)


def _dims(value_info) -> list[int | str]:
    dims: list[int | str] = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?"))
    return dims


def check_ops(model) -> None:
    """Every node must be a standard ONNX op; name the first one that is not."""
    import onnx

    for node in model.graph.node:
        domain = node.domain or ""
        if domain in STANDARD_DOMAINS and onnx.defs.has(node.op_type):
            continue
        where = f"node '{node.name}'" if node.name else f"a node producing '{node.output[0]}'"
        raise SourceError(
            f"unsupported op {node.op_type}{f' (domain {domain})' if domain else ''} at {where}",
            "export the model with standard ONNX ops only (replace or remove that layer)",
        )


STANDARD_DOMAINS = ("", "ai.onnx")
# metadata_props keys other exporters write (Ultralytics: names, imgsz, stride, task, author, license, ...)
METADATA_KEYS = ("names", "imgsz", "stride", "task", "author", "license", "description", "version", "date", "batch")


def read_metadata(model) -> dict:
    """The exporter's metadata_props, parsed as data (never evaluated): labels, input size, task, licence."""
    import ast

    props = {p.key: p.value for p in model.metadata_props}
    meta: dict = {}
    for key in METADATA_KEYS:
        if key in props:
            meta[key] = props[key][:2000]
    names = props.get("names")
    if names:
        try:
            parsed = ast.literal_eval(names)  # a Python dict/list literal, parsed, not run
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            parsed = None
        if isinstance(parsed, dict) and all(isinstance(k, int) for k in parsed):
            parsed = [parsed[k] for k in sorted(parsed)] if sorted(parsed) == list(range(len(parsed))) else None
        if isinstance(parsed, list) and all(isinstance(v, str) for v in parsed):
            meta["labels"] = parsed
    imgsz = props.get("imgsz")
    if imgsz:
        try:
            size = ast.literal_eval(imgsz)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            size = None
        if isinstance(size, int):
            size = [size, size]
        if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and 0 < v <= 8192 for v in size):
            meta["image_size"] = [int(size[0]), int(size[1])]
    character = props.get("character")  # PaddleOCR / RapidAI exports: one class name per line
    if "labels" not in meta and character and len(character) < 200_000:
        names = character.split("\n")
        if all(names) and len(names) <= 10_000:
            meta["labels"] = names
    if props.get("producer") or model.producer_name:
        meta["producer"] = f"{model.producer_name} {model.producer_version}".strip()[:200]
    return meta


def prepare_export(model) -> list[str]:
    """Make exports of other tools (Paddle2ONNX, Ultralytics, tf2onnx, ...) regular before checks:
    drop opset imports of domains no node uses, turn `Constant` weights into initializers, and
    forget declared output shapes (some exporters declare -1 for dims that shape inference knows).
    Returns notes for the log."""
    import onnx
    from onnx import numpy_helper

    notes = []
    used = {n.domain or "" for n in model.graph.node}
    unused = [o for o in model.opset_import if (o.domain or "") not in STANDARD_DOMAINS and o.domain not in used]
    for o in unused:
        model.opset_import.remove(o)
        notes.append(f"dropped unused opset domain {o.domain!r}")
    constants = [n for n in model.graph.node if n.op_type == "Constant" and (n.domain or "") in STANDARD_DOMAINS]
    for node in constants:
        attr = node.attribute[0] if len(node.attribute) == 1 else None
        if attr is None:
            continue
        if attr.name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attr.t)
        elif attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            import numpy as np

            value = onnx.helper.get_attribute_value(attr)
            dtype = np.float32 if "float" in attr.name else np.int64
            tensor = numpy_helper.from_array(np.array(value, dtype=dtype))
        else:
            continue
        tensor.name = node.output[0]
        model.graph.initializer.append(tensor)
        model.graph.node.remove(node)
    if constants:
        notes.append(f"{len(constants)} Constant nodes stored as initializers")
    for output in model.graph.output:
        for i, dim in enumerate(output.type.tensor_type.shape.dim):
            if not dim.dim_param and dim.dim_value <= 0:
                dim.dim_param = f"unknown_{i}"  # re-inferred after the input shape is fixed
    return notes


def _output_shapes(model_path: Path, input_name: str, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The real output shapes, by running the graph once (shape inference cannot always tell)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {input_name: np.zeros(shape, np.float32)})
    return [tuple(int(d) for d in o.shape) for o in outputs]


def onnxsim_simplify() -> Callable[..., Any]:
    """onnxsim's `simplify`, imported without running the package's __init__: onnxsim 0.8 imports
    about a hundred quantization modules and PyTorch there (4 s on the critical path of every ONNX
    build), and its simplifier needs none of them. The stand-in package lives only while the
    simplifier loads; a later `import onnxsim` gets the whole package (tested)."""
    loaded = sys.modules.get("onnxsim.onnx_simplifier")
    if loaded is not None:
        return loaded.simplify
    if "onnxsim" in sys.modules:
        import onnxsim.onnx_simplifier

        return onnxsim.onnx_simplifier.simplify
    spec = importlib.util.find_spec("onnxsim")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("onnxsim is not installed", "reinstall edgepack (pip install edgepack)")
    stand_in = importlib.util.module_from_spec(spec)  # the package object, its __init__ not run
    sys.modules["onnxsim"] = stand_in
    try:
        simplifier = importlib.import_module("onnxsim.onnx_simplifier")
    finally:
        if sys.modules.get("onnxsim") is stand_in:
            del sys.modules["onnxsim"]
    return simplifier.simplify


def canonicalize(model, spec: ModelSpec, workdir: Path, *, source: str, kind: str, source_sha256: str) -> CanonicalModel:
    """Fix the input shape, simplify with onnxsim, and write `workdir/model.onnx`."""
    import onnx

    metadata = read_metadata(model)
    for note in prepare_export(model):
        log.info("%s: %s", source, note)

    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise SourceError(f"model has {len(inputs)} inputs ({names}); edgepack handles one image input")
    inp = inputs[0]
    dims = _dims(inp)
    if len(dims) != 4:
        raise SourceError(f"input '{inp.name}' has rank {len(dims)} ({dims}); an image input is 1,C,H,W")
    dynamic = [d for d in dims if not isinstance(d, int)]
    if spec.input_shape is None and dynamic and "image_size" in metadata and isinstance(dims[1], int):
        # the exporter recorded the size it was trained at (Ultralytics imgsz)
        spec = dataclasses.replace(spec, input_shape=(1, dims[1], *metadata["image_size"]))
        log.info("%s: input size %s from the model's metadata", source, metadata["image_size"])
    if spec.input_shape is None:
        if dynamic:
            shown = ",".join(str(d) for d in dims)
            raise SourceError(f"input '{inp.name}' has a dynamic shape [{shown}]", "pass --input-shape 1,3,H,W")
        shape = tuple(int(d) for d in dims)
    else:
        shape = tuple(spec.input_shape)
        for got, want in zip(dims, shape):
            if isinstance(got, int) and got != want:
                raise SourceError(
                    f"wrong input size: input '{inp.name}' is {dims} but the spec says {list(shape)}",
                    f"use --input-shape {','.join(str(d) for d in dims)} or re-export the model at that size",
                )
    check_ops(model)
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise SourceError(f"{source} is not a valid ONNX model: {str(e).strip().splitlines()[0][:200]}") from None
    try:
        simplified, ok = onnxsim_simplify()(model, overwrite_input_shapes={inp.name: list(shape)})
    except Exception as e:  # onnxsim raises plain exceptions from its C++ core
        raise SourceError(f"onnxsim could not simplify the model: {str(e).splitlines()[0][:200]}") from e
    if not ok:
        raise SourceError("onnxsim produced a graph that does not match the original outputs")
    # Newer onnx writes IR versions that released runtimes reject ("Unsupported model IR
    # version: 14, max supported IR version: 13"); the lowest IR version the opsets allow is
    # what every consumer reads.
    simplified.ir_version = min(simplified.ir_version, onnx.helper.find_min_ir_version_for(simplified.opset_import))
    onnx.checker.check_model(simplified)
    out_path = workdir / "model.onnx"
    onnx.save(simplified, str(out_path))
    outputs = [o for o in simplified.graph.output]
    output_shapes = [tuple(_dims(o)) for o in outputs]
    if not all(isinstance(x, int) for d in output_shapes for x in d) or any(not d for d in output_shapes):
        try:
            output_shapes = _output_shapes(out_path, inp.name, shape)
        except Exception as e:
            raise SourceError(f"cannot run the model to find its output shapes: {str(e).strip().splitlines()[0][:200]}") from None
        for o, d in zip(outputs, output_shapes):
            o.type.tensor_type.ClearField("shape")
            for v in d:
                o.type.tensor_type.shape.dim.add().dim_value = v
        onnx.save(simplified, str(out_path))
    opset = next((o.version for o in simplified.opset_import if o.domain in ("", "ai.onnx")), 0)
    return CanonicalModel(
        onnx_path=out_path,
        input_name=inp.name,
        input_shape=shape,
        output_names=[o.name for o in outputs],
        output_shapes=output_shapes,
        opset=opset,
        source_kind=kind,
        source=source,
        source_sha256=source_sha256,
        metadata=metadata,
    )


def from_onnx_file(path: Path, spec: ModelSpec, workdir: Path) -> CanonicalModel:
    import onnx

    if not path.is_file():
        raise SourceError(f"model file {path} does not exist", "check the path")
    try:
        model = onnx.load(str(path))
    except Exception as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise SourceError(f"cannot read {path}: not a valid ONNX model ({first})", "export the model again") from None
    return canonicalize(model, spec, workdir, source=str(path), kind="onnx", source_sha256=sha256_file(path))
