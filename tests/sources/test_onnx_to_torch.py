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
