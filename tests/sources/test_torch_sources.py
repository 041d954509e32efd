"""TorchScript files and `module:factory` strings, through the CLI."""

import torch

from conftest import load_manifest, run_cli
from models import tiny_classifier


def test_torchscript_file_needs_and_uses_input_shape(tmp_path):
    path = tmp_path / "classifier.pt"
    torch.jit.trace(tiny_classifier(), torch.rand(1, 3, 64, 64)).save(str(path))
    out = tmp_path / "out"
    result = run_cli("convert", str(path), "--task", "classify", "--formats", "ncnn", "--precisions", "fp32", "-o", str(out))
    assert result.returncode == 3 and "--input-shape" in result.stderr
    result = run_cli(
        "convert", str(path), "--task", "classify", "--formats", "ncnn", "--precisions", "fp32",
        "--input-shape", "1,3,64,64", "-o", str(out),
    )
    assert result.returncode == 0, result.stderr
    entry = load_manifest(out)["artifacts"][0]
    assert load_manifest(out)["model"]["source_kind"] == "torchscript"
    assert entry["validation"]["task_agreement"] == 1.0 and entry["validation"]["cosine"] > 0.99999


def test_state_dict_is_not_mistaken_for_torchscript(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(tiny_classifier().state_dict(), path)
    out = tmp_path / "out"
    result = run_cli("convert", str(path), "--input-shape", "1,3,64,64", "-o", str(out))
    assert result.returncode == 3 and "is not a TorchScript file" in result.stderr


def test_module_factory_string(tmp_path):
    out = tmp_path / "out"
    tests_dir = str(__import__("pathlib").Path(__file__).resolve().parent.parent)
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": tests_dir}
    result = subprocess.run(
        [sys.executable, "-m", "edgepack", "convert", "models:tiny_classifier_factory", "--task", "classify",
         "--formats", "mnn", "--precisions", "fp16", "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    m = load_manifest(out)
    assert m["model"]["source"] == "models:tiny_classifier_factory"
    assert m["preprocessing"]["input_shape"] == [1, 3, 64, 64]
    assert m["artifacts"][0]["status"] == "ok"


def test_torchscript_file_reaches_tflite_and_coreml_through_its_onnx_graph(tmp_path):
    """A ScriptModule cannot go through torch.export (where litert-torch and coremltools start):
    the canonical ONNX graph exported from it is converted back by onnx2torch instead."""
    path = tmp_path / "classifier.pt"
    torch.jit.trace(tiny_classifier(), torch.rand(1, 3, 64, 64)).save(str(path))
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"c{i}\n" for i in range(4)))
    out = tmp_path / "out"
    result = run_cli("convert", str(path), "--task", "classify", "--formats", "tflite,coreml", "--precisions", "fp32",
                     "--input-shape", "1,3,64,64", "--labels", str(labels), "--no-latency", "-o", str(out))
    assert result.returncode == 0, result.stderr
    entries = {e["format"]: e for e in load_manifest(out)["artifacts"]}
    assert entries["tflite"]["tflite"]["converter"] == "litert-torch (via onnx2torch)"
    for entry in entries.values():
        assert entry["status"] == "ok" and entry["validation"]["cosine"] > 0.9999 and entry["validation"]["task_agreement"] == 1.0, entry
