"""ONNX intake: read, check the input and the ops, fix the shape, simplify."""

from __future__ import annotations

import logging
from pathlib import Path

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
        if domain in ("", "ai.onnx") and onnx.defs.has(node.op_type):
            continue
        where = f"node '{node.name}'" if node.name else f"a node producing '{node.output[0]}'"
        raise SourceError(
            f"unsupported op {node.op_type}{f' (domain {domain})' if domain else ''} at {where}",
            "export the model with standard ONNX ops only (replace or remove that layer)",
        )


def canonicalize(model, spec: ModelSpec, workdir: Path, *, source: str, kind: str, source_sha256: str) -> CanonicalModel:
    """Fix the input shape, simplify with onnxsim, and write `workdir/model.onnx`."""
    import onnx
    import onnxsim

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
        simplified, ok = onnxsim.simplify(model, overwrite_input_shapes={inp.name: list(shape)})
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
    output_shapes = []
    for o in outputs:
        d = _dims(o)
        if not all(isinstance(x, int) for x in d):
            raise SourceError(f"output '{o.name}' still has a dynamic shape {d} after fixing the input shape")
        output_shapes.append(tuple(int(x) for x in d))
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
