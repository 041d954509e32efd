"""ONNX -> PyTorch (onnx2torch), for the converters that start from a PyTorch module
(litert-torch for TFLite, coremltools for Core ML) when the user gave an ONNX file or a Keras model.

Two adjustments, both to let `torch.export` (used by litert-torch) trace the result:
- PyPI's torchvision wheels cannot load their C++ ops with the CPU build of torch pinned here, and
  onnx2torch imports torchvision only for NonMaxSuppression/RoiAlign. A stand-in module is
  registered for the import; an ONNX graph that uses those two ops is refused by name.
- Some onnx2torch modules read the *values* of constant inputs (Slice starts/ends, Resize
  scales, Split sizes, ...) with `.tolist()`/`.numpy()`, which `torch.export` cannot trace. Those
  constants are bound into the call as plain host values, so the module computes the same thing
  from a fixed argument instead of a traced tensor.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import ConversionError

NEEDS_TORCHVISION = ("NonMaxSuppression", "RoiAlign")
# onnx2torch modules whose forward reads constant inputs as host values
VALUE_READING_MODULES = ("OnnxSlice", "OnnxResize", "OnnxResizeV10", "OnnxSplit13", "OnnxPadDynamic",
                         "OnnxUnsqueezeDynamic", "OnnxRange", "OnnxConstantOfShape", "OnnxTile")


def _install_torchvision_stand_in() -> None:
    if "torchvision" in sys.modules:
        return
    try:  # a working torchvision (matching torch build) is used as is
        import torchvision  # noqa: F401

        return
    except Exception:
        sys.modules.pop("torchvision", None)

    def unsupported(*_args: Any, **_kwargs: Any) -> Any:
        raise ConversionError("ONNX -> PyTorch: NonMaxSuppression/RoiAlign need torchvision", "export the model without in-graph NMS")

    package, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = unsupported  # type: ignore[attr-defined]
    package.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = package, ops


class HostConstant:
    """A constant input seen through the few tensor methods onnx2torch uses to read values."""

    def __init__(self, value: np.ndarray) -> None:
        self.value = value

    def tolist(self) -> Any:
        return self.value.tolist()

    def numpy(self) -> np.ndarray:
        return self.value

    def nelement(self) -> int:
        return int(self.value.size)

    def numel(self) -> int:
        return int(self.value.size)

    def item(self) -> Any:
        return self.value.item()

    def detach(self) -> "HostConstant":
        return self

    def cpu(self) -> "HostConstant":
        return self

    def __iter__(self):
        return iter(self.value.tolist())

    def __len__(self) -> int:
        return len(self.value)

    def __getitem__(self, index: Any) -> Any:
        return self.value[index].tolist()


def _bound_module(inner: Any, positional: dict[int, np.ndarray], keyword: dict[str, np.ndarray]):
    import torch

    class BoundConstants(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner
            self.positional = {i: HostConstant(v) for i, v in positional.items()}
            self.keyword = {k: HostConstant(v) for k, v in keyword.items()}

        def forward(self, *tensors: Any, **kwargs: Any) -> Any:
            args, rest = [], iter(tensors)
            for i in range(len(tensors) + len(self.positional)):
                args.append(self.positional[i] if i in self.positional else next(rest))
            return self.inner(*args, **kwargs, **self.keyword)

    return BoundConstants()


def _static_reshape(shape: np.ndarray):
    """Reshape to a constant target (0 = keep that input dimension, as ONNX defines)."""
    import torch

    class StaticReshape(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shape = [int(d) for d in shape]

        def forward(self, x: Any) -> Any:
            return torch.reshape(x, [x.shape[i] if d == 0 else d for i, d in enumerate(self.shape)])

    return StaticReshape()


def _constant_value(graph_module: Any, arg: Any) -> np.ndarray | None:
    """The value of an fx argument that is an initializer (get_attr) or an ONNX Constant node."""
    import torch

    op = getattr(arg, "op", None)
    if op == "get_attr":
        value = graph_module
        for part in arg.target.split("."):
            value = getattr(value, part)
    elif op == "call_module" and type(graph_module.get_submodule(arg.target)).__name__ == "OnnxConstant":
        value = graph_module.get_submodule(arg.target).value
    else:
        return None
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else None


def _bind_value_constants(graph_module: Any) -> int:
    bound = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module":
            continue
        module = graph_module.get_submodule(node.target)
        kind = type(module).__name__
        if kind not in VALUE_READING_MODULES and kind != "OnnxReshape":
            continue
        positional = {i: v for i, a in enumerate(node.args) if i > 0 and (v := _constant_value(graph_module, a)) is not None}
        keyword = {k: v for k, a in node.kwargs.items() if (v := _constant_value(graph_module, a)) is not None}
        if not positional and not keyword:
            continue
        if kind == "OnnxReshape" and 1 in positional:
            replacement = _static_reshape(positional[1])
        elif kind == "OnnxReshape":
            continue
        else:
            replacement = _bound_module(module, positional, keyword)
        parent, _, leaf = node.target.rpartition(".")
        setattr(graph_module.get_submodule(parent) if parent else graph_module, leaf, replacement)
        node.args = tuple(a for i, a in enumerate(node.args) if i not in positional)
        node.kwargs = {k: a for k, a in node.kwargs.items() if k not in keyword}
        bound += 1
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    return bound


ONNX2TORCH_MAX_OPSET = 17


HELD_DOMAIN = "edgepack.held"  # nodes the version converter must step over (it has no adapter for them)


def _constant(model: Any, name: str) -> Any:
    import onnx

    for tensor in model.graph.initializer:
        if tensor.name == name:
            return onnx.numpy_helper.to_array(tensor)
    return None


def _hold_nodes_without_adapters(model: Any) -> Any:
    """Rewrite the nodes ONNX's version converter cannot take below opset 18 into their opset-13
    form and park them in a private domain while it converts the rest (measured with onnx 1.21:
    no adapter for Split-18, Pad-18/19, ConstantOfShape-20; Reduce*-18 keeps an attribute opset 17
    does not know):
    - Split with `num_outputs` -> the explicit `split` sizes (the last chunk smaller, as Split-18 says);
    - Pad with `axes` -> pads over every axis (constant pads and axes only); mode 'wrap' is refused;
    - ConstantOfShape -> unchanged (opset 20/21 only widened its value types);
    - Reduce* (not ReduceSum) -> `noop_with_empty_axes=0`, its default, dropped; 1 is refused."""
    import onnx
    from onnx import helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    held = 0
    for node in model.graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type.startswith("Reduce"):
            # Reduce*-18's `noop_with_empty_axes` (opset 13 knew it only for ReduceSum) is left in
            # place by the converter's 18 -> 17 adapter, which the checker then refuses; 0 is its default
            noop = next((a for a in node.attribute if a.name == "noop_with_empty_axes"), None)
            if noop is not None and node.op_type != "ReduceSum":
                if noop.i:
                    raise ConversionError(f"ONNX -> PyTorch: {node.op_type} node {node.name!r} uses noop_with_empty_axes=1 (opset 18)",
                                          "export the model at opset 17")
                node.attribute.remove(noop)
            continue
        if node.domain not in ("", "ai.onnx") or node.op_type not in ("Split", "Pad", "ConstantOfShape"):
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Split" and "num_outputs" in attributes:
            shape = shapes.get(node.input[0]) or []
            axis = attributes.get("axis", 0) % max(len(shape), 1)
            size = shape[axis] if shape else None
            if not size:
                raise ConversionError(f"ONNX -> PyTorch: Split node {node.name!r} splits an axis of unknown size into {attributes['num_outputs']}",
                                      "export the model with a fixed input size (or at opset 17)")
            count = attributes["num_outputs"]
            chunk = -(-size // count)
            sizes = [chunk] * (count - 1) + [size - chunk * (count - 1)]
            name = f"{node.name or node.output[0]}_split_sizes"
            model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(sizes, np.int64), name))
            del node.input[1:]
            node.input.append(name)
            node.attribute.remove(next(a for a in node.attribute if a.name == "num_outputs"))
        elif node.op_type == "Pad":
            if attributes.get("mode", b"constant") in (b"wrap", "wrap"):
                raise ConversionError(f"ONNX -> PyTorch: Pad node {node.name!r} uses mode 'wrap' (opset 19), which PyTorch's converters lack",
                                      "pad with 'reflect' or 'edge', or give the PyTorch model instead of ONNX")
            if len(node.input) > 3 and node.input[3]:
                pads, axes = _constant(model, node.input[1]), _constant(model, node.input[3])
                rank = len(shapes.get(node.input[0]) or [])
                if pads is None or axes is None or not rank:
                    raise ConversionError(f"ONNX -> PyTorch: Pad node {node.name!r} pads computed axes",
                                          "export the model at opset 17")
                full = np.zeros(2 * rank, np.int64)
                for i, axis in enumerate(int(a) % rank for a in axes):
                    full[axis], full[axis + rank] = pads[i], pads[i + len(axes)]
                name = f"{node.name or node.output[0]}_full_pads"
                model.graph.initializer.append(onnx.numpy_helper.from_array(full, name))
                node.input[1] = name
                del node.input[3:]
        node.domain = HELD_DOMAIN
        held += 1
    if held:
        model.opset_import.append(helper.make_opsetid(HELD_DOMAIN, 1))
    return model


def _release_held_nodes(model: Any) -> Any:
    for node in model.graph.node:
        if node.domain == HELD_DOMAIN:
            node.domain = ""
    kept = [o for o in model.opset_import if o.domain != HELD_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model


def _convert_opset(model: Any, target: int) -> Any:
    import onnx
    from onnx import version_converter

    try:
        converted = _release_held_nodes(version_converter.convert_version(_hold_nodes_without_adapters(model), target))
        onnx.checker.check_model(converted)
    except ConversionError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ConversionError(
            f"ONNX -> PyTorch: cannot convert the graph from opset {model.opset_import[0].version} to {target} ({first})",
            f"export the model at opset {target} (e.g. torch.onnx.export(..., opset_version={target}) or Ultralytics opset={target})",
        ) from None
    return converted


def onnx_to_torch(onnx_path: Path) -> Any:
    """An eval-mode torch module computing the same function as the (simplified, static) ONNX graph."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    for node in graph.node:
        if node.op_type in NEEDS_TORCHVISION:
            raise ConversionError(
                f"ONNX -> PyTorch: node {node.name!r} ({node.op_type}) is not supported",
                "export the model without in-graph NMS (edgepack decodes and runs NMS itself)",
            )
    _install_torchvision_stand_in()
    import onnx2torch

    model = onnx.load(str(onnx_path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset > ONNX2TORCH_MAX_OPSET:
        # onnx2torch knows ops up to opset 17 (Split-18, ReduceMax-18, ... are missing): the
        # graph is converted down with ONNX's own version converter, which keeps the function
        model = _convert_opset(model, ONNX2TORCH_MAX_OPSET)
    try:
        module = onnx2torch.convert(model)
    except NotImplementedError as e:
        raise ConversionError(f"ONNX -> PyTorch (onnx2torch): {str(e).splitlines()[0]}", "give the PyTorch model instead of ONNX") from e
    _bind_value_constants(module)
    return module.eval()
