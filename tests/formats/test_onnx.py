"""ONNX fp32/fp16/int8 and their `.ort` files: numbers recomputed with onnxruntime for both files,
weight and tensor types read back, the required-operators config parsed, and a wrong `.ort`
caught by validation."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import load_manifest, run_cli
from runtime_fixtures import assert_status_matches_numbers, convert, recomputed, validation_set, write_calibration_images


@pytest.fixture(scope="module")
def onnx_out(tmp_path_factory, onnx_detector, detector_labels):
    root = tmp_path_factory.mktemp("onnxfmt")
    arts = convert(root / "out", onnx_detector, detector_labels, write_calibration_images(root / "calib"), "onnx", "fp32,fp16,int8")
    return root / "out", arts


def _run(path, inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.stack([session.run(None, {name: x})[0] for x in inputs])


def test_onnx_and_ort_files_run_in_onnxruntime(onnx_out):
    out, arts = onnx_out
    assert set(arts) == {"onnx-fp32", "onnx-fp16", "onnx-int8"}
    inputs, _ = validation_set(out, arts["onnx-fp32"])
    for precision, floor in (("fp32", 0.9999), ("fp16", 0.999), ("int8", 0.98)):
        entry = arts[f"onnx-{precision}"]
        from_onnx = _run(out / entry["files"]["model"], inputs)
        cosine, f1 = recomputed(out, from_onnx)
        assert cosine >= floor, (precision, cosine)
        assert abs(entry["validation"]["cosine"] - cosine) < 1e-5 and abs(entry["validation"]["task_agreement"] - f1) < 1e-9
        assert_status_matches_numbers(entry)
        if precision == "fp16":  # an .ort converted on x86 would compute in fp32 (no fp16 Conv kernel here)
            assert set(entry["files"]) == {"model"} and "not written for fp16" in entry["onnx"]["ort"]
            continue
        assert set(entry["files"]) == {"model", "ort", "ort_config"}
        assert entry["files"]["ort"].endswith(f"-{precision}.ort")
        assert entry["files"]["ort_config"].endswith(f"-{precision}.required_operators.config")
        assert recomputed(out, _run(out / entry["files"]["ort"], inputs))[0] >= floor
    assert arts["onnx-fp32"]["status"] == "ok" and arts["onnx-fp16"]["status"] == "ok"


def test_types_metadata_and_operator_config(onnx_out):
    out, arts = onnx_out
    fp32, fp16, int8 = (onnx.load(str(out / arts[f"onnx-{p}"]["files"]["model"])) for p in ("fp32", "fp16", "int8"))
    reference = onnx.load(str(out / "reference" / "model.onnx"))
    assert [n.op_type for n in fp32.graph.node] == [n.op_type for n in reference.graph.node]
    big = lambda m, t: [i for i in m.graph.initializer if i.data_type == t and np.prod(i.dims) > 64]  # noqa: E731
    assert big(fp16, onnx.TensorProto.FLOAT16) and not big(fp16, onnx.TensorProto.FLOAT)
    for model in (fp16, int8):  # apps feed float32 images either way
        assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    ops = {n.op_type for n in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and big(int8, onnx.TensorProto.INT8)
    producer = {o: n for n in int8.graph.node for o in n.output}
    assert producer[int8.graph.output[0].name].op_type == "Concat"  # the decode tail stays float
    meta = {p.key: p.value for p in fp16.metadata_props}
    assert meta["task"] == "detect" and "ünïcode" in meta["labels"] and meta["precision"] == "fp16"
    config = (out / arts["onnx-int8"]["files"]["ort_config"]).read_text()
    listed = {op for line in config.splitlines() if line and not line.startswith("#") for op in line.split(";")[2].split(",")}
    assert {"QuantizeLinear", "DequantizeLinear", "Concat"} <= listed
    # int8 weights; this tiny model's Q/DQ scales and zero points weigh relatively more than a real one's
    assert arts["onnx-int8"]["size_bytes"] < 0.6 * arts["onnx-fp32"]["size_bytes"]


def test_a_wrong_ort_file_fails_revalidation(onnx_out, tmp_path):
    out, arts = onnx_out
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    fp32 = arts["onnx-fp32"]
    # an .ort of the same graph with other weights: it loads and runs, but answers differently
    wrong = onnx.load(str(copy / fp32["files"]["model"]))
    for tensor in wrong.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT and np.prod(tensor.dims) > 64:
            values = onnx.numpy_helper.to_array(tensor) * 1.5
            tensor.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), tensor.name))
    wrong_path = tmp_path / "wrong.onnx"
    onnx.save(wrong, str(wrong_path))
    from edgepack.formats.onnx_format import convert_to_ort

    shutil.copy(convert_to_ort(wrong_path)[0], copy / fp32["files"]["ort"])
    # the manifest records this .ort's sha256, as if the converter had written it: only the numbers can catch it
    manifest = json.loads((copy / "manifest.json").read_text())
    recorded = next(e for e in manifest["artifacts"] if e["id"] == "onnx-fp32")
    recorded["sha256"]["ort"] = hashlib.sha256((copy / fp32["files"]["ort"]).read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("validate", str(copy))
    assert result.returncode == 6, result.stderr
    entry = next(e for e in load_manifest(copy)["artifacts"] if e["id"] == "onnx-fp32")
    assert entry["status"] == "failed" and ".ort output differs" in entry["validation"]["reasons"][0], entry["validation"]
    assert all(e["status"] == arts[e["id"]]["status"] for e in load_manifest(copy)["artifacts"] if e["id"] != "onnx-fp32")
