"""TFLite Metadata on edgepack's .tflite artifacts, written and read by edgepack itself.

The layout is the one tflite-support's MetadataPopulator defines and Android's Task Library / ML
Binding read:
- the ModelMetadata flatbuffer (`tflite_metadata_schema`) in a model buffer that a `Model.metadata`
  entry named "TFLITE_METADATA" points to (TFLite schema.fbs: Model.metadata[] {name, buffer},
  Model.buffers[]); the model flatbuffer is read and rewritten with LiteRT's own schema module;
- the associated files (labels.txt) as a zip archive appended after the flatbuffer, entries stored
  uncompressed (tflite-support's Java reader takes only stored entries) and with a fixed timestamp,
  so the same build gives the same bytes.

What is described: the image input (colour space, size, normalization as (pixel - mean) / std,
value range), then every output in the canonical order. A classifier's scores are named
`probability` or `logits` after what the model really outputs, with the labels attached as
TENSOR_AXIS_LABELS; a YOLO-style detector's raw head is described in words (no stock metadata
describes it honestly); any other output gets its name, shape and type.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import ConversionError
from edgepack.formats import tflite_metadata_schema as schema

METADATA_NAME = "TFLITE_METADATA"
LABELS_FILE = "labels.txt"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

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
CLASSIFIER_OUTPUTS = {  # manifest value -> metadata tensor name
    "probabilities": "probability",
    "logits": "logits",
}


def classifier_output_kind(scores: np.ndarray) -> str:
    """"probabilities" when the scores of every sample (axis 0) lie in [0, 1] and sum to 1 within
    1e-3, else "logits"."""
    rows = np.asarray(scores, np.float64).reshape(len(scores), -1)
    in_range = bool(np.all(rows >= -1e-6) and np.all(rows <= 1 + 1e-6))
    return "probabilities" if in_range and bool(np.all(np.abs(rows.sum(axis=1) - 1) <= 1e-3)) else "logits"


# ---------------------------------------------------------------- the model flatbuffer


def _read_model(model_bytes: bytes) -> Any:
    """LiteRT's object model of the flatbuffer. ai-edge-quantizer stores large buffers after the
    flatbuffer (offset/size); LiteRT's reader inlines them, so rewriting the model keeps them."""
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))


def _tensor_facts(model: Any, indices: list[int]) -> list[dict[str, Any]]:
    from ai_edge_litert import schema_py_generated as fb

    types = {v: k.lower() for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    tensors = model.subgraphs[0].tensors
    return [{"shape": [int(d) for d in tensors[i].shape], "dtype": types.get(tensors[i].type, str(tensors[i].type))} for i in indices]


def attach(model_bytes: bytes, metadata: dict[str, Any], files: dict[str, bytes]) -> bytes:
    """The model with `metadata` as its TFLITE_METADATA (replacing an existing one) and `files`
    packed after it. `min_parser_version` is set from the fields present."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    recorded = _recorded_files(metadata)
    if set(recorded) != set(files):
        raise ValueError(f"metadata names files {sorted(recorded)} but {sorted(files)} are given")
    metadata = {**metadata, "min_parser_version": schema.min_parser_version(metadata)}
    model = _read_model(model_bytes)
    data = fb.BufferT()
    data.data = np.frombuffer(schema.build(metadata), np.uint8)
    model.metadata = model.metadata or []
    entry = next((m for m in model.metadata if _text(m.name) == METADATA_NAME), None)
    if entry is None:
        entry = fb.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(model.buffers)
        model.buffers.append(data)
        model.metadata.append(entry)
    else:
        model.buffers[entry.buffer] = data
    out = io.BytesIO(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    if files:
        out.seek(0, io.SEEK_END)
        with zipfile.ZipFile(out, "a", zipfile.ZIP_STORED) as archive:  # "a" on a non-zip file appends an archive
            for name, content in files.items():
                archive.writestr(zipfile.ZipInfo(name, _ZIP_TIME), content, zipfile.ZIP_STORED)
    return out.getvalue()


def _text(value: str | bytes | None) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value or ""


def _recorded_files(metadata: dict[str, Any]) -> list[str]:
    """Names of the AssociatedFile entries anywhere in the metadata (the files to pack)."""
    names: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("associated_files", "vocab_file", "sentencePiece_model"):
                    names.extend(f["name"] for f in item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(metadata)
    return names


# ---------------------------------------------------------------- what edgepack writes


def build_metadata(facts: dict[str, Any], image: dict[str, Any], outputs: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """ModelMetadata for one image input and `outputs` (canonical order; each: name, shape, dtype).
    facts: name, description, version, author, license, task, head, mean, std, color_order, resize,
    classifier_output ("logits" | "probabilities", classifiers only)."""
    task = facts["task"]
    if task == "classify" and facts.get("classifier_output") not in CLASSIFIER_OUTPUTS:
        raise ValueError(f"classifier_output must be one of {', '.join(CLASSIFIER_OUTPUTS)}, got {facts.get('classifier_output')!r}")
    tensors = [_output_metadata(i, out, facts, bool(labels)) for i, out in enumerate(outputs)]
    graph = {"input_tensor_metadata": [_image_metadata(facts, image)], "output_tensor_metadata": tensors}
    doc = {
        "name": facts["name"],
        "description": facts["description"],
        "version": facts["version"],
        "subgraph_metadata": [graph],
        "author": facts.get("author"),
        "license": facts.get("license"),
    }
    return {key: value for key, value in doc.items() if value}


def _image_metadata(facts: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    _, height, width, channels = image["shape"]
    mean, std = [float(m) for m in facts["mean"]], [float(s) for s in facts["std"]]
    color = "GRAYSCALE" if channels == 1 else "RGB" if facts["color_order"] == "rgb" else "UNKNOWN"  # the schema has no BGR
    quantized = image["dtype"] in ("int8", "uint8")
    md: dict[str, Any] = {
        "name": "image",
        "description": (
            f"{facts['color_order'].upper()} image, NHWC, {facts['resize']} to {width}x{height}; "
            "normalized as (pixel - mean) / std per channel"
            + (f"; then quantized to {image['dtype']} with the tensor's scale and zero point" if quantized else "")
        ),
        "content": {"content_properties_type": "ImageProperties",
                    "content_properties": {"color_space": color, "default_size": {"width": width, "height": height}}},
        "process_units": [{"options_type": "NormalizationOptions", "options": {"mean": mean, "std": std}}],
    }
    # the value range the tensor holds, as tflite-support's image writer records it
    if image["dtype"] == "float32":
        md["stats"] = {"max": [(255.0 - m) / s for m, s in zip(mean, std)], "min": [(0.0 - m) / s for m, s in zip(mean, std)]}
    elif image["dtype"] == "uint8":
        md["stats"] = {"max": [255.0], "min": [0.0]}
    return md


def _output_metadata(index: int, output: dict[str, Any], facts: dict[str, Any], has_labels: bool) -> dict[str, Any]:
    task, shape, dtype = facts["task"], output["shape"], output["dtype"]
    layout = f" Shape {shape}, {dtype}."
    if dtype in ("int8", "uint8"):
        layout += " Real value = (q - zero_point) * scale with the tensor's quantization parameters."
    md: dict[str, Any] = {"name": output["name"]}
    if task == "classify" and index == 0:
        kind = facts["classifier_output"]
        md["name"] = CLASSIFIER_OUTPUTS[kind]
        md["description"] = (
            "Probability of each label (softmax applied in the model), in labels.txt order." if kind == "probabilities" else
            "Logits of each label (no softmax in the model; apply softmax for probabilities), in labels.txt order."
        ) + layout
        md["content"] = {"content_properties_type": "FeatureProperties", "content_properties": {}}
        if kind == "probabilities" and dtype == "float32":
            md["stats"] = {"max": [1.0], "min": [0.0]}
    elif task == "detect" and index == 0:
        md["description"] = HEAD_DESCRIPTIONS.get(facts.get("head"), HEAD_DESCRIPTIONS["raw"]) + layout
    else:
        md["description"] = f"Model output {output['name']}." + layout
    if index == 0 and has_labels:
        md["associated_files"] = [{"name": LABELS_FILE, "description": "Labels for categories that the model can recognize.",
                                   "type": "TENSOR_AXIS_LABELS"}]
    return md


def write_metadata(model_path: Path, out_path: Path, facts: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    """Write `model_path` with TFLite Metadata to `out_path`. facts (see `build_metadata`) has
    `outputs`: the canonical outputs [{name, shape}] in order, which must match the model's.
    Returns the metadata written (as `read_metadata` gives it back)."""
    model_bytes = model_path.read_bytes()
    model = _read_model(model_bytes)
    graph = model.subgraphs[0]
    inputs, outputs = _tensor_facts(model, list(graph.inputs)), _tensor_facts(model, list(graph.outputs))
    canonical = facts["outputs"]
    if len(inputs) != 1:
        raise ConversionError(f"tflite metadata: the model has {len(inputs)} inputs, edgepack describes one image input")
    if len(outputs) != len(canonical) or any(
        int(np.prod(o["shape"])) != int(np.prod(c["shape"])) for o, c in zip(outputs, canonical)
    ):
        raise ConversionError(
            f"tflite metadata: the model's outputs {[o['shape'] for o in outputs]} do not match the canonical outputs "
            f"{[list(c['shape']) for c in canonical]}",
            "report this model: the converter reordered or changed the outputs",
        )
    described = [{**o, "name": c["name"]} for o, c in zip(outputs, canonical)]
    metadata = build_metadata(facts, inputs[0], described, labels)
    metadata["min_parser_version"] = schema.min_parser_version(metadata)
    files = {LABELS_FILE: "".join(f"{label}\n" for label in labels).encode("utf-8")} if labels else {}
    out_path.write_bytes(attach(model_bytes, metadata, files))
    return metadata


# ---------------------------------------------------------------- reading


def read_metadata(model_path: Path) -> dict[str, Any]:
    """{"metadata": the ModelMetadata dict, "associated_files": {name: bytes}}; {} when the model has
    no TFLITE_METADATA. ValueError when the file is not a TFLite model or its metadata is damaged."""
    from ai_edge_litert import schema_py_generated as fb

    data = model_path.read_bytes()
    if len(data) < 8 or not fb.Model.ModelBufferHasIdentifier(data, 0):
        raise ValueError(f"{model_path.name} is not a TFLite model (no TFL3 file identifier)")
    model = fb.Model.GetRootAs(data, 0)
    raw = None
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if _text(entry.Name()) == METADATA_NAME:
            buffer = model.Buffers(entry.Buffer())
            if buffer.Offset() > 1:  # stored after the flatbuffer (offset/size)
                raw = data[buffer.Offset(): buffer.Offset() + buffer.Size()]
            else:
                raw = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
    if raw is None:
        return {}
    files: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files = {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        pass
    return {"metadata": schema.read(raw), "associated_files": files}


def summary(model_path: Path) -> dict[str, Any]:
    """What `edgepack inspect` and the tests look at: name, normalization, colour space, outputs, labels."""
    try:
        read = read_metadata(model_path)
    except ValueError as e:
        return {"unreadable": str(e)}
    if not read:
        return {}
    doc = read["metadata"]
    graph = (doc.get("subgraph_metadata") or [{}])[0]
    image = (graph.get("input_tensor_metadata") or [{}])[0]
    norm = next((u["options"] for u in image.get("process_units", []) if u.get("options_type") == "NormalizationOptions"), {})
    tensors = graph.get("output_tensor_metadata", [])
    label_file = next((f["name"] for t in tensors for f in t.get("associated_files", []) if f.get("type") == "TENSOR_AXIS_LABELS"), None)
    labels = read["associated_files"].get(label_file, b"").decode("utf-8").splitlines() if label_file else []
    return {
        "name": doc.get("name"),
        "description": doc.get("description"),
        "version": doc.get("version"),
        "author": doc.get("author"),
        "license": doc.get("license"),
        "min_parser_version": doc.get("min_parser_version"),
        "input": image.get("name"),
        "color_space": image.get("content", {}).get("content_properties", {}).get("color_space"),
        "mean": norm.get("mean"),
        "std": norm.get("std"),
        "output": tensors[0].get("name") if tensors else None,
        "outputs": {t.get("name"): t.get("description") for t in tensors},
        "labels_file": label_file,
        "labels": labels,
        "packed_files": sorted(read["associated_files"]),
    }
