"""The generated Android app's pure Kotlin (core/ and ModelConfig.kt), compiled with kotlinc and
run on the host against numpy and edgepack's Python references: tensor buffers sized from the
manifest, softmax for classifiers, sampling the RGBA camera plane (strides, rotation, letterbox,
colour order, layouts), the display-rotation table, the view mapping with front-camera
mirroring, when settings reload the model, the Kotlin string escaping, and the YOLO decoder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import load_manifest
from edgepack.apps import render_app
from edgepack.apps import ios_probabilities as probs
from edgepack.apps.base import kotlin_string
from decoder_reference import compare, parse_lines, python_decode
from synthetic import manifest_for, write_out

GOLDEN = Path(__file__).parent / "golden"
NASTY = 'Tom\'s "app" $HOME ${x} \\ \n\t{{ 7*7 }} ü✓ \u2028 end'
PACKAGE = "com.example.my_app"


def find_kotlinc() -> str:
    """The Kotlin compiler from the npm registry (installed by `make test`); never skipped."""
    candidates = [os.environ.get("KOTLINC", ""), shutil.which("kotlinc") or ""]
    try:
        root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, check=True).stdout.strip()
        candidates.append(str(Path(root) / "kotlin-compiler/bin/kotlinc"))
    except (OSError, subprocess.CalledProcessError):
        pass
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise AssertionError("kotlinc not found: `make test` installs it (npm install -g kotlin-compiler)")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A detector whose TFLite output is [1, 9, 2100] (5 classes, 320x320), like a YOLOv8n at 320."""
    out = write_out(tmp_path_factory.mktemp("core") / "out", manifest_for(num_classes=5, size=320, anchors=2100))
    return render_app("android", load_manifest(out), out, {"name": "Core", "package": PACKAGE})


@pytest.fixture(scope="module")
def jar(project, tmp_path_factory) -> Path:
    """One kotlinc run for every test here: the app's core/*.kt and ModelConfig.kt plus the driver."""
    work = tmp_path_factory.mktemp("kotlin")
    sources = project / "app/src/main/java" / PACKAGE.replace(".", "/")
    driver = work / "AppCoreMain.kt"
    driver.write_text((GOLDEN / "AppCoreMain.kt").read_text().replace("PKG.", f"{PACKAGE}."))
    literal = work / "EscapedLiteral.kt"
    literal.write_text(f'fun escapedLiteral(): String = "{kotlin_string(NASTY)}"\n', encoding="utf-8")
    jar = work / "core.jar"
    compiled = subprocess.run(
        [find_kotlinc(), *map(str, sorted((sources / "core").glob("*.kt"))), str(sources / "ModelConfig.kt"), str(driver), str(literal),
         "-include-runtime", "-d", str(jar)],
        capture_output=True, text=True, timeout=1200,
    )
    assert compiled.returncode == 0, compiled.stderr
    return jar


def java(jar: Path, *args: str) -> list[str]:
    return ["java", "-Dfile.encoding=UTF-8", "-jar", str(jar), *args]


def run(jar: Path, *args: str) -> str:
    result = subprocess.run(java(jar, *args), capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_tflite_output_buffer_is_sized_from_the_manifest(project, jar):
    config = (project / "app/src/main/java/com/example/my_app/ModelConfig.kt").read_text()
    assert "outputShape = intArrayOf(1, 9, 2100)" in config and "inputShape = intArrayOf(1, 320, 320, 3)" in config
    lines = {line.split()[0]: line for line in run(jar, "buffers").splitlines()}
    tflite = lines["tflite"]
    # the whole [1, 9, 2100] float tensor: 18900 floats, 75600 bytes, direct, native order
    assert "bytes=75600 floats=18900 outputSize=18900" in tflite
    assert "inputBytes=1228800" in tflite and "direct=true" in tflite and "order=LITTLE_ENDIAN" in tflite
    assert "anchors=2100 channelsFirst=true decoded=0" in tflite
    assert "bytes=75600" in lines["ncnn"] and "bytes=75600" in lines["mnn"]
    detector = (project / "app/src/main/java/com/example/my_app/TfliteDetector.kt").read_text()
    assert "TensorBuffers.allocate(info.outputShape)" in detector and "Array(1)" not in detector
    assert 'requireShape("output", interpreter.getOutputTensor(0).shape(), info.outputShape)' in detector


@pytest.mark.parametrize("kind,scores", [
    ("auto", [2.0, 1.0, 0.1]),          # logits: softmax
    ("auto", [1.53, -0.2, 0.4]),        # "153 %" and a negative: softmax
    ("auto", [0.25, 0.75]),             # already probabilities: unchanged
    ("auto", [0.2, 0.2]),               # in [0, 1] but not summing to 1: softmax
    ("logits", [0.2, 0.3, 0.5]),        # the manifest says logits: softmax even though it sums to 1
    ("probabilities", [0.9, 0.3]),      # the manifest says probabilities: unchanged
    ("auto", [-1000.0, 1000.0, 0.0]),   # large logits stay finite
])
def test_classifier_scores_become_probabilities(jar, kind, scores):
    kotlin = [float(v) for v in run(jar, "probabilities", kind, *map(str, scores)).split()]
    expected = probs.probabilities(scores, kind)
    np.testing.assert_allclose(kotlin, expected, atol=2e-7)
    if kind == "logits" or (kind == "auto" and not probs.looks_like_probabilities(scores)):
        x = np.asarray(scores, np.float64)
        np.testing.assert_allclose(kotlin, np.exp(x - x.max()) / np.exp(x - x.max()).sum(), atol=2e-7)
        assert abs(sum(kotlin) - 1) < 1e-6 and all(0 <= p <= 1 for p in kotlin)


def test_probability_rule_is_the_same_in_kotlin_swift_and_python(project):
    kotlin = (project / "app/src/main/java/com/example/my_app/core/Probabilities.kt").read_text()
    swift = (Path(__file__).resolve().parents[2] / "templates/ios/{{ target }}/Core/Probabilities.swift").read_text()
    assert float(re.search(r"const val SUM_TOLERANCE = ([0-9.]+)", kotlin).group(1)) == probs.SUM_TOLERANCE
    assert float(re.search(r"static let sumTolerance = ([0-9.]+)", swift).group(1)) == probs.SUM_TOLERANCE
    for text in (kotlin, swift):  # the same decision: logits -> softmax, probabilities -> as is, else by the values
        assert re.search(r"logits.*softmax", text) and re.search(r"looksLikeProbabilities\(scores\)", text)


def reference_sample(image: np.ndarray, rotation: int, dst: int, keep: bool, bgr: bool, nchw: bool, channels: int) -> np.ndarray:
    """numpy: turn the frame upright, then letterbox with bilinear sampling at pixel centres."""
    upright = np.rot90(image, k=-rotation // 90).astype(np.float64)  # clockwise
    h, w = upright.shape[:2]
    if keep:
        scale = min(dst / w, dst / h)
        rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
        sx_, sy_, px, py = rw / w, rh / h, (dst - rw) // 2, (dst - rh) // 2
    else:
        rw, rh, sx_, sy_, px, py = dst, dst, dst / w, dst / h, 0, 0
    mean, std = np.array([10.0, 20.0, 30.0]), np.array([2.0, 4.0, 8.0])
    out = np.empty((dst, dst, 3))
    for y in range(dst):
        for x in range(dst):
            rx, ry = x - px, y - py
            if 0 <= rx < rw and 0 <= ry < rh:
                sx = np.float32(np.clip((np.float32(rx) + np.float32(0.5)) / np.float32(sx_) - np.float32(0.5), 0, w - 1))
                sy = np.float32(np.clip((np.float32(ry) + np.float32(0.5)) / np.float32(sy_) - np.float32(0.5), 0, h - 1))
                x0, y0 = int(sx), int(sy)
                x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
                fx, fy = sx - x0, sy - y0
                rgb = (upright[y0, x0, :3] * (1 - fx) + upright[y0, x1, :3] * fx) * (1 - fy) + \
                      (upright[y1, x0, :3] * (1 - fx) + upright[y1, x1, :3] * fx) * fy
            else:
                rgb = np.full(3, 114.0)
            if bgr:
                rgb = rgb[::-1]
            out[y, x] = (rgb - mean) / std
    if channels == 1:
        return out.mean(axis=2)[None]
    return out.transpose(2, 0, 1) if nchw else out


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("keep,bgr,nchw,channels", [(True, False, False, 3), (False, True, True, 3), (True, False, True, 1)])
def test_frame_sampler_reads_the_rgba_plane_like_numpy(jar, tmp_path, rotation, keep, bgr, nchw, channels):
    rng = np.random.default_rng(rotation + 7 * channels)
    width, height, pad = 37, 23, 12  # rows padded as camera planes are
    image = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    plane = np.zeros((height, width * 4 + pad), np.uint8)
    plane[:, : width * 4] = image.reshape(height, width * 4)
    raw = plane.tobytes()[: (height - 1) * (width * 4 + pad) + width * 4]  # the last row is not padded
    (tmp_path / "frame.rgba").write_bytes(raw)
    printed = run(jar, "sample", str(tmp_path / "frame.rgba"), str(width), str(height), str(width * 4 + pad), "4", str(rotation),
                  "16", "16", "1" if keep else "0", "1" if bgr else "0", "1" if nchw else "0", str(channels), str(tmp_path / "out.f32"))
    upright = (width, height) if rotation % 180 == 0 else (height, width)
    assert printed.strip() == f"upright {upright[0]}x{upright[1]}"
    kotlin = np.fromfile(tmp_path / "out.f32", dtype="<f4").reshape(reference_sample(image, rotation, 16, keep, bgr, nchw, channels).shape)
    np.testing.assert_allclose(kotlin, reference_sample(image, rotation, 16, keep, bgr, nchw, channels), atol=2e-3)


def test_display_rotation_becomes_the_target_rotation(jar):
    """CameraX use-case rotations guide: with the activity following the device, Preview and
    ImageAnalysis take the display rotation (Surface.ROTATION_0..270 = 0..3) as target rotation."""
    lines = run(jar, "rotation").splitlines()
    assert lines[:4] == ["0 0 0", "1 1 90", "2 2 180", "3 3 270"]
    assert lines[4:] == ["reject -1 true", "reject 4 true", "reject 90 true"]


def test_front_camera_boxes_are_mirrored_once(jar):
    """A box on the left of the (unmirrored) analysis frame is drawn on the right of the mirrored
    front preview, and where it is for the back camera; FILL_CENTER crops the wider side."""
    back = [float(v) for v in run(jar, "viewmap", "0", "0", "240", "480", "480", "640", "1080", "2160", "0").split()]
    front = [float(v) for v in run(jar, "viewmap", "0", "0", "240", "480", "480", "640", "1080", "2160", "1").split()]
    scale = max(1080 / 480, 2160 / 640)  # 3.375: height fills, width is cropped
    dx = (1080 - 480 * scale) / 2
    assert back == pytest.approx([dx, 0, 240 * scale + dx, 480 * scale], abs=1e-3)
    assert front == pytest.approx([1080 - back[2], 0, 1080 - back[0], 480 * scale], abs=1e-3)


def test_model_reloads_only_when_backend_accelerator_or_threads_change(jar):
    assert run(jar, "reload").split("\n")[:6] == [
        "first true", "same false", "thresholds false", "backend true", "accelerator true", "threads true"]


def test_kotlin_string_filter_survives_the_compiler(jar):
    assert run(jar, "literal") == NASTY


def test_kotlin_decoder_matches_python_reference(jar, detector_out, tmp_path):
    reference = np.load(detector_out / "validation/reference.npz")["output0"]
    total = 0
    for i, output in enumerate(reference[:4]):
        raw = output[0].astype("<f4")
        raw.tofile(tmp_path / f"{i}.f32")
        result = subprocess.run(java(jar, "decode", str(tmp_path / f"{i}.f32"), "336", "3", "v8", "1", "0.25", "0.45"),
                                capture_output=True, text=True, check=True)
        expected = python_decode(raw, "yolov8", 3)
        compare(parse_lines(result.stdout), expected)
        total += len(expected)
        assert "letterbox 0.500000 0.500000 0.0 40.0" in result.stderr
    assert total > 0
    rng = np.random.default_rng(3)
    v5 = np.concatenate([rng.uniform(10, 100, (50, 2)), rng.uniform(5, 30, (50, 2)), rng.random((50, 1)), rng.random((50, 3))], axis=1)
    v5 = v5.astype(np.float32)
    v5.tofile(tmp_path / "v5.f32")
    result = subprocess.run(java(jar, "decode", str(tmp_path / "v5.f32"), "50", "3", "v5", "0", "0.25", "0.45"),
                            capture_output=True, text=True, check=True)
    compare(parse_lines(result.stdout), python_decode(v5[None], "yolov5", 3))
