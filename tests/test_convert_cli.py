"""End to end through the real CLI: an ONNX YOLO-style detector and a PyTorch classifier,
converted, run on ncnn / MNN / ONNX Runtime and compared numerically."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest

from conftest import load_manifest, run_cli
from edgepack.validate import metrics

EXPECTED_DETECTOR = {
    "ncnn-fp32", "ncnn-fp16", "mnn-fp32", "mnn-fp16", "mnn-int8-weight",
    "tflite-fp32", "tflite-fp16", "tflite-int8-dynamic", "coreml-fp16", "coreml-int8-weight",
}


def by_id(manifest):
    return {e["id"]: e for e in manifest["artifacts"]}


def test_detector_gets_every_default_artifact_validated(detector_out):
    manifest = load_manifest(detector_out)
    arts = by_id(manifest)
    assert set(arts) == EXPECTED_DETECTOR
    for entry in arts.values():
        v = entry["validation"]
        assert entry["status"] == "ok", (entry["id"], v["reasons"])
        assert v["task_metric"] == "box_f1_iou50"
        if entry["format"] == "coreml":  # numbers from edgepack's evaluator (no Core ML on Linux), plus static checks
            assert all(c["ok"] for c in v["static_checks"]) and "latency" not in v
            continue
        assert v["latency"]["median_ms"] > 0
    assert arts["ncnn-fp32"]["validation"]["cosine"] >= 0.99999
    assert arts["mnn-fp32"]["validation"]["cosine"] >= 0.99999
    assert arts["ncnn-fp32"]["validation"]["task_agreement"] == 1.0
    assert arts["ncnn-fp16"]["validation"]["cosine"] >= 0.999
    # fp16 is not bit-identical to fp32: strict fp32 options really were used for fp32
    assert arts["ncnn-fp16"]["validation"]["max_abs"] > arts["ncnn-fp32"]["validation"]["max_abs"]


def test_detector_reference_has_boxes_to_compare(detector_out):
    boxes = json.loads((detector_out / "validation" / "reference_task.json").read_text())
    assert sum(len(b) for b in boxes) >= 8, "the validation set must exercise the decoder"


def test_sizes_and_hashes(detector_out):
    arts = by_id(load_manifest(detector_out))
    fp32 = arts["mnn-fp32"]["size_bytes"]
    assert 0.4 < arts["mnn-fp16"]["size_bytes"] / fp32 < 0.6
    assert arts["mnn-int8-weight"]["size_bytes"] / fp32 < 0.4
    assert 0.4 < arts["ncnn-fp16"]["size_bytes"] / arts["ncnn-fp32"]["size_bytes"] < 0.6
    for entry in arts.values():
        for role, digest in entry["sha256"].items():
            data = (detector_out / entry["files"][role]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == digest


def test_output_folder_holds_only_what_apps_need(detector_out):
    files = sorted(str(p.relative_to(detector_out)) for p in detector_out.rglob("*") if p.is_file())
    assert not [f for f in files if "pnnx" in f or f.endswith(".py") or f.endswith(".log")], files
    assert "ncnn/detector-fp16.ncnn.param" in files and "ncnn/detector-fp16.ncnn.bin" in files
    assert "ncnn/detector-fp16.ncnn.json" in files
    assert (detector_out / "labels.txt").read_text(encoding="utf-8").splitlines() == [
        "red thing", 'blue "quoted" thing', "ünïcode"
    ]
    assert not list(detector_out.parent.glob(".*partial*"))


def test_manifest_records_everything_apps_and_devices_read(detector_out):
    m = load_manifest(detector_out)
    assert m["schema"] == "edgepack.manifest/1"
    assert m["model"]["task"] == "detect" and m["model"]["head"] == "yolov8"
    assert m["model"]["num_classes"] == 3 and m["model"]["onnx_opset"] == 17
    assert m["preprocessing"]["input_shape"] == [1, 3, 128, 128]
    assert m["tools"]["ncnn"] and m["tools"]["mnn"] and m["tools"]["onnxruntime"]
    assert m["command"].startswith("edgepack convert")
    entry = by_id(m)["ncnn-fp16"]
    assert entry["inputs"] == [{"name": "images", "shape": [1, 3, 128, 128], "dtype": "float32", "layout": "NCHW"}]
    assert entry["outputs"][0]["shape"] == [1, 7, 336]
    assert entry["ncnn"] == {"input_blob": "in0", "output_blobs": ["out0"]}
    sidecar = json.loads((detector_out / entry["files"]["sidecar"]).read_text())
    assert sidecar["ncnn"]["input_blob"] == "in0" and sidecar["preprocessing"]["std"] == [255.0, 255.0, 255.0]


def test_numbers_recomputed_independently(detector_out, onnx_detector):
    """Do not trust the manifest: run the ncnn fp16 artifact and the source ONNX ourselves."""
    import ncnn

    m = load_manifest(detector_out)
    entry = by_id(m)["ncnn-fp16"]
    x = np.load(detector_out / "validation" / "inputs.npz")["inputs"][0]
    ref = ort.InferenceSession(str(onnx_detector)).run(None, {"images": x})[0]
    net = ncnn.Net()
    net.load_param(str(detector_out / entry["files"]["param"]))
    net.load_model(str(detector_out / entry["files"]["bin"]))
    ex = net.create_extractor()
    ex.input("in0", ncnn.Mat(np.ascontiguousarray(x[0])))
    out = np.array(ex.extract("out0")[1]).reshape(ref.shape)
    assert metrics.cosine(out, ref) >= 0.999
    assert metrics.max_abs(out, ref) < 0.5  # boxes are in pixels of a 128 px input


def test_classifier_from_python_api(classifier_out):
    arts = by_id(load_manifest(classifier_out))
    assert set(arts) == EXPECTED_DETECTOR
    for entry in arts.values():
        assert entry["task"] == "classify"
        assert entry["validation"]["task_metric"] == "top1_agreement"
        assert entry["status"] == "ok", entry["validation"]["reasons"]
    assert arts["ncnn-fp32"]["validation"]["task_agreement"] == 1.0
    m = load_manifest(classifier_out)
    assert m["model"]["source_kind"] == "torch" and m["reference"]["torch_vs_onnx_cosine"] > 0.99999
    assert m["model"]["labels"] == ["class_0", "class_1", "class_2", "class_3"]


def test_validate_catches_an_artifact_that_changed_the_answers(detector_out, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(detector_out, out)
    result = run_cli("validate", str(out))
    assert result.returncode == 0, result.stderr
    # scale every weight of the ncnn fp32 artifact, as a broken converter might: the file
    # still loads (fp32 blobs are tagged 0, and 0 * 1.5 == 0) but the answers change
    entry = by_id(load_manifest(out))["ncnn-fp32"]
    path = out / entry["files"]["bin"]
    path.write_bytes((np.frombuffer(path.read_bytes(), dtype=np.float32) * 1.02).astype(np.float32).tobytes())
    # bytes that differ from the recorded sha256 fail whatever they answer; the numbers are measured all the same
    result = run_cli("validate", str(out))
    assert result.returncode == 6 and "detector-fp32.ncnn.bin changed since it was built" in result.stderr, result.stderr
    changed = by_id(load_manifest(out))["ncnn-fp32"]["validation"]
    assert changed["status"] == "failed" and changed["measured_status"] == "degraded", changed
    # as if the converter itself had written these bytes: its manifest records their sha256
    manifest = json.loads((out / "manifest.json").read_text())
    by_id(manifest)["ncnn-fp32"]["sha256"]["bin"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("validate", str(out))
    assert result.returncode == 0, result.stderr  # degraded is reported, and fails only with --strict
    assert "ncnn-fp32: box_f1_iou50" in result.stdout
    result = run_cli("validate", "--strict", str(out))
    assert result.returncode == 6, result.stdout + result.stderr
    assert "degraded: ncnn-fp32" in result.stderr
    assert "The device supports" not in result.stdout  # native chatter stays out of the table
    after = by_id(load_manifest(out))["ncnn-fp32"]
    assert after["status"] == "degraded", after["validation"]
    assert after["validation"]["cosine"] < 0.9999 or after["validation"]["task_agreement"] < 0.99
    assert by_id(load_manifest(out))["mnn-fp32"]["status"] == "ok"


def test_inspect_output_and_artifact(detector_out):
    result = run_cli("inspect", str(detector_out))
    assert result.returncode == 0, result.stderr
    assert "ncnn-fp16" in result.stdout
    result = run_cli("inspect", str(detector_out / "ncnn" / "detector-fp16.ncnn.param"))
    assert result.returncode == 0, result.stderr
    assert "layer_types" in result.stderr and "Convolution" in result.stderr


@pytest.mark.parametrize("precisions", ["fp16"])
def test_init_then_convert_builtin_from_config(tmp_path, precisions):
    assert run_cli("init", cwd=tmp_path).returncode == 0
    assert (tmp_path / "edgepack.yaml").is_file()
    again = run_cli("init", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    result = run_cli("convert", "-c", "edgepack.yaml", "--formats", "mnn", "--precisions", precisions, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    arts = by_id(load_manifest(tmp_path / "edgepack-out"))
    assert list(arts) == ["mnn-fp16"]
    assert arts["mnn-fp16"]["status"] == "ok"


def test_unchanged_rerun_is_reused_and_changes_invalidate(tmp_path, onnx_detector):
    out = tmp_path / "out"
    args = ("convert", str(onnx_detector), "--formats", "ncnn", "--precisions", "fp16", "-o", str(out))
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    key, created = load_manifest(out)["cache_key"], load_manifest(out)["created"]
    assert key and len(key) == 64
    again = run_cli(*args)
    assert again.returncode == 0 and "unchanged since the last build" in again.stdout + again.stderr
    assert load_manifest(out)["created"] == created  # nothing was rebuilt
    # a tampered artifact, a different config and --force all convert again
    param = out / load_manifest(out)["artifacts"][0]["files"]["bin"]
    param.write_bytes(param.read_bytes()[:-4] + b"\0\0\0\0")
    tampered = run_cli(*args)
    reused = "unchanged since the last build"
    assert tampered.returncode == 0 and reused not in tampered.stdout + tampered.stderr
    changed = run_cli(*args[:-2], "--calib-count", "50", "-o", str(out))
    assert changed.returncode == 0 and reused not in changed.stdout + changed.stderr
    assert load_manifest(out)["cache_key"] != key
    forced = run_cli(*args, "--force")
    assert forced.returncode == 0 and reused not in forced.stdout + forced.stderr
