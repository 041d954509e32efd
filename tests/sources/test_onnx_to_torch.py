"""ONNX -> PyTorch for the PyTorch-based converters (litert-torch, coremltools)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from edgepack.errors import ConversionError
from edgepack.sources.onnx_to_torch import onnx_to_torch


def test_converted_module_matches_onnxruntime_and_exports(detector_out):
    """On the canonical (simplified) graph, as the pipeline uses it."""
    import onnxruntime as ort

    canonical = detector_out / "reference" / "model.onnx"
    session = ort.InferenceSession(str(canonical))
    x = np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32)
    module = onnx_to_torch(canonical)
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    assert np.abs(got - session.run(None, {session.get_inputs()[0].name: x})[0]).max() < 1e-3
    torch.export.export(module, (torch.from_numpy(x),))  # what litert-torch needs: no value reads left


def test_in_graph_nms_is_refused_by_node(tmp_path):
    boxes = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 10, 4])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 10])
    out = helper.make_tensor_value_info("keep", TensorProto.INT64, [None, 3])
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["keep"], name="final_nms")
    path = tmp_path / "nms.onnx"
    onnx.save(helper.make_model(helper.make_graph([node], "g", [boxes, scores], [out])), path)
    with pytest.raises(ConversionError, match="final_nms"):
        onnx_to_torch(path)


def _opset19_graph(path):
    """Split-18 with num_outputs (uneven: 5 -> 2, 2, 1), Pad-19 with axes, ReduceMean-18 with
    axes as input and noop_with_empty_axes (as torch.export's exporter writes it), ConstantOfShape: the ops ONNX's version converter has no adapter for and
    their neighbours, as opset-18+ exporters write them."""
    from onnx import numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 6, 6])
    inits = [numpy_helper.from_array(np.array([1, 2, 0, 3], np.int64), "pads"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "pad_axes"),
             numpy_helper.from_array(np.array([1], np.int64), "mean_axes"),
             numpy_helper.from_array(np.array([1, 1, 1, 1], np.int64), "ones_shape")]
    nodes = [
        helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3, name="split3"),
        helper.make_node("Pad", ["a", "pads", "", "pad_axes"], ["a_padded"], mode="reflect", name="pad_hw"),
        helper.make_node("ReduceMean", ["b", "mean_axes"], ["b_mean"], keepdims=1, noop_with_empty_axes=0),
        helper.make_node("ConstantOfShape", ["ones_shape"], ["one"], value=numpy_helper.from_array(np.array([0.5], np.float32))),
        helper.make_node("Mul", ["c", "one"], ["c_half"]),
        helper.make_node("ReduceMean", ["a_padded", "mean_axes"], ["a_mean"], keepdims=1),
        helper.make_node("Slice", ["a_mean", "s0", "s1", "s2"], ["a_cut"]),
        helper.make_node("Concat", ["a_cut", "b_mean", "c_half"], ["y"], axis=1),
    ]
    inits += [numpy_helper.from_array(np.array([1, 3], np.int64), "s0"), numpy_helper.from_array(np.array([7, 9], np.int64), "s1"),
              numpy_helper.from_array(np.array([2, 3], np.int64), "s2")]
    model = helper.make_model(helper.make_graph(nodes, "opset19", [x], [y], inits), opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def test_opset_19_graph_without_converter_adapters_matches_onnxruntime(tmp_path):
    import onnxruntime as ort

    path = tmp_path / "opset19.onnx"
    _opset19_graph(path)
    x = np.random.default_rng(1).random((1, 5, 6, 6), dtype=np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    with torch.no_grad():
        got = onnx_to_torch(path)(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-5


def test_pad_wrap_is_refused_by_node(tmp_path):
    from onnx import numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    node = helper.make_node("Pad", ["x", "pads"], ["y"], mode="wrap", name="wrap_pad")
    path = tmp_path / "wrap.onnx"
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y], [pads]), opset_imports=[helper.make_opsetid("", 19)]), path)
    with pytest.raises(ConversionError, match="wrap_pad.*'wrap'"):
        onnx_to_torch(path)


def test_onnxsim_is_loaded_without_its_package_init_and_stays_whole(tmp_path, onnx_detector):
    """The simplifier is imported without onnxsim's __init__ (a hundred quantization modules and
    PyTorch, 4 s per ONNX build): it must simplify exactly as `onnxsim.simplify` does, pull in no
    PyTorch, and leave a later `import onnxsim` the whole package."""
    import subprocess
    import sys

    script = f"""
import sys, onnx
from edgepack.sources.onnx_source import onnxsim_simplify
model = onnx.load({str(onnx_detector)!r})
shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
fast, ok = onnxsim_simplify()(model, overwrite_input_shapes={{model.graph.input[0].name: shape}})
assert ok and "torch" not in sys.modules and "onnxsim" not in sys.modules, sorted(m for m in sys.modules if m.startswith(("torch", "onnxsim")))[:5]
import onnxsim
assert hasattr(onnxsim, "quantize") and hasattr(onnxsim, "simplify"), "a partial onnxsim package"
full, ok = onnxsim.simplify(onnx.load({str(onnx_detector)!r}), overwrite_input_shapes={{model.graph.input[0].name: shape}})
assert ok and full.SerializeToString() == fast.SerializeToString(), "the two simplifications differ"
print("same")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "same", result.stderr[-2000:]
