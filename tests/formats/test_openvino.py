"""OpenVINO IR fp32/fp16/int8: numbers recomputed with OpenVINO's own runtime, the IR's weight types
read back, and no telemetry: an audit hook in every Python process of the conversion records
network use and whether `openvino_telemetry` was ever loaded."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import load_manifest, run_cli
from runtime_fixtures import assert_status_matches_numbers, convert, recomputed, validation_set, write_calibration_images

HOOK = """
import json, os, sys
_log = os.environ["EDGEPACK_AUDIT_LOG"]
def _hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "urllib.Request"):
        with open(_log, "a") as f:
            f.write(json.dumps({"event": event, "args": repr(args)[:300], "pid": os.getpid()}) + "\\n")
sys.addaudithook(_hook)
import atexit
def _modules():
    with open(_log, "a") as f:
        f.write(json.dumps({"event": "modules", "pid": os.getpid(), "openvino": "openvino" in sys.modules,
                            "telemetry": sorted(m for m in sys.modules if m.startswith("openvino_telemetry") and sys.modules[m] is not None)}) + "\\n")
atexit.register(_modules)
"""


@pytest.fixture(scope="module")
def ov_out(tmp_path_factory, onnx_detector, detector_labels):
    root = tmp_path_factory.mktemp("openvino")
    (root / "hook").mkdir()
    (root / "hook" / "sitecustomize.py").write_text(HOOK)
    log = root / "audit.jsonl"
    env = {**os.environ, "EDGEPACK_AUDIT_LOG": str(log),
           "PYTHONPATH": os.pathsep.join(p for p in (str(root / "hook"), os.environ.get("PYTHONPATH", "")) if p)}
    arts = convert(root / "out", onnx_detector, detector_labels, write_calibration_images(root / "calib"), "openvino", "fp32,fp16,int8", env)
    return root / "out", arts, [json.loads(line) for line in log.read_text().splitlines()]


def _run_ir(xml, inputs, precision_hint="f32"):
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": precision_hint})
    return np.stack([compiled([x])[compiled.outputs[0]] for x in inputs])


def test_ir_numbers_recomputed_with_openvino(ov_out):
    out, arts, _ = ov_out
    assert set(arts) == {"openvino-fp32", "openvino-fp16", "openvino-int8"}
    inputs, _ = validation_set(out, arts["openvino-fp32"])
    for precision, floor in (("fp32", 0.9999), ("fp16", 0.999)):
        entry = arts[f"openvino-{precision}"]
        assert set(entry["files"]) == {"model", "weights"} and entry["files"]["model"].endswith(f"-{precision}.xml")
        cosine, f1 = recomputed(out, _run_ir(out / entry["files"]["model"], inputs))
        assert cosine >= floor and f1 >= 0.95, (precision, cosine, f1)
        assert entry["status"] == "ok" and abs(entry["validation"]["cosine"] - cosine) < 1e-4
    int8 = arts["openvino-int8"]
    cosine, f1 = recomputed(out, _run_ir(out / int8["files"]["model"], inputs))
    assert abs(int8["validation"]["cosine"] - cosine) < 1e-3 and abs(int8["validation"]["task_agreement"] - f1) < 1e-6
    assert cosine >= 0.98, cosine
    assert_status_matches_numbers(int8)


def test_every_precision_is_validated_in_f32_whatever_the_host(ov_out):
    """The CPU plugin's default compute is bf16 on AVX512-BF16/AMX hosts (this EPYC among them):
    validation pins f32 for fp16 too, or the same IR passes on one machine and fails on another."""
    import openvino as ov

    from edgepack.formats import FORMATS
    from edgepack.manifest import artifact_files

    out, arts, _ = ov_out
    for entry in arts.values():
        runner = FORMATS.get("openvino")().open_runner(artifact_files(out, entry), entry, 1)
        assert runner.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32, entry["id"]


def test_weights_really_change_type(ov_out):
    from edgepack.formats.openvino import describe_ir

    out, arts, _ = ov_out
    facts = {p: describe_ir(out / arts[f"openvino-{p}"]["files"]["model"]) for p in ("fp32", "fp16", "int8")}
    assert "f16" not in facts["fp32"]["constant_types"] and "i8" not in facts["fp32"]["constant_types"]
    assert facts["fp16"]["constant_types"].get("f16", 0) > 0
    assert facts["int8"]["constant_types"].get("i8", 0) > 0 and facts["int8"]["ops"].get("FakeQuantize", 0) > 0
    weights = {p: (out / arts[f"openvino-{p}"]["files"]["weights"]).stat().st_size for p in ("fp32", "fp16", "int8")}
    assert weights["fp16"] < 0.55 * weights["fp32"] and weights["int8"] < 0.4 * weights["fp32"], weights
    assert facts["fp16"]["rt_info"]["task"] == "detect" and json.loads(facts["fp16"]["rt_info"]["labels"])[2] == "ünïcode"
    assert arts["openvino-int8"]["openvino"]["ignored_scope"], "the decode tail stays float"


def test_no_telemetry_module_and_no_network(ov_out):
    _, _, events = ov_out
    modules = [e for e in events if e["event"] == "modules"]
    assert any(e["openvino"] for e in modules), "the hook saw the process that imported openvino"
    assert all(e["telemetry"] == [] for e in modules)
    assert not [e for e in events if e["event"] != "modules"]


def test_revalidate_and_inspect_from_the_manifest(ov_out):
    out, arts, _ = ov_out
    result = run_cli("validate", str(out))
    assert result.returncode == 0, result.stderr
    again = {e["id"]: e for e in load_manifest(out)["artifacts"]}
    for key, entry in arts.items():
        assert again[key]["status"] == entry["status"]
        assert abs(again[key]["validation"]["cosine"] - entry["validation"]["cosine"]) < 1e-6
    shown = run_cli("inspect", str(out / arts["openvino-int8"]["files"]["model"]))
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout + shown.stderr
    assert "FakeQuantize" in text and "task: detect" in text and "OVAny" not in text
