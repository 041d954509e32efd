"""`--precisions int8 --calib DIR` end to end, and its bad inputs."""

from __future__ import annotations

import json

import pytest

from conftest import load_manifest, run_cli
from edgepack.datasets.shapes import write_detection_set
from edgepack.quantize.ncnn_int8 import Table


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    return write_detection_set(tmp_path_factory.mktemp("calib"), 40, seed=5, size=(160, 200)) / "images"


@pytest.fixture(scope="module")
def int8_out(tmp_path_factory, onnx_detector, detector_labels, calib_dir):
    out = tmp_path_factory.mktemp("int8") / "out"
    result = run_cli(
        "convert", str(onnx_detector), "--labels", str(detector_labels), "--formats", "ncnn,mnn,tflite",
        "--precisions", "fp32,int8", "--calib", str(calib_dir), "--calib-count", "32", "--explain", "-o", str(out),
    )
    assert result.returncode == 0, result.stderr
    return out, result


def test_int8_artifacts_run_and_report_task_agreement(int8_out):
    out, result = int8_out
    m = load_manifest(out)
    arts = {e["id"]: e for e in m["artifacts"]}
    assert set(arts) == {"ncnn-fp32", "ncnn-int8", "mnn-fp32", "mnn-int8", "tflite-fp32", "tflite-int8"}
    for fmt in ("ncnn", "mnn", "tflite"):
        int8, fp32 = arts[f"{fmt}-int8"], arts[f"{fmt}-fp32"]
        v = int8["validation"]
        assert v["status"] in ("ok", "degraded") and v["task_metric"] == "box_f1_iou50"
        assert "psnr" in v and v["thresholds"] == {"cosine": 0.98, "task_agreement": 0.9}
        assert (v["status"] == "ok") == (v["cosine"] >= 0.98 and v["task_agreement"] >= 0.9)
        # about a quarter of fp32 (TFLite keeps the stem, heads and decode tail float in mixed precision)
        assert int8["size_bytes"] / fp32["size_bytes"] < (0.45 if fmt == "tflite" else 0.35)
    ncnn = arts["ncnn-int8"]["validation"]
    assert ncnn["cosine"] > 0.999 and ncnn["task_agreement"] > 0.8
    # the int8 check behind mixed precision: per output part, on images where the reference finds objects
    for fmt in ("ncnn", "mnn", "tflite"):
        check = arts[f"{fmt}-int8"][fmt]["calibration"]["int8_check"]
        assert {"box_cosine", "score_cosine", "images_with_objects", "box_f1_iou50"} <= set(check), check
        record = arts[f"{fmt}-int8"][fmt]
        if "mixed_precision" in record:  # the fallback ran because the first model failed the check
            assert record["mixed_precision"]["before"]["passed"] is False and record["mixed_precision"]["reason"]
        else:
            assert check["passed"] is True
    assert arts["ncnn-int8"]["ncnn"]["calibration"]["method"] == "minmax"  # the default
    assert arts["mnn-int8"]["mnn"]["calibration"]["method"] in ("EMA", "KL")
    # each calibrating format records how long its calibration took (the benchmark's column)
    for artifact in ("ncnn-int8", "mnn-int8", "tflite-int8"):
        facts = arts[artifact][artifact.split("-")[0]]["calibration"]
        assert facts["images"] == 32 and 0 < facts["seconds"] < arts[artifact]["conversion_seconds"], (artifact, facts)
    assert "held back from calibration" in m["validation"]["origin"]
    assert "only 32 calibration images" in result.stderr  # fewer than 100 warns


def test_ncnn_int8_files_and_table(int8_out):
    out, result = int8_out
    entry = next(e for e in load_manifest(out)["artifacts"] if e["id"] == "ncnn-int8")
    assert set(entry["files"]) == {"param", "bin", "table", "sidecar"}
    table_text = (out / entry["files"]["table"]).read_text()
    table = Table.parse(table_text)
    assert table.weight_scales and len(table.weight_scales) == len(table.blob_scales) - 0
    assert entry["ncnn"]["int8_layers"] > 0 and entry["ncnn"]["calibration"]["images"] == 32
    assert " 8=" in (out / entry["files"]["param"]).read_text()
    rows = entry["ncnn"]["sensitivity"]
    assert len(rows) == table_text.count("_param_0") and rows == sorted(rows, key=lambda r: r["psnr"])
    # --explain shows each layer's activation range: absmax, the threshold used, what it clips
    for row in rows:
        assert 0 < row["threshold"] <= row["absmax"] * (1 + 1e-6) and 0 <= row["clipped_percent"] <= 100
    assert "clipped %" in result.stdout and "threshold" in result.stdout
    commented = [line for line in table_text.splitlines() if line.startswith("#")]
    assert len(commented) == 2 * len(entry["ncnn"]["float_layers"])  # float layers stay in the table, commented
    assert "int8 sensitivity of ncnn-int8" in result.stdout
    assert rows[0]["psnr"] < rows[-1]["psnr"]  # the layers really differ


def test_int8_needs_calibration_images_for_user_models(tmp_path, onnx_detector):
    out = tmp_path / "out"
    result = run_cli("convert", str(onnx_detector), "--formats", "ncnn", "--precisions", "int8", "-o", str(out))
    assert result.returncode == 2 and "needs calibration images" in result.stderr and "--calib" in result.stderr
    assert not out.exists()


def test_empty_and_unreadable_calibration_folders(tmp_path, onnx_detector):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    result = run_cli("convert", str(onnx_detector), "--precisions", "int8", "--calib", str(empty), "-o", str(out))
    assert result.returncode == 2 and "has no images" in result.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    result = run_cli("convert", str(onnx_detector), "--formats", "ncnn", "--precisions", "int8", "--calib", str(bad), "-o", str(out))
    assert result.returncode == 2 and "broken.png" in result.stderr
    assert not out.exists()


def test_int8_skip_must_name_real_layers(tmp_path, onnx_detector, calib_dir):
    out = tmp_path / "out"
    result = run_cli(
        "convert", str(onnx_detector), "--formats", "ncnn", "--precisions", "int8", "--calib", str(calib_dir),
        "--int8-skip", "no_such_layer", "-o", str(out),
    )
    assert result.returncode == 2 and "no_such_layer" in result.stderr and "conv" in result.stderr


def test_tflite_full_int8_records_io_quantization(int8_out):
    out, _ = int8_out
    entry = next(e for e in load_manifest(out)["artifacts"] if e["id"] == "tflite-int8")
    details = entry["tflite"]
    image = details["io"]["inputs"][0]
    assert image["dtype"] == "int8" and 0 < image["scale"] < 1 and -128 <= image["zero_point"] <= 127
    assert details["calibration"]["images"] == 32
    # the value apps use to quantize a pixel must reproduce the calibrated float range of the input
    assert abs(image["scale"] * (127 - image["zero_point"]) - 1.0) < 0.05  # inputs are 0..1 (std 255)
    v = entry["validation"]
    assert v["task_agreement"] >= 0.9, (v, details)  # mixed precision rescues the detector if needed
    # a detector's concatenated boxes and scores never share one int8 scale: the output is float
    assert details["io"]["outputs"][0]["dtype"] == "float32" and details["float_layers"] > 0
    assert details["io_type"] == "int8 input, float output" and "box coordinates and class scores" in details["io_reason"]


def test_calibration_file_holds_the_preprocessed_images_written_one_by_one(tmp_path, calib_dir):
    """The .npy the formats' children load is exactly the stacked preprocessed images, written
    without holding them all (490 MB at 640 for 100 images); a bad image leaves no file behind."""
    import types

    import numpy as np

    from edgepack.pipeline import write_calibration_file
    from edgepack.preprocess import load_image, preprocess, sample_images
    from edgepack.spec import load_spec

    model = types.SimpleNamespace(input_shape=(1, 3, 96, 128), image_size=(96, 128))
    spec = load_spec(overrides={"calib": str(calib_dir), "calib_count": 7})
    path = tmp_path / "calibration.npy"
    assert write_calibration_file(spec, model, path) == 7
    expected = np.stack([preprocess(load_image(p), spec.model, model.input_shape)[0]
                         for p in sample_images(calib_dir, 7, seed=spec.calibration.seed)]).astype(np.float32)
    loaded = np.load(path)
    assert loaded.dtype == np.float32 and loaded.shape == (7, 1, 3, 96, 128)
    assert np.array_equal(loaded, expected)

    bad = tmp_path / "bad"
    bad.mkdir()
    for p in sorted(calib_dir.iterdir())[:3]:
        (bad / p.name).write_bytes(p.read_bytes())
    (bad / "zz-broken.png").write_bytes(b"not a png")
    spec = load_spec(overrides={"calib": str(bad), "calib_count": 10})
    with pytest.raises(Exception, match="zz-broken.png"):
        write_calibration_file(spec, model, tmp_path / "other.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "calibration.npy"]
