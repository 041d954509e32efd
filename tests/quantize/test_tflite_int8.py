"""TFLite full int8 of a YOLO-style detector: the naive recipe (int8 output, one scale over box
coordinates and class scores) ruins the scores and the int8 check says so; edgepack's rule
(decode tail and output float) keeps them."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.quantize import tflite_quant
from edgepack.quantize.agreement import check_outputs, output_parts
from edgepack.validate.validator import TaskSpec
from models import tiny_detector

TASK = TaskSpec("detect", "yolov8", 0.25, 0.45, 3)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """fp32 NHWC .tflite of the tiny detector, its calibration inputs and torch reference outputs."""
    import litert_torch
    import torch

    folder = tmp_path_factory.mktemp("tflite_int8")
    model = tiny_detector()
    nhwc = litert_torch.to_channel_last_io(model, args=[0]).eval()
    litert_torch.convert(nhwc, (torch.zeros(1, 128, 128, 3),)).export(str(folder / "fp32.tflite"))
    rng = np.random.default_rng(0)
    x = rng.random((24, 1, 3, 128, 128), dtype=np.float32)
    with torch.no_grad():
        reference = np.stack([model(torch.from_numpy(xi)).numpy() for xi in x[16:]])
    return folder, x, reference


def run(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for xi in x:
        data = xi.transpose(0, 2, 3, 1)
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            data = np.clip(np.rint(data / scale + zero), -128, 127).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], data)
        interpreter.invoke()
        value = interpreter.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            value = (value.astype(np.float32) - zero) * scale
        results.append(value)
    return np.stack(results)


def test_naive_int8_output_ruins_scores_and_is_caught(detector):
    folder, x, reference = detector
    naive = tflite_quant.full_int8(folder / "fp32.tflite", folder / "naive.tflite", lambda: x[:16].transpose(0, 1, 3, 4, 2), "int8", "int8", [])
    outputs = run(naive, x[16:])
    scores = output_parts("yolov8", outputs, 3)["scores"]
    assert len(np.unique(scores)) <= 3  # one scale for boxes up to 128 px leaves scores a step of ~1
    check = check_outputs(TASK, [reference], [outputs])
    assert not check.passed and any("class scores" in r for r in check.reasons), check.reasons


def test_detector_rule_keeps_tail_and_output_float(detector):
    folder, x, reference = detector
    regions = tflite_quant.graph_regions(folder / "fp32.tflite")
    assert len(regions["heads"]) == 6 and regions["tail"]  # 3 box + 3 class heads, then the decode
    out = tflite_quant.full_int8(folder / "fp32.tflite", folder / "rule.tflite", lambda: x[:16].transpose(0, 1, 3, 4, 2), "int8", "float",
                                 regions["tail"])
    io = tflite_quant.io_quantization(out)
    assert io["inputs"][0]["dtype"] == "int8" and io["outputs"][0]["dtype"] == "float32"
    check = check_outputs(TASK, [reference], [run(out, x[16:])])
    assert check.metrics["score_cosine"] > 0.98 and not any("exactly" in r for r in check.reasons), check.metrics
