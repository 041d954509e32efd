"""Core ML packages: every structural fact is checked, and the numbers by edgepack's evaluator of
the saved ML Program (tests/formats/test_coreml_eval.py covers the evaluator itself)."""

from __future__ import annotations

from conftest import load_manifest


def _arts(out):
    return {e["id"]: e for e in load_manifest(out)["artifacts"]}


def test_detector_pipeline_is_wired_for_vision(coreml_detector_out, detector_labels):
    from edgepack.formats.coreml import describe_package

    labels = detector_labels.read_text(encoding="utf-8").splitlines()
    entry = _arts(coreml_detector_out)["coreml-fp16"]
    facts = describe_package(coreml_detector_out / entry["files"]["model"])
    assert facts["type"] == "pipeline" and facts["models"] == ["mlProgram", "nonMaximumSuppression"]
    image = facts["inputs"][0]
    assert (image["name"], image["type"], image["width"], image["height"], image["color_space"]) == ("image", "imageType", 128, 128, "RGB")
    assert {i["name"] for i in facts["inputs"] if i["optional"]} == {"iouThreshold", "confidenceThreshold"}
    assert [o["name"] for o in facts["outputs"]] == ["confidence", "coordinates"]
    assert facts["labels"] == labels
    assert facts["nms"]["network_outputs"][:2] == [facts["nms"]["confidence_input"], facts["nms"]["coordinates_input"]]
    assert facts["nms"]["iou_threshold"] == 0.45
    user = facts["metadata"]["user_defined"]
    manifest = load_manifest(coreml_detector_out)
    assert user["source_sha256"] == manifest["model"]["source_sha256"] and user["task"] == "detect"
    assert user["com.apple.coreml.model.preview.type"] == "objectDetector"
    assert entry["coreml"]["image_input"]["scale"] == 1 / 255  # the spec's std folded into the image input


def test_int8_weights_really_change_the_storage(coreml_detector_out):
    from edgepack.formats.coreml import describe_package

    arts = _arts(coreml_detector_out)
    fp16 = describe_package(coreml_detector_out / arts["coreml-fp16"]["files"]["model"])
    int8 = describe_package(coreml_detector_out / arts["coreml-int8-weight"]["files"]["model"])
    assert set(fp16["weight_storage"]) == {"FLOAT16"} and fp16["compressed_weight_ops"] == 0
    assert int8["compressed_weight_ops"] > 0 and int8["weight_storage"]["INT8"]["elements"] > 0
    assert int8["weight_bytes"] < 0.65 * fp16["weight_bytes"]
    v = arts["coreml-int8-weight"]["validation"]  # the constexpr dequantization ran, and was measured
    assert arts["coreml-int8-weight"]["status"] == "ok" and 0.99 <= v["cosine"] < arts["coreml-fp16"]["validation"]["cosine"]


def test_static_checks_fail_on_a_wrong_package(coreml_detector_out):
    from edgepack.formats.coreml import static_checks

    entry = _arts(coreml_detector_out)["coreml-fp16"]
    checks = {c["check"]: c for c in static_checks(coreml_detector_out / entry["files"]["model"], entry, ["only", "two"])}
    assert not checks["labels"]["ok"] and "3 labels in the model, 2" in checks["labels"]["detail"]
    as_int8 = dict(entry, precision="int8-weight")
    checks = {c["check"]: c for c in static_checks(coreml_detector_out / entry["files"]["model"], as_int8, load_manifest(coreml_detector_out)["model"]["labels"])}
    assert not checks["weight storage"]["ok"]  # fp16 weights are not what an int8-weight artifact must hold


def test_classifier_package(coreml_classifier_out):
    from edgepack.formats.coreml import describe_package

    entry = _arts(coreml_classifier_out)["coreml-fp16"]
    facts = describe_package(coreml_classifier_out / entry["files"]["model"])
    assert facts["type"] == "mlProgram" and facts["predicted_feature"] == "classLabel"
    assert facts["labels"] == load_manifest(coreml_classifier_out)["model"]["labels"]
    assert entry["status"] == "ok" and entry["validation"]["task_metric"] == "top1_agreement"


def test_every_precision_is_validated_by_numbers(coreml_detector_out):
    """The numbers come from the evaluator run on each package against ONNX Runtime's outputs."""
    arts = _arts(coreml_detector_out)
    assert set(arts) == {"coreml-fp32", "coreml-fp16", "coreml-int8-weight"}
    for entry in arts.values():
        v = entry["validation"]
        assert entry["status"] == "ok", v["reasons"]
        assert v["task_metric"] == "box_f1_iou50" and v["task_agreement"] >= v["thresholds"]["task_agreement"]
        assert all(c["ok"] for c in v["static_checks"]) and "latency" not in v
    assert arts["coreml-fp32"]["validation"]["cosine"] > 0.99999 and arts["coreml-fp32"]["validation"]["max_abs"] < 1e-3
    assert arts["coreml-fp16"]["validation"]["max_abs"] > arts["coreml-fp32"]["validation"]["max_abs"]  # fp16 really rounds
