from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", category=DeprecationWarning)
sys.path.insert(0, str(Path(__file__).parent))

from models import export_onnx, tiny_classifier, tiny_detector  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real console entry point, in a child process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "edgepack", *args], capture_output=True, text=True, cwd=cwd, timeout=900
    )


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def onnx_detector(models_dir) -> Path:
    path = models_dir / "detector.onnx"
    export_onnx(tiny_detector(), path, (1, 3, 128, 128))
    return path


@pytest.fixture(scope="session")
def detector_labels(models_dir) -> Path:
    path = models_dir / "det_labels.txt"
    path.write_text("red thing\nblue \"quoted\" thing\nünïcode\n")
    return path


@pytest.fixture(scope="session")
def detector_out(tmp_path_factory, onnx_detector, detector_labels) -> Path:
    """One full CLI conversion of an ONNX YOLO-style detector, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("det") / "out"
    result = run_cli("convert", str(onnx_detector), "--labels", str(detector_labels), "-o", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    return out


@pytest.fixture(scope="session")
def classifier_out(tmp_path_factory) -> Path:
    """A PyTorch classifier through the Python API."""
    import torch

    import edgepack

    out = tmp_path_factory.mktemp("cls") / "out"
    edgepack.convert(tiny_classifier(), torch.rand(1, 3, 64, 64), task="classify", output=str(out))
    return out


@pytest.fixture(scope="session")
def coreml_detector_out(tmp_path_factory, onnx_detector, detector_labels) -> Path:
    """The ONNX detector through the CLI, Core ML only, every precision it offers (the Core ML
    tests need coremltools alone, not every format's stack)."""
    out = tmp_path_factory.mktemp("coreml-det") / "out"
    result = run_cli("convert", str(onnx_detector), "--labels", str(detector_labels), "--formats", "coreml",
                     "--precisions", "fp16,int8-weight,fp32", "-o", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    return out


@pytest.fixture(scope="session")
def coreml_classifier_out(tmp_path_factory) -> Path:
    """A PyTorch classifier through the Python API, Core ML only (its default precisions)."""
    import torch

    import edgepack

    out = tmp_path_factory.mktemp("coreml-cls") / "out"
    edgepack.convert(tiny_classifier(), torch.rand(1, 3, 64, 64), task="classify", output=str(out), formats="coreml")
    return out


def load_manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())
