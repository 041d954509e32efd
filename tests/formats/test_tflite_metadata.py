"""edgepack's own TFLite Metadata writer and reader, held to tflite-support's schema through flatc
(tflite_metadata_reference.py), to LiteRT's flatbuffer reader and interpreter, and to zipfile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tflite_metadata_reference import (  # noqa: F401  (fixtures)
    flatc, flatc_encode, flatc_json, litert_metadata_buffer, metadata_schema_fbs, packed_files, same,
)

from edgepack.errors import ConversionError
from edgepack.formats import tflite_metadata as tm
from edgepack.formats import tflite_metadata_schema as schema

LABELS = ["circle", 'a "quoted" label', "ünïcode", "star", "square"]
FACTS = {
    "name": "tiny", "description": "a test model", "version": "2.1", "author": "edgepack tests", "license": "Apache-2.0",
    "task": "classify", "head": "yolov8", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
    "color_order": "rgb", "resize": "stretch",
}


def _tiny_models(folder: Path) -> dict[str, Path]:
    import litert_torch
    import torch

    class Net(torch.nn.Module):
        def __init__(self, softmax: bool, features: bool, wide: bool = False) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)
            self.wide = torch.nn.Linear(4, 512) if wide else None
            self.wide2 = torch.nn.Linear(512, 512) if wide else None  # > 256 KiB of fp16 weights: stored after the flatbuffer
            self.fc = torch.nn.Linear(512 if wide else 4, 5)
            self.softmax, self.features = softmax, features

        def forward(self, x):
            y = self.conv(x).mean((2, 3))
            h = self.wide2(torch.relu(self.wide(y))) if self.wide is not None else y
            scores = self.fc(h)
            scores = torch.softmax(scores, 1) if self.softmax else scores
            return (scores, y) if self.features else scores

    torch.manual_seed(0)
    paths = {}
    for name, net in (("probabilities", Net(True, False)), ("logits", Net(False, False)), ("two", Net(True, True)),
                      ("wide", Net(True, False, wide=True))):
        paths[name] = folder / f"{name}.tflite"
        module = litert_torch.to_channel_last_io(net.eval(), args=[0]).eval()
        litert_torch.convert(module, (torch.rand(1, 16, 16, 3),)).export(str(paths[name]))
    return paths


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return _tiny_models(tmp_path_factory.mktemp("tiny-tflite"))


def _run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def _facts(**extra) -> dict:
    return {**FACTS, "classifier_output": "probabilities", "outputs": [{"name": "scores", "shape": [1, 5]}], **extra}


def _same_outputs(before: Path, after: Path) -> None:
    x = np.random.default_rng(3).random((1, 16, 16, 3), dtype=np.float32)
    want, got = _run(before, x), _run(after, x)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


# ------------------------------------------------------------ the schema, against tflite-support's .fbs


def _every_field() -> dict:
    """A ModelMetadata that fills every table, field, union member and most enum values of schema 1.5.0."""
    def file(name: str, kind: str) -> dict:
        return {"name": name, "description": f"about {name}", "type": kind, "locale": "de", "version": "3"}

    return {
        "name": "every field", "description": "ünïcode \"quotes\" \\ backslash", "version": "9",
        "subgraph_metadata": [{
            "name": "main", "description": "the only subgraph",
            "input_tensor_metadata": [{
                "name": "image", "description": "in", "dimension_names": ["batch", "height", "width", "channels"],
                "content": {"content_properties_type": "ImageProperties",
                            "content_properties": {"color_space": "GRAYSCALE", "default_size": {"width": 640, "height": 480}},
                            "range": {"min": -3, "max": 7}},
                "process_units": [{"options_type": "NormalizationOptions",
                                   "options": {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}}],
                "stats": {"max": [2.2489083], "min": [-2.117904]},
                "associated_files": [file("vocab.txt", "VOCABULARY")],
            }],
            "output_tensor_metadata": [
                {"name": "features", "content": {"content_properties_type": "FeatureProperties", "content_properties": {}}},
                {"name": "boxes", "content": {"content_properties_type": "BoundingBoxProperties",
                                              "content_properties": {"index": [1, 0, 3, 2], "type": "CENTER", "coordinate_type": "PIXEL"}}},
                {"name": "audio", "content": {"content_properties_type": "AudioProperties",
                                              "content_properties": {"sample_rate": 16000, "channels": 2}}},
                {"name": "text", "process_units": [
                    {"options_type": "ScoreCalibrationOptions", "options": {"score_transformation": "INVERSE_LOGISTIC", "default_score": 0.25}},
                    {"options_type": "ScoreThresholdingOptions", "options": {"global_score_threshold": 0.5}},
                    {"options_type": "BertTokenizerOptions", "options": {"vocab_file": [file("bert.txt", "TENSOR_AXIS_LABELS")]}},
                    {"options_type": "SentencePieceTokenizerOptions",
                     "options": {"sentencePiece_model": [file("sp.model", "DESCRIPTIONS")], "vocab_file": [file("sp.txt", "TENSOR_VALUE_LABELS")]}},
                    {"options_type": "RegexTokenizerOptions",
                     "options": {"delim_regex_pattern": "[ ,]+", "vocab_file": [file("index.bin", "SCANN_INDEX_FILE")]}},
                ]},
            ],
            "associated_files": [file("calibration.csv", "TENSOR_AXIS_SCORE_CALIBRATION")],
            "input_process_units": [{"options_type": "NormalizationOptions", "options": {"mean": [1.0], "std": [2.0]}}],
            "output_process_units": [{"options_type": "ScoreThresholdingOptions", "options": {"global_score_threshold": 0.125}}],
            "input_tensor_groups": [{"name": "in", "tensor_names": ["image"]}],
            "output_tensor_groups": [{"name": "out", "tensor_names": ["features", "boxes"]}],
            "custom_metadata": [{"name": "blob", "data": [0, 1, 2, 254, 255]}],
        }],
        "author": "someone", "license": "MIT", "associated_files": [file("model.md", "DESCRIPTIONS")],
        "min_parser_version": "1.5.0",
    }


def test_every_field_decodes_with_the_official_schema(flatc_json):
    """Field ids, types, enum and union values of the hand-written tables equal tflite-support's
    metadata_schema.fbs: flatc reads what edgepack writes back to the same document."""
    doc = _every_field()
    buffer = schema.build(doc)
    assert buffer[4:8] == b"M001"
    same(flatc_json(buffer), doc)


def test_reader_reads_what_flatc_writes(flatc_encode):
    doc = _every_field()
    same(schema.read(flatc_encode(doc)), doc)


def test_reader_and_flatc_agree_on_edgepack_metadata(tiny, tmp_path, flatc_json):
    out = tmp_path / "m.tflite"
    tm.write_metadata(tiny["two"], out, _facts(outputs=[{"name": "scores", "shape": [1, 5]}, {"name": "embedding", "shape": [1, 4]}]), LABELS)
    buffer = litert_metadata_buffer(out)
    same(schema.read(buffer), flatc_json(buffer))
    same(tm.read_metadata(out)["metadata"], flatc_json(buffer))


@pytest.mark.parametrize(("doc", "version"), [
    # expected values measured with tflite-support 0.4.4's native GetMinimumMetadataParserVersion
    ({"name": "plain"}, "1.0.0"),
    ({"associated_files": [{"name": "v", "type": "VOCABULARY"}]}, "1.0.1"),
    ({"subgraph_metadata": [{"input_process_units": []}]}, "1.1.0"),
    ({"subgraph_metadata": [{"input_tensor_metadata": [{"process_units": [{"options_type": "BertTokenizerOptions", "options": {}}]}]}]}, "1.1.0"),
    ({"subgraph_metadata": [{"output_tensor_groups": [{"name": "g"}]}]}, "1.2.0"),
    ({"subgraph_metadata": [{"input_tensor_metadata": [{"process_units": [{"options_type": "RegexTokenizerOptions", "options": {}}]}]}]}, "1.2.1"),
    ({"subgraph_metadata": [{"input_tensor_metadata": [{"content": {"content_properties_type": "AudioProperties", "content_properties": {}}}]}]}, "1.3.0"),
    ({"associated_files": [{"name": "i", "type": "SCANN_INDEX_FILE"}]}, "1.4.0"),
    ({"associated_files": [{"name": "v", "version": "2"}]}, "1.4.1"),
    ({"subgraph_metadata": [{"custom_metadata": [{"name": "c"}]}]}, "1.5.0"),
])
def test_min_parser_version(doc, version):
    assert schema.min_parser_version(doc) == version


def test_damaged_metadata_is_refused():
    buffer = schema.build({"name": "x", "subgraph_metadata": [{"name": "g"}]})
    with pytest.raises(ValueError, match="M001"):
        schema.read(b"XXXXXXXX" + buffer[8:])
    with pytest.raises(ValueError, match="damaged"):
        schema.read(buffer[:4] + b"M001" + b"\xff" * 4)
    with pytest.raises(ValueError, match="no field"):
        schema.build({"name": "x", "colour": "red"})
    with pytest.raises(ValueError, match="unknown value"):
        schema.build({"associated_files": [{"name": "x", "type": "LABELS"}]})


# ------------------------------------------------------------ edgepack's metadata on real models


def test_classifier_metadata(tiny, tmp_path, flatc_json):
    out = tmp_path / "cls.tflite"
    written = tm.write_metadata(tiny["probabilities"], out, _facts(), LABELS)
    doc = flatc_json(litert_metadata_buffer(out))
    same(doc, written)
    assert doc["min_parser_version"] == "1.0.0"
    assert doc["name"] == "tiny" and doc["version"] == "2.1" and doc["author"] == "edgepack tests" and doc["license"] == "Apache-2.0"
    graph = doc["subgraph_metadata"][0]
    image = graph["input_tensor_metadata"][0]
    assert image["name"] == "image" and image["content"]["content_properties_type"] == "ImageProperties"
    assert image["content"]["content_properties"] == {"color_space": "RGB", "default_size": {"width": 16, "height": 16}}
    norm = image["process_units"][0]
    assert norm["options_type"] == "NormalizationOptions"
    assert norm["options"]["mean"] == pytest.approx(FACTS["mean"]) and norm["options"]["std"] == pytest.approx(FACTS["std"])
    assert image["stats"]["min"] == pytest.approx([-123.675 / 58.395, -116.28 / 57.12, -103.53 / 57.375], rel=1e-6)
    [scores] = graph["output_tensor_metadata"]
    assert scores["name"] == "probability" and scores["content"]["content_properties_type"] == "FeatureProperties"
    assert "softmax applied" in scores["description"] and "Shape [1, 5], float32" in scores["description"]
    assert scores["stats"] == {"max": [1.0], "min": [0.0]}
    assert scores["associated_files"] == [{"name": "labels.txt", "description": "Labels for categories that the model can recognize.",
                                           "type": "TENSOR_AXIS_LABELS"}]
    files = packed_files(out)
    assert list(files) == ["labels.txt"] and files["labels.txt"].compress_type == 0  # stored: what Android's reader takes
    import zipfile

    with zipfile.ZipFile(out) as archive:
        assert archive.read("labels.txt").decode("utf-8").splitlines() == LABELS
    _same_outputs(tiny["probabilities"], out)
    facts = tm.summary(out)
    assert facts["labels"] == LABELS and facts["output"] == "probability" and facts["min_parser_version"] == "1.0.0"


def test_logits_are_not_called_probability(tiny, tmp_path, flatc_json):
    x = np.random.default_rng(0).random((4, 1, 16, 16, 3), dtype=np.float32)
    logits = np.stack([_run(tiny["logits"], xi)[0] for xi in x])
    probabilities = np.stack([_run(tiny["probabilities"], xi)[0] for xi in x])
    assert tm.classifier_output_kind(logits) == "logits"
    assert tm.classifier_output_kind(probabilities) == "probabilities"
    assert tm.classifier_output_kind(np.full((2, 1, 4), 0.5)) == "logits"  # in [0, 1] but not summing to 1
    out = tmp_path / "logits.tflite"
    tm.write_metadata(tiny["logits"], out, _facts(classifier_output="logits"), LABELS)
    [scores] = flatc_json(litert_metadata_buffer(out))["subgraph_metadata"][0]["output_tensor_metadata"]
    assert scores["name"] == "logits" and "no softmax" in scores["description"] and "stats" not in scores
    assert scores["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    with pytest.raises(ValueError, match="classifier_output"):
        tm.write_metadata(tiny["logits"], tmp_path / "x.tflite", _facts(classifier_output=None), LABELS)
    assert not (tmp_path / "x.tflite").exists()


def test_two_outputs_are_both_described(tiny, tmp_path, flatc_json):
    out = tmp_path / "two.tflite"
    canonical = [{"name": "scores", "shape": [1, 5]}, {"name": "embedding", "shape": [1, 4]}]
    tm.write_metadata(tiny["two"], out, _facts(outputs=canonical), LABELS)
    outputs = flatc_json(litert_metadata_buffer(out))["subgraph_metadata"][0]["output_tensor_metadata"]
    assert [o["name"] for o in outputs] == ["probability", "embedding"]
    assert outputs[0]["associated_files"][0]["name"] == "labels.txt" and "associated_files" not in outputs[1]
    assert outputs[1]["description"] == "Model output embedding. Shape [1, 4], float32."
    _same_outputs(tiny["two"], out)
    assert list(tm.summary(out)["outputs"]) == ["probability", "embedding"]


def test_detector_and_other_tasks(tiny, tmp_path, flatc_json):
    canonical = [{"name": "output0", "shape": [1, 5]}, {"name": "features", "shape": [1, 4]}]
    det = tmp_path / "det.tflite"
    tm.write_metadata(tiny["two"], det, {**FACTS, "task": "detect", "outputs": canonical}, LABELS)
    outputs = flatc_json(litert_metadata_buffer(det))["subgraph_metadata"][0]["output_tensor_metadata"]
    assert [o["name"] for o in outputs] == ["output0", "features"]
    assert outputs[0]["description"].startswith(tm.HEAD_DESCRIPTIONS["yolov8"]) and "[1, 4 + C, N]" in outputs[0]["description"]
    assert outputs[0]["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    other = tmp_path / "tensor.tflite"
    tm.write_metadata(tiny["two"], other, {**FACTS, "task": "tensor", "outputs": canonical}, [])
    outputs = flatc_json(litert_metadata_buffer(other))["subgraph_metadata"][0]["output_tensor_metadata"]
    assert [(o["name"], o["description"]) for o in outputs] == [
        ("output0", "Model output output0. Shape [1, 5], float32."), ("features", "Model output features. Shape [1, 4], float32.")]
    assert packed_files(det).keys() == {"labels.txt"}
    import zipfile

    with pytest.raises(zipfile.BadZipFile):  # no labels: nothing appended
        packed_files(other)


def test_outputs_must_match_the_canonical_outputs(tiny, tmp_path):
    out = tmp_path / "bad.tflite"
    with pytest.raises(ConversionError, match="do not match"):
        tm.write_metadata(tiny["two"], out, _facts(), LABELS)  # one canonical output for a two-output model
    with pytest.raises(ConversionError, match="do not match"):
        tm.write_metadata(tiny["probabilities"], out, _facts(outputs=[{"name": "scores", "shape": [1, 7]}]), LABELS)
    assert not out.exists()


def test_rewriting_replaces_the_metadata(tiny, tmp_path, flatc_json):
    first, second = tmp_path / "first.tflite", tmp_path / "second.tflite"
    tm.write_metadata(tiny["probabilities"], first, _facts(), LABELS)
    tm.write_metadata(first, second, _facts(name="renamed"), LABELS[:2])
    assert flatc_json(litert_metadata_buffer(second))["name"] == "renamed"  # one TFLITE_METADATA entry (checked there)
    assert tm.summary(second)["labels"] == LABELS[:2] and list(packed_files(second)) == ["labels.txt"]
    _same_outputs(tiny["probabilities"], second)
    again = tmp_path / "again.tflite"
    tm.write_metadata(first, again, _facts(name="renamed"), LABELS[:2])
    assert again.read_bytes() == second.read_bytes()  # reproducible bytes


def test_buffers_stored_after_the_flatbuffer_are_kept(tiny, tmp_path, flatc_json):
    """ai-edge-quantizer writes buffers over 256 KiB after the flatbuffer (offset/size)."""
    from ai_edge_litert import schema_py_generated as fb

    from edgepack.quantize import tflite_quant

    fp16 = tflite_quant.fp16(tiny["wide"], tmp_path / "fp16.tflite")
    model = fb.Model.GetRootAs(fp16.read_bytes(), 0)
    assert any(model.Buffers(i).Offset() > 1 for i in range(model.BuffersLength()))
    out = tmp_path / "fp16-meta.tflite"
    tm.write_metadata(fp16, out, _facts(), LABELS)
    _same_outputs(fp16, out)
    assert flatc_json(litert_metadata_buffer(out))["subgraph_metadata"][0]["output_tensor_metadata"][0]["name"] == "probability"


def test_int8_io_is_described(tiny, tmp_path, flatc_json):
    from edgepack.quantize import tflite_quant

    calibration = np.random.default_rng(0).random((8, 1, 16, 16, 3), dtype=np.float32)
    int8 = tflite_quant.full_int8(tiny["probabilities"], tmp_path / "int8.tflite", lambda: calibration, "int8", "int8", [])
    out = tmp_path / "int8-meta.tflite"
    tm.write_metadata(int8, out, _facts(), LABELS)
    graph = flatc_json(litert_metadata_buffer(out))["subgraph_metadata"][0]
    image, scores = graph["input_tensor_metadata"][0], graph["output_tensor_metadata"][0]
    assert "quantized to int8" in image["description"] and "stats" not in image
    assert "Shape [1, 5], int8" in scores["description"] and "zero_point" in scores["description"] and "stats" not in scores


def test_reader_on_models_without_metadata(tiny, tmp_path):
    assert tm.read_metadata(tiny["probabilities"]) == {} and tm.summary(tiny["probabilities"]) == {}
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a TFLite model"):
        tm.read_metadata(junk)
    assert "not a TFLite model" in tm.summary(junk)["unreadable"]


def test_no_tflite_support_anywhere(tiny, tmp_path):
    """Writing and reading work with tflite-support made unimportable, and edgepack never imports it."""
    package = Path(tm.__file__).parent.parent
    for source in package.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert "tensorflow_lite_support" not in text and "import tflite_support" not in text, source
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tflite_support", "tensorflow_lite_support"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from pathlib import Path
from edgepack.formats import tflite_metadata as tm
facts = {_facts()!r}
tm.write_metadata(Path({str(tiny["probabilities"])!r}), Path({str(tmp_path / "blocked.tflite")!r}), facts, ["a", "b"])
print(tm.summary(Path({str(tmp_path / "blocked.tflite")!r}))["labels"])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "['a', 'b']"


def test_logits_classifier_through_the_pipeline(tmp_path, flatc_json):
    """No softmax in the model: the build measures it on the ONNX reference and says `logits`."""
    import torch

    import edgepack
    from conftest import load_manifest

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 3)).eval()
    out = tmp_path / "out"
    edgepack.convert(net, torch.rand(1, 3, 32, 32), task="classify", formats="tflite", precisions="fp32", output=str(out))
    [entry] = load_manifest(out)["artifacts"]
    assert entry["tflite"]["metadata"] == "TFLite Metadata (classify; outputs logits)"
    [scores] = flatc_json(litert_metadata_buffer(out / entry["files"]["model"]))["subgraph_metadata"][0]["output_tensor_metadata"]
    assert scores["name"] == "logits" and "no softmax" in scores["description"]
    assert entry["validation"]["task_agreement"] == 1.0
