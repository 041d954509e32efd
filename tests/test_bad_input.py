"""Every bad input: one clear line naming the problem and the fix, a non-zero exit code, and
nothing written (not even a partial output folder)."""

from __future__ import annotations

import onnx
import onnx.helper as oh
import pytest
from onnx import TensorProto

from conftest import load_manifest, run_cli
from models import export_onnx, tiny_detector


def assert_clean_failure(result, out, code: int, *needles: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert not list(out.parent.glob(".*"))  # no staging or lock left beside it
    return lines[0]


def single_op_model(path, op_type: str, domain: str = "", **attrs) -> None:
    x = oh.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = oh.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 32, 32])
    conv_w = oh.make_tensor("w", TensorProto.FLOAT, [3, 3, 1, 1], [1.0] * 9)
    nodes = [
        oh.make_node("Conv", ["images", "w"], ["c"], name="conv0"),
        oh.make_node(op_type, ["c"], ["output0"], name="the_bad_node", domain=domain, **attrs),
    ]
    graph = oh.make_graph(nodes, "g", [x], [y], initializer=[conv_w])
    opsets = [oh.make_opsetid("", 17)] + ([oh.make_opsetid(domain, 1)] if domain else [])
    onnx.save(oh.make_model(graph, opset_imports=opsets), str(path))


def test_missing_model_file(tmp_path):
    out = tmp_path / "out"
    assert_clean_failure(run_cli("convert", str(tmp_path / "nope.onnx"), "-o", str(out)), out, 3, "does not exist")


def test_corrupt_onnx_file(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 100)
    out = tmp_path / "out"
    assert_clean_failure(run_cli("convert", str(bad), "-o", str(out)), out, 3, "broken.onnx", "not a valid ONNX")


def test_custom_op_is_named_with_its_node(tmp_path):
    model = tmp_path / "custom.onnx"
    single_op_model(model, "MyFancyNms", domain="com.example")
    out = tmp_path / "out"
    line = assert_clean_failure(run_cli("convert", str(model), "-o", str(out)), out, 3, "MyFancyNms", "the_bad_node")
    assert "unsupported op" in line


@pytest.mark.parametrize("fmt", ["ncnn", "mnn"])
def test_op_the_target_format_lacks_is_named(tmp_path, fmt):
    model = tmp_path / "hardmax.onnx"
    single_op_model(model, "Hardmax", axis=1)
    out = tmp_path / "out"
    result = run_cli("convert", str(model), "--task", "tensor", "--formats", fmt, "--precisions", "fp32", "-o", str(out))
    # a format that fails is recorded, not hidden: exit 5, the reason in one line, its logs kept in OUT
    assert result.returncode == 5, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"{fmt}: unsupported op" in lines[0] and "hardmax" in lines[0].lower(), result.stderr
    assert "Traceback" not in result.stderr
    entry = load_manifest(out)["artifacts"][0]
    assert entry["status"] == "failed" and entry["conversion_failed"] and entry["files"] == {}
    for log in entry["logs"]:
        assert (out / log).is_file() and f"{out}/{log.rsplit('/', 1)[0]}" in lines[0]


def test_dynamic_input_needs_input_shape(tmp_path):
    model = tmp_path / "dynamic.onnx"
    export_onnx(tiny_detector(image_size=64), model, (1, 3, 64, 64), dynamic=True)
    out = tmp_path / "out"
    assert_clean_failure(run_cli("convert", str(model), "-o", str(out)), out, 3, "dynamic shape", "--input-shape")


def test_wrong_input_size(tmp_path, onnx_detector):
    out = tmp_path / "out"
    result = run_cli("convert", str(onnx_detector), "--input-shape", "1,3,320,320", "-o", str(out))
    assert_clean_failure(result, out, 3, "wrong input size", "128")


def test_labels_count_must_match_classes(tmp_path, onnx_detector):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    out = tmp_path / "out"
    result = run_cli("convert", str(onnx_detector), "--labels", str(labels), "-o", str(out))
    assert_clean_failure(result, out, 2, "2 names", "3 classes")


def test_unknown_format_suggests_the_right_one(tmp_path):
    out = tmp_path / "out"
    assert_clean_failure(run_cli("convert", "--formats", "ncn", "-o", str(out)), out, 2, "unknown format 'ncn'", "did you mean 'ncnn'")


def test_unknown_precision_lists_valid_ones(tmp_path):
    out = tmp_path / "out"
    result = run_cli("convert", "--formats", "ncnn", "--precisions", "int4", "-o", str(out))
    assert_clean_failure(result, out, 2, "int4", "fp16")


def test_output_folder_not_writable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    result = run_cli("convert", "--formats", "mnn", "--precisions", "fp32", "-o", str(out))
    assert result.returncode == 9, result.stderr
    assert "cannot write output folder" in result.stderr and str(out) in result.stderr and "choose another -o" in result.stderr


def test_bad_config_key(tmp_path):
    config = tmp_path / "edgepack.yaml"
    config.write_text("model:\n  tsk: detect\n")
    out = tmp_path / "out"
    assert_clean_failure(run_cli("convert", "-c", str(config), "-o", str(out)), out, 2, "unknown key 'tsk'")


def test_failed_run_leaves_previous_output_untouched(tmp_path, onnx_detector):
    out = tmp_path / "out"
    good = run_cli("convert", str(onnx_detector), "--formats", "mnn", "--precisions", "fp32", "-o", str(out))
    assert good.returncode == 0, good.stderr
    before = (out / "manifest.json").read_bytes()
    bad_model = tmp_path / "hardmax.onnx"
    single_op_model(bad_model, "Hardmax", axis=1)
    result = run_cli("convert", str(bad_model), "--task", "tensor", "--formats", "mnn", "--precisions", "fp32", "-o", str(out))
    assert result.returncode == 5
    assert (out / "manifest.json").read_bytes() == before
    assert load_manifest(out)["artifacts"][0]["id"] == "mnn-fp32"
    assert not list(tmp_path.glob(".out.*"))


def test_non_edgepack_folder_is_never_replaced(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    result = run_cli("convert", "--formats", "mnn", "--precisions", "fp32", "-o", str(out))
    assert result.returncode == 9 and "is not an edgepack output" in result.stderr
    assert (out / "thesis.tex").read_text() == "do not delete"


def test_a_failing_format_keeps_the_others(tmp_path):
    """ncnn has no Hardmax; the ONNX target keeps the graph as it is: one failed entry with its
    one-line reason, the other converted and validated, exit 5 (a partial build)."""
    model = tmp_path / "hardmax.onnx"
    single_op_model(model, "Hardmax", axis=1)
    out = tmp_path / "out"
    result = run_cli("convert", str(model), "--task", "tensor", "--formats", "ncnn,onnx", "--precisions", "fp32", "-o", str(out))
    assert result.returncode == 5, result.stderr
    entries = {e["format"]: e for e in load_manifest(out)["artifacts"]}
    assert entries["ncnn"]["conversion_failed"] and "unsupported op" in entries["ncnn"]["validation"]["reasons"][0]
    assert entries["onnx"]["status"] == "ok" and entries["onnx"]["validation"]["cosine"] > 0.9999
    assert (out / entries["onnx"]["files"]["model"]).is_file()
