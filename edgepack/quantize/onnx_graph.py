"""Facts about the canonical ONNX graph that the int8 paths of the ONNX, OpenVINO and TensorRT
formats share: which nodes form the float "tail" and which tensors carry float activations.

The tail is every node after the last weight layer (Conv, Gemm, MatMul): for a YOLO-style
detector, the decode (sigmoid, box arithmetic, the final Concat of boxes and scores). One int8
scale cannot hold box coordinates (0..input size) and scores (0..1) of that Concat at once, so
the int8 paths keep the tail in float (measured: the README, "Other edge runtimes").
"""

from __future__ import annotations

from typing import Any

WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def consumers(graph: Any) -> dict[str, list[Any]]:
    """Tensor name -> the nodes that read it."""
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                readers.setdefault(name, []).append(node)
    return readers


def float_tail_nodes(graph: Any) -> list[Any]:
    """Nodes from which no weight layer can be reached (everything after the last Conv/Gemm/MatMul
    on every path to an output), in graph order."""
    readers = consumers(graph)
    feeds_weights: dict[int, bool] = {}

    def reaches(node: Any) -> bool:
        key = id(node)
        if key not in feeds_weights:
            feeds_weights[key] = False  # the graph is acyclic; this only guards the recursion
            feeds_weights[key] = any(
                reader.op_type in WEIGHT_OPS or reaches(reader) for out in node.output for reader in readers.get(out, [])
            )
        return feeds_weights[key]

    produced_by_weights = _downstream_of_weights(graph, readers)
    return [n for n in graph.node if not reaches(n) and n.op_type not in WEIGHT_OPS and id(n) in produced_by_weights]


def _downstream_of_weights(graph: Any, readers: dict[str, list[Any]]) -> set[int]:
    """ids of the nodes that come after at least one weight layer (the tail, not constant side branches)."""
    seen: set[int] = set()
    stack = [n for n in graph.node if n.op_type in WEIGHT_OPS]
    while stack:
        node = stack.pop()
        for out in node.output:
            for reader in readers.get(out, []):
                if id(reader) not in seen:
                    seen.add(id(reader))
                    stack.append(reader)
    return seen


def stem_and_head_nodes(graph: Any) -> list[Any]:
    """The first weight layer (it reads the raw image) and the last ones (their outputs feed the
    float tail or a graph output directly): the layers int8 hurts most, kept in float by the
    automatic mixed precision of the int8 paths (as the TFLite and MNN formats do)."""
    weights = [n for n in graph.node if n.op_type in WEIGHT_OPS]
    if not weights:
        return []
    tail = float_tail_nodes(graph)
    tail_inputs = {name for node in tail for name in node.input} | {o.name for o in graph.output}
    heads = [n for n in weights if any(out in tail_inputs for out in n.output)]
    return [weights[0], *[n for n in heads if n is not weights[0]]]


def float_activations(model: Any) -> list[str]:
    """Names of the float32 tensors the graph computes (its input and every float node output),
    in graph order; shape and index tensors are left out."""
    import onnx
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    initializers = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        names += [o for o in node.output if o and types.get(o) == onnx.TensorProto.FLOAT]
    return names


def sort_nodes(graph: Any) -> None:
    """Put the nodes in topological order in place (ONNX requires it; tools that insert nodes,
    such as onnxruntime's float16 converter, may append them out of order)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    ordered, pending = [], list(graph.node)
    while pending:
        waiting = []
        for node in pending:
            if all(not name or name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ValueError(f"the graph has a cycle or a missing input at node {waiting[0].name!r}")
        pending = waiting
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
