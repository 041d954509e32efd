"""TFLite Metadata (the flatbuffer schema of tflite-support, packed into the model file).

Written with tflite-support's metadata writers and read back with its MetadataDisplayer.
tflite-support 0.4.4 pins protobuf < 4, so it is installed without its dependencies and imported
as `tensorflow_lite_support.metadata.*`, whose modules need only flatbuffers, numpy and the
wheel's own native extensions (see README "Dependencies").

Classifiers get the image-classifier metadata (what Android's Task Library / ML Binding read).
A YOLO-style detector has one raw output tensor; no stock writer describes that honestly, so it
gets general metadata: image input with normalization, the output's layout and decoding in
words, and the labels attached to the output as TENSOR_AXIS_LABELS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgepack.native import captured_native_output, quiet_tensorflow

HEAD_DESCRIPTIONS = {
    "yolov8": (
        "YOLOv8-style raw head, shape [1, 4 + C, N] for N candidate boxes: rows 0-3 are cx, cy, w, h "
        "in input pixels of the letterboxed image, rows 4.. are per-class scores already passed through "
        "a sigmoid. Decode: per candidate take the best class, keep score >= threshold, convert to corners, "
        "run class-wise NMS (IoU 0.45), undo the letterbox."
    ),
    "yolov5": (
        "YOLOv5-style raw head, shape [1, N, 5 + C]: cx, cy, w, h in input pixels, objectness, per-class "
        "scores (sigmoid applied). Score = objectness * class score; then threshold, NMS, undo the letterbox."
    ),
    "raw": "Raw model output; the app decodes it.",
}


def _writers():
    quiet_tensorflow()
    with captured_native_output("tflite-support", (1, 2)):
        from tensorflow_lite_support.metadata import metadata_schema_py_generated as schema
        from tensorflow_lite_support.metadata import schema_py_generated as tflite_schema
        from tensorflow_lite_support.metadata.python.metadata_writers import image_classifier, metadata_info, metadata_writer
    return schema, tflite_schema, image_classifier, metadata_info, metadata_writer


def inline_buffers(model_bytes: bytes) -> bytearray:
    """ai-edge-quantizer stores large weight buffers after the flatbuffer (offset/size); the
    metadata populator predates that and would drop them. LiteRT's own reader resolves them."""
    from ai_edge_litert.tools import flatbuffer_utils

    return bytearray(flatbuffer_utils.convert_object_to_bytearray(flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))))


def write_metadata(model_path: Path, out_path: Path, facts: dict[str, Any], labels_file: Path) -> None:
    """facts: name, description, version, author, license, task, head, mean, std, color_order, input_dtype."""
    schema, tflite_schema, image_classifier, info, writer = _writers()
    buffer = inline_buffers(model_path.read_bytes())
    general = info.GeneralMd(
        name=facts["name"], version=facts["version"], description=facts["description"],
        author=facts["author"] or None, licenses=facts["license"] or None,
    )
    color = schema.ColorSpaceType.RGB if facts["color_order"] == "rgb" else schema.ColorSpaceType.UNKNOWN
    tensor_type = tflite_schema.TensorType.INT8 if facts["input_dtype"] == "int8" else tflite_schema.TensorType.FLOAT32
    image = info.InputImageTensorMd(
        name="image",
        description=(
            f"{facts['color_order'].upper()} image, NHWC, {facts['resize']} to the input size; "
            "normalized as (pixel - mean) / std per channel"
            + ("; then quantized with the tensor's scale and zero point" if facts["input_dtype"] == "int8" else "")
        ),
        norm_mean=[float(m) for m in facts["mean"]],
        norm_std=[float(s) for s in facts["std"]],
        color_space_type=color,
        tensor_type=tensor_type,
    )
    if facts["task"] == "classify":
        output = info.ClassificationTensorMd(
            name="probability", description="Scores of the labels, in labels-file order.",
            label_files=[info.LabelFileMd(str(labels_file))],
        )
        md = image_classifier.MetadataWriter.create_from_metadata_info(buffer, general, image, output)
    else:
        output = info.TensorMd(
            name="detections", description=HEAD_DESCRIPTIONS[facts["head"]],
            associated_files=[info.LabelFileMd(str(labels_file))],
        )
        md = writer.MetadataWriter.create_from_metadata_info(buffer, general, [image], [output], [str(labels_file)])
    with captured_native_output("tflite-support", (1, 2)):
        out_path.write_bytes(md.populate())


def read_metadata(model_path: Path) -> dict[str, Any]:
    """The metadata as JSON plus the packed files, read with tflite-support's displayer."""
    quiet_tensorflow()
    with captured_native_output("tflite-support", (1, 2)):
        from tensorflow_lite_support.metadata.python import metadata

        try:
            displayer = metadata.MetadataDisplayer.with_model_file(str(model_path))
        except ValueError:
            return {}
        doc = json.loads(displayer.get_metadata_json())
        files = displayer.get_packed_associated_file_list()
        labels = {}
        for name in files:
            labels[name] = displayer.get_associated_file_buffer(name).decode("utf-8").splitlines()
    return {"metadata": doc, "associated_files": labels}


def summary(model_path: Path) -> dict[str, Any]:
    """What `edgepack inspect` and the tests look at: name, normalization, colour space, labels."""
    read = read_metadata(model_path)
    if not read:
        return {}
    doc = read["metadata"]
    graph = doc["subgraph_metadata"][0]
    image = graph["input_tensor_metadata"][0]
    norm = next((u["options"] for u in image.get("process_units", []) if u["options_type"] == "NormalizationOptions"), {})
    output = graph["output_tensor_metadata"][0]
    label_file = next((f["name"] for f in output.get("associated_files", [])), None)
    return {
        "name": doc.get("name"),
        "description": doc.get("description"),
        "version": doc.get("version"),
        "author": doc.get("author"),
        "license": doc.get("license"),
        "input": image.get("name"),
        "color_space": image.get("content", {}).get("content_properties", {}).get("color_space"),
        "mean": norm.get("mean"),
        "std": norm.get("std"),
        "output": output.get("name"),
        "output_description": output.get("description"),
        "labels": read["associated_files"].get(label_file, []) if label_file else [],
    }
