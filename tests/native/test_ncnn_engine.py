"""The app's C++ (ncnn_engine.cpp, postprocess.cpp, runner/edgepack_runner.cpp), built from a
generated Android project with its own CMakeLists.txt against ncnn (built from PyPI's source
distribution), run on converted models and held to the host reference."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgepack.devices import native_build
from edgepack.validate import detection, metrics
from native.conftest import HERE, artifact, compile_with_ncnn, cpp_dir, reference, run_cli, run_runner


@pytest.mark.parametrize("precision,cosine_floor", [("fp32", 0.999999), ("fp16", 0.9999)])
def test_runner_matches_the_reference(example_out, host_runner, tmp_path, precision, cosine_floor):
    entry = artifact(example_out, "ncnn", precision)
    got = run_runner([str(host_runner)], example_out, entry, tmp_path)
    want = reference(example_out, entry)
    assert got.shape == want.shape and np.all(np.isfinite(got))
    assert metrics.cosine(got, want) >= cosine_floor, (metrics.cosine(got, want), metrics.max_abs(got, want))
    if precision == "fp32":
        # coordinates are in input pixels (0..320), scores 0..1: fp32 agrees to float rounding
        assert metrics.max_abs(got, want) < 2e-3
    # the boxes: edgepack's Python decoder on the runner's output vs the reference detections
    manifest = json.loads((example_out / "manifest.json").read_text())
    post, classes = manifest["postprocessing"], manifest["model"]["num_classes"]
    ref = [detection.decode(o, "yolov8", post["score_threshold"], post["iou_threshold"], num_classes=classes) for o in want]
    dets = [detection.decode(o, "yolov8", post["score_threshold"], post["iou_threshold"], num_classes=classes) for o in got]
    assert sum(len(d) for d in ref) > 0
    assert detection.f1_agreement(ref, dets) >= (0.999 if precision == "fp32" else 0.95)


def test_cpp_decoder_matches_the_python_reference_on_engine_output(example_out, host_runner, tmp_path):
    entry = artifact(example_out, "ncnn", "fp32")
    got = run_runner([str(host_runner)], example_out, entry, tmp_path, inputs=3)
    gxx = native_build.require("g++", "g++")
    driver = tmp_path / "decode"
    subprocess.run([gxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{cpp_dir(example_out)}",
                    str(cpp_dir(example_out) / "postprocess.cpp"), str(HERE / "decode_driver.cpp"), "-o", str(driver)],
                   check=True, capture_output=True, text=True)
    manifest = json.loads((example_out / "manifest.json").read_text())
    post, classes = manifest["postprocessing"], manifest["model"]["num_classes"]
    _, channels, anchors = entry["outputs"][0]["shape"]
    assert channels == 4 + classes
    for i, output in enumerate(got):
        path = tmp_path / f"raw_{i}.f32"
        np.asarray(output, "<f4").tofile(path)
        text = subprocess.run([str(driver), str(path), str(anchors), str(classes), str(post["score_threshold"]),
                               str(post["iou_threshold"])], capture_output=True, text=True, check=True).stdout
        cpp = np.array([[float(v) for v in line.split()] for line in text.splitlines()]).reshape(-1, 6)
        py = detection.decode(output, "yolov8", post["score_threshold"], post["iou_threshold"], num_classes=classes)
        assert len(cpp) == len(py) > 0
        np.testing.assert_allclose(cpp[:, :4], py.boxes, atol=1e-3)
        np.testing.assert_allclose(cpp[:, 4], py.scores, atol=1e-5)
        np.testing.assert_array_equal(cpp[:, 5], py.classes)


@pytest.fixture(scope="module")
def odd_classifier(tmp_path_factory) -> Path:
    """A classifier at 225x225: w*h = 50625 is not a multiple of 4, so ncnn pads each channel."""
    import torch

    import edgepack
    from models import tiny_classifier

    out = tmp_path_factory.mktemp("odd") / "out"
    edgepack.convert(tiny_classifier(), torch.rand(1, 3, 225, 225), task="classify", formats="ncnn",
                     precisions="fp32", output=str(out))
    result = run_cli("build", "--target", "android", "-o", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    return out


def test_odd_input_size_matches_the_reference(odd_classifier, ncnn_host, tmp_path):
    runner = native_build.build_runner(cpp_dir(odd_classifier), "x86_64", tmp_path / "edgepack-runner")
    entry = artifact(odd_classifier, "ncnn", "fp32")
    got = run_runner([str(runner)], odd_classifier, entry, tmp_path / "run")
    want = reference(odd_classifier, entry)
    assert metrics.cosine(got, want) >= 0.99999 and metrics.max_abs(got, want) < 1e-3
    assert (got.reshape(len(got), -1).argmax(1) == want.reshape(len(want), -1).argmax(1)).all()


def test_wrapping_a_chw_buffer_is_wrong_at_odd_sizes(odd_classifier, example_out, ncnn_host, tmp_path):
    """The negative control: the old `ncnn::Mat(w, h, 3, ptr)` input gives other answers at 225x225
    (channel stride padded to 16 bytes), the same at 320x320."""
    checker = compile_with_ncnn([HERE / "mat_stride_check.cpp"], ncnn_host, tmp_path / "check")
    diffs = {}
    for name, out in (("odd", odd_classifier), ("even", example_out)):
        entry = artifact(out, "ncnn", "fp32")
        manifest = json.loads((out / "manifest.json").read_text())
        _, _, h, w = manifest["preprocessing"]["input_shape"]
        x = np.load(out / manifest["validation"]["inputs"])["inputs"][0]
        np.asarray(x, "<f4").tofile(tmp_path / f"{name}.f32")
        result = subprocess.run([str(checker), str(out / entry["files"]["param"]), str(out / entry["files"]["bin"]),
                                 entry["ncnn"]["input_blob"], entry["ncnn"]["output_blobs"][0], str(w), str(h),
                                 str(tmp_path / f"{name}.f32")], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        misplaced, diff = result.stdout.split()
        diffs[name] = (int(misplaced), float(diff))
    # 320x320: the wrapped buffer is read as it is; 225x225: channels 1 and 2 are read 3 and 6
    # values late (cstep 50628, not 50625), so nearly every value of them is misplaced
    assert diffs["even"] == (0, 0.0), diffs
    assert diffs["odd"][0] > 225 * 225 and diffs["odd"][1] > 0.0, diffs


def test_runner_reports_a_model_that_does_not_load(host_runner, example_out, tmp_path):
    entry = json.loads(json.dumps(artifact(example_out, "ncnn", "fp32")))
    (tmp_path / "broken.param").write_text("7767517\n1 1\nNoSuchLayer l0 0 1 in0\n")
    entry["files"] = {"param": str(tmp_path / "broken.param"), "bin": entry["files"]["bin"]}
    with pytest.raises(AssertionError, match="not built into this runner|cannot"):
        run_runner([str(host_runner)], example_out, entry, tmp_path / "run", inputs=1)
