"""TFLite artifacts: NHWC input, numbers from the LiteRT interpreter recomputed here, and the
TFLite Metadata read back with flatc and tflite-support's own schema (tflite_metadata_reference.py)."""

from __future__ import annotations

import contextlib
import io

import zipfile

import numpy as np
import pytest
from tflite_metadata_reference import flatc, flatc_json, litert_metadata_buffer, metadata_schema_fbs  # noqa: F401  (fixtures)

from conftest import load_manifest
from edgepack.validate import metrics


def _arts(out):
    return {e["id"]: e for e in load_manifest(out)["artifacts"]}


def test_detector_tflite_runs_nhwc_and_matches_reference(detector_out):
    from ai_edge_litert.interpreter import Interpreter

    arts = _arts(detector_out)
    fp32 = arts["tflite-fp32"]
    assert fp32["inputs"][0]["layout"] == "NHWC" and fp32["inputs"][0]["shape"] == [1, 128, 128, 3]
    assert fp32["tflite"]["converter"] == "litert-torch (via onnx2torch)"
    inputs = np.load(detector_out / "validation" / "inputs.npz")["inputs"]
    with np.load(detector_out / "validation" / "reference.npz") as ref:
        want = ref[fp32["outputs"][0]["name"]]
    interpreter = Interpreter(model_path=str(detector_out / fp32["files"]["model"]))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    assert list(detail["shape"]) == [1, 128, 128, 3]
    got = []
    for x in inputs:
        interpreter.set_tensor(detail["index"], np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
        interpreter.invoke()
        got.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy())
    got = np.stack(got)
    assert metrics.cosine(got, want) > 0.99999 and metrics.max_abs(got, want) < 1e-3
    assert fp32["validation"]["task_agreement"] == 1.0
    assert arts["tflite-fp16"]["size_bytes"] < 0.6 * fp32["size_bytes"]
    assert arts["tflite-int8-dynamic"]["size_bytes"] < 0.4 * fp32["size_bytes"]
    for precision in ("fp16", "int8-dynamic"):
        v = arts[f"tflite-{precision}"]["validation"]
        assert v["status"] == "ok" and v["task_agreement"] >= 0.9, v


def test_detector_metadata_reads_back(detector_out, detector_labels, flatc_json):
    for precision in ("fp32", "fp16", "int8-dynamic"):
        entry = _arts(detector_out)[f"tflite-{precision}"]
        model = detector_out / entry["files"]["model"]
        doc = flatc_json(litert_metadata_buffer(model))
        assert doc["name"] == "detector" and doc["version"] == "1.0" and doc["min_parser_version"] == "1.0.0"
        graph = doc["subgraph_metadata"][0]
        image = graph["input_tensor_metadata"][0]
        assert image["content"]["content_properties"] == {"color_space": "RGB", "default_size": {"width": 128, "height": 128}}
        norm = image["process_units"][0]["options"]
        assert norm == {"mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0]}
        outputs = graph["output_tensor_metadata"]
        assert [o["name"] for o in outputs] == [o["name"] for o in entry["outputs"]]  # canonical names, canonical order
        assert "[1, 4 + C, N]" in outputs[0]["description"] and "sigmoid" in outputs[0]["description"]
        assert outputs[0]["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
        with zipfile.ZipFile(model) as archive:
            assert archive.namelist() == ["labels.txt"]
            labels = archive.read("labels.txt").decode("utf-8").splitlines()
        assert labels == detector_labels.read_text(encoding="utf-8").splitlines()  # quotes and Unicode intact
        assert entry["tflite"]["metadata"] == f"TFLite Metadata (detect; outputs {outputs[0]['name']})"


def test_classifier_gets_image_classifier_metadata(classifier_out, flatc_json):
    arts = _arts(classifier_out)
    entry = arts["tflite-fp32"]
    doc = flatc_json(litert_metadata_buffer(classifier_out / entry["files"]["model"]))
    [output] = doc["subgraph_metadata"][0]["output_tensor_metadata"]
    # the built-in classifier ends in softmax: its scores are probabilities
    assert output["name"] == "probability" and output["content"]["content_properties_type"] == "FeatureProperties"
    assert output["associated_files"][0]["name"] == "labels.txt" and output["stats"] == {"max": [1.0], "min": [0.0]}
    assert entry["validation"]["task_metric"] == "top1_agreement"
    assert entry["validation"]["task_agreement"] == 1.0


def test_inspect_shows_tflite_metadata(detector_out):
    from conftest import run_cli

    entry = _arts(detector_out)["tflite-fp32"]
    result = run_cli("inspect", str(detector_out / entry["files"]["model"]))
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr
    assert "TENSOR_AXIS_LABELS" in text or "labels" in text
    assert "ünïcode" in text and "255.0" in text


def test_gpu_delegate_warnings_name_the_problem(tmp_path):
    """GATHER_ND, int64 indices and a dynamic batch: three classic reasons the GPU delegate
    falls back to the CPU on phones. The model is made with TensorFlow's own converter."""
    import tensorflow as tf

    from edgepack.formats.tflite import gpu_delegate_warnings

    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32), tf.TensorSpec([None, 2], tf.int64)])
    def gather(x, idx):
        return tf.gather_nd(x, idx)

    path = tmp_path / "gather.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([gather.get_concrete_function()], gather).convert())
    warnings = " | ".join(gpu_delegate_warnings(path))
    assert "GATHER_ND" in warnings and "int64" in warnings and "dynamic input shape" in warnings, warnings
    # the analyzer LiteRT ships (used without importing TensorFlow) reports what TensorFlow's does,
    # line for line but the runtime version
    from ai_edge_litert import _pywrap_analyzer_wrapper

    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path), gpu_compatibility=True)
    litert = _pywrap_analyzer_wrapper.ModelAnalyzer(str(path), True, True)
    ours = [line for line in litert.strip().splitlines() if "runtime version" not in line]
    theirs = [line for line in report.getvalue().strip().splitlines()[2:] if "runtime version" not in line]
    assert ours == theirs


def test_clean_model_has_no_gpu_warnings(detector_out):
    from edgepack.formats.tflite import gpu_delegate_warnings

    entry = _arts(detector_out)["tflite-fp32"]
    assert gpu_delegate_warnings(detector_out / entry["files"]["model"]) == []
    assert entry["tflite"]["gpu_delegate_warnings"] == []


@pytest.mark.parametrize("dtype", ["int8"])
def test_runner_quantizes_int8_input(dtype, tmp_path):
    """The host runner must use the model's own scale/zero point (what the manifest records)."""
    from edgepack.formats.tflite import TfliteRunner
    from edgepack.quantize.tflite_quant import io_quantization

    import litert_torch
    import torch

    from edgepack.quantize import tflite_quant

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).eval()
    fp32 = tmp_path / "fp32.tflite"
    litert_torch.convert(litert_torch.to_channel_last_io(module, args=[0]), (torch.rand(1, 8, 8, 3),)).export(str(fp32))
    calib = np.random.default_rng(0).random((16, 1, 8, 8, 3), dtype=np.float32)
    out = tflite_quant.full_int8(fp32, tmp_path / "int8.tflite", lambda: calib, "int8", "int8", [])
    io = io_quantization(out)
    assert io["inputs"][0]["dtype"] == dtype and io["outputs"][0]["dtype"] == dtype
    x = np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32)
    got = TfliteRunner(out, {"outputs": [{"shape": [1, 4, 8, 8]}]}, 1).run(x)[0]
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()  # only the input is NHWC; outputs keep the canonical layout
    assert metrics.cosine(got, want) > 0.99


def test_intermediate_tensor_names_are_short_and_unique_io_names_kept(detector_out):
    """litert-torch's fused-location names (~300 bytes each) are shortened to the module path;
    inputs and outputs keep the names signatures and apps use."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    for entry in _arts(detector_out).values():
        if entry["format"] != "tflite":
            continue
        path = detector_out / entry["files"]["model"]
        graph = flatbuffer_utils.read_model(str(path)).subgraphs[0]
        names = [t.name.decode() for t in graph.tensors]
        io = {int(i) for i in graph.inputs} | {int(i) for i in graph.outputs}
        inner = [n for i, n in enumerate(names) if i not in io]
        assert len(set(inner)) == len(inner) and max(map(len, inner)) < 120, max(inner, key=len)
        assert not any("litert_torch." in n or "torch.nn.modules" in n for n in inner)
        interpreter = Interpreter(model_path=str(path))
        assert [d["name"] for d in interpreter.get_input_details()] == [entry["tflite"]["io"]["inputs"][0]["name"]]
        assert entry["status"] == "ok", entry["validation"]
