"""Keras sources: a .keras classifier made here (Keras 3, in a child interpreter) converted to
every format, and a file that is not a Keras model refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import load_manifest, run_cli

MAKE_MODEL = r"""
import sys
import keras
keras.utils.set_random_seed(0)
inputs = keras.Input((64, 64, 3))
x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inputs)
x = keras.layers.BatchNormalization()(x)
x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
x = keras.layers.Conv2D(64, 1, activation="swish")(x)
x = keras.layers.MaxPooling2D()(x)
x = keras.layers.GlobalAveragePooling2D()(x)
outputs = keras.layers.Dense(4, activation="softmax")(x)
keras.Model(inputs, outputs).save(sys.argv[1])
"""


@pytest.fixture(scope="module")
def keras_out(tmp_path_factory):
    from edgepack.datasets.shapes import write_classification_set

    folder = tmp_path_factory.mktemp("keras")
    model = folder / "classifier.keras"
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    subprocess.run([sys.executable, "-c", MAKE_MODEL, str(model)], check=True, env=env, capture_output=True)
    labels = folder / "labels.txt"
    labels.write_text("circle\nsquare\ntriangle\nstar\n")
    calib = write_classification_set(folder / "calib", 24, seed=3)
    out = folder / "out"
    result = run_cli(
        "convert", str(model), "--task", "classify", "--labels", str(labels), "--formats", "tflite,coreml,ncnn",
        "--precisions", "fp32,fp16,int8-dynamic,int8,int8-weight", "--calib", str(calib), "-o", str(out),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return out


def test_keras_classifier_converts_to_every_format(keras_out):
    m = load_manifest(keras_out)
    assert m["model"]["source_kind"] == "keras"
    assert m["reference"]["keras_vs_onnx_max_abs"] < 1e-4
    arts = {e["id"]: e for e in m["artifacts"]}
    for precision in ("fp32", "fp16", "int8-dynamic", "int8"):
        v = arts[f"tflite-{precision}"]["validation"]
        assert v["task_metric"] == "top1_agreement" and v["status"] in ("ok", "degraded")
        assert arts[f"tflite-{precision}"]["inputs"][0]["layout"] == "NHWC"
    assert arts["tflite-fp32"]["validation"]["cosine"] > 0.99999
    assert arts["tflite-int8"]["tflite"]["io"]["inputs"][0]["dtype"] == "int8"
    assert arts["ncnn-fp32"]["validation"]["cosine"] > 0.99999
    for precision in ("fp16", "fp32", "int8-weight"):
        assert arts[f"coreml-{precision}"]["status"] == "ok", arts[f"coreml-{precision}"]["validation"]["reasons"]


def test_keras_metadata_has_labels(keras_out):
    from edgepack.formats.tflite_metadata import summary

    entry = next(e for e in load_manifest(keras_out)["artifacts"] if e["id"] == "tflite-fp16")
    facts = summary(keras_out / entry["files"]["model"])
    assert facts["labels"] == ["circle", "square", "triangle", "star"]
    assert facts["output"] == "probability" and facts["std"] == [255.0, 255.0, 255.0]


def test_a_file_that_is_not_a_keras_model(tmp_path):
    bogus = tmp_path / "model.keras"
    bogus.write_bytes(b"this is not a zip archive")
    out = tmp_path / "out"
    result = run_cli("convert", str(bogus), "--task", "classify", "--formats", "tflite", "-o", str(out))
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "not" in lines[0] and "Keras" in lines[0]
    assert not out.exists()


def test_a_savedmodel_folder_is_refused_with_the_fix(tmp_path):
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"")
    result = run_cli("convert", str(folder), "--task", "classify", "--formats", "tflite", "-o", str(tmp_path / "out"))
    assert result.returncode == 3 and 'model.save("model.keras")' in result.stderr
