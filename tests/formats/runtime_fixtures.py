"""Shared by the tests of the formats of issue 18 (openvino, onnx, executorch, tensorrt): one CLI
conversion per test module of the tiny ONNX detector (128x128, 3 classes) with int8 calibrated on
generated scenes, and the recomputation of an artifact's numbers outside edgepack's validator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from conftest import load_manifest
from edgepack.validate import metrics
from edgepack.validate.validator import TaskSpec, task_agreement, task_outputs


def write_calibration_images(folder: Path) -> Path:
    from edgepack.datasets.shapes import write_detection_set

    return write_detection_set(folder, 40, seed=5, size=(160, 200)) / "images"


TESTS = Path(__file__).resolve().parent.parent


def tiny_detector_factory():
    """The tiny detector as a PyTorch source (`runtime_fixtures:tiny_detector_factory`)."""
    from models import tiny_detector

    model = tiny_detector()
    model.input_shape = (1, 3, 128, 128)
    return model


def with_tests_on_path(env: dict | None = None) -> dict:
    """The environment for a CLI child that imports `runtime_fixtures:...` factories."""
    import os

    env = dict(env or os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), str(TESTS / "formats"), env.get("PYTHONPATH", "")) if p)
    return env


def convert(out: Path, source: Path | str, labels: Path, calib: Path, fmt: str, precisions: str, env: dict | None = None) -> dict:
    args = ["convert", str(source), "--labels", str(labels), "--formats", fmt, "--precisions", precisions,
            "--calib", str(calib), "--calib-count", "32", "-o", str(out)]
    import subprocess
    import sys

    # a longer limit than run_cli's: ExecuTorch's lowering is slow on a busy 2-core machine
    result = subprocess.run([sys.executable, "-m", "edgepack", *args], capture_output=True, text=True, env=env, timeout=1800)
    assert result.returncode == 0, result.stderr + result.stdout
    CALIBRATION_IMAGES[out] = str(calib)
    return {e["id"]: e for e in load_manifest(out)["artifacts"]}


def validation_set(out: Path, entry: dict) -> tuple[np.ndarray, np.ndarray]:
    inputs = np.load(out / "validation" / "inputs.npz")["inputs"]
    with np.load(out / "validation" / "reference.npz") as ref:
        reference = ref[entry["outputs"][0]["name"]]
    return inputs, reference


def recomputed(out: Path, outputs: np.ndarray) -> tuple[float, float]:
    """Worst cosine (whole output or output part, e.g. the box rows or the score rows, as the
    manifest reports it) and box F1 of `outputs` (N x output shape) against the reference,
    computed here from the saved validation set, not taken from the manifest."""
    from edgepack.validate import tasks

    manifest = load_manifest(out)
    _, reference = validation_set(out, manifest["artifacts"][0])
    task = TaskSpec.for_manifest(manifest)
    reference_task = task_outputs(task, [reference])
    f1 = task_agreement(task, reference_task, task_outputs(task, [outputs]))[1]
    cosines = [metrics.cosine(outputs, reference)]
    cosines += [metrics.cosine(part.take(outputs), part.take(reference)) for part in tasks.parts(task, 0)]
    return min(cosines), f1


def assert_status_matches_numbers(entry: dict) -> None:
    v = entry["validation"]
    floors = v["thresholds"]
    assert (v["status"] == "ok") == (v["cosine"] >= floors["cosine"] and v["task_agreement"] >= floors["task_agreement"]), v


def manifest_json(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def calibration_inputs(out: Path) -> np.ndarray:
    """The calibration tensors of a conversion, rebuilt from its manifest's spec the way the
    pipeline builds them (same seeded sample, same preprocessing)."""
    import tempfile

    from edgepack.pipeline import write_calibration_file
    from edgepack.spec import BuildSpec

    manifest = load_manifest(out)
    spec = BuildSpec()
    pre = manifest["preprocessing"]
    spec.model.resize, spec.model.color_order = pre["resize"], pre["color_order"]
    spec.model.mean, spec.model.std = tuple(pre["mean"]), tuple(pre["std"])
    spec.calibration.images, spec.calibration.count = CALIBRATION_IMAGES[out], 32

    class Shape:
        input_shape = tuple(pre["input_shape"])
        image_size = tuple(pre["input_shape"][2:])

    with tempfile.TemporaryDirectory() as tmp:
        write_calibration_file(spec, Shape(), Path(tmp) / "calibration.npy")
        return np.load(Path(tmp) / "calibration.npy")


CALIBRATION_IMAGES: dict[Path, str] = {}  # output folder -> the --calib folder it was converted with
