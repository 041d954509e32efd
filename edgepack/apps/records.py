"""manifest.json as typed records, the only thing app templates see.

A manifest read from disk is untrusted data: every value a generated Kotlin, Swift, C++, Gradle,
XML, plist or pbxproj file uses is parsed here first. Numbers must be numbers, enumerations one of
their values, identifiers from a safe alphabet, file paths relative and confined under OUT, free
text (labels, the model name) free of control characters. Anything else stops the build with one
line naming the field and the fix; nothing is written before that.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edgepack.errors import SpecError

TASKS = ("detect", "classify")
HEADS = ("yolov8", "yolov5", "raw")
COLOR_ORDERS = ("rgb", "bgr")
RESIZE_MODES = ("letterbox", "stretch")
LAYOUTS = ("NCHW", "NHWC")
CLASSIFIER_OUTPUTS = ("logits", "probabilities")

IDENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+\-]{0,127}")  # artifact ids, precisions, roles, dtypes
VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+\-]{0,63}")
TENSOR_NAME_RE = re.compile(r"[A-Za-z0-9_.:/\-\[\]]{1,200}")  # ONNX / TFLite / ncnn / MNN tensor names
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
HINT = "regenerate it with `edgepack convert`"


def _fail(where: str, problem: str) -> SpecError:
    return SpecError(f"manifest.json: {where} {problem}", HINT)


def _get(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise _fail(where, "is not an object")
    if key not in obj:
        raise _fail(f"{where}.{key}", "is missing")
    return obj[key]


def integer(value: Any, where: str, low: int = 0, high: int = 1 << 31) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(where, f"must be an integer in {low}..{high}, not {value!r:.40}")
    return value


def number(value: Any, where: str, low: float = -1e9, high: float = 1e9) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise _fail(where, f"must be a number in {low:g}..{high:g}, not {value!r:.40}")
    return float(value)


def choice(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _fail(where, f"must be one of {', '.join(allowed)}, not {value!r:.40}")
    return value


def identifier(value: Any, where: str, pattern: re.Pattern[str] = IDENT_RE) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _fail(where, f"has characters apps cannot use: {value!r:.60}")
    return value


def text(value: Any, where: str, max_len: int = 200) -> str:
    """Free text shown to users (labels, names): any characters but control characters."""
    if not isinstance(value, str) or len(value) > max_len or CONTROL_RE.search(value):
        raise _fail(where, f"must be one line of text (at most {max_len} characters), not {value!r:.60}")
    return value


def confined_path(value: Any, where: str, out_dir: Path) -> str:
    """A path relative to OUT that stays inside OUT (no absolute paths, `..`, drive letters or
    symlinks leading out)."""
    if not isinstance(value, str) or not value or len(value) > 400 or CONTROL_RE.search(value) or "\\" in value:
        raise _fail(where, f"is not a usable file path: {value!r:.60}")
    parts = value.split("/")
    if PurePosixPath(value).is_absolute() or re.match(r"^[A-Za-z]:", value) or value.startswith("~") \
            or any(p in ("", ".", "..") for p in parts):
        raise _fail(where, f"{value!r:.60} is not a relative path inside the output folder")
    root = out_dir.resolve()
    if not (out_dir / value).resolve().is_relative_to(root):
        raise _fail(where, f"{value!r:.60} leads outside the output folder")
    return value


def shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= 6:
        raise _fail(where, f"must be a list of 1 to 6 dimensions, not {value!r:.40}")
    dims = tuple(integer(d, f"{where}[{i}]", 1, 1 << 24) for i, d in enumerate(value))
    if math.prod(dims) > (1 << 28):
        raise _fail(where, f"has {math.prod(dims)} elements, more than an app buffer can hold")
    return dims


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    layout: str | None

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Artifact:
    id: str
    format: str
    precision: str
    status: str
    files: dict[str, str]  # role -> path relative to OUT
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    input_name: str  # what the runtime calls the input / first output
    output_name: str
    float_io: bool  # False for full-integer TFLite models (the apps feed and read floats)


@dataclass(frozen=True)
class AppManifest:
    edgepack_version: str
    model_name: str
    task: str
    head: str | None
    num_classes: int
    labels: tuple[str, ...]
    classifier_output: str | None  # "logits", "probabilities" or None (decided from the values)
    input_shape: tuple[int, int, int, int]  # N, C, H, W
    resize: str
    color_order: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    score_threshold: float
    iou_threshold: float
    validation_inputs: str
    validation_task_outputs: str
    artifacts: tuple[Artifact, ...]

    @property
    def input_channels(self) -> int:
        return self.input_shape[1]

    @property
    def input_height(self) -> int:
        return self.input_shape[2]

    @property
    def input_width(self) -> int:
        return self.input_shape[3]


def _tensor(obj: Any, where: str) -> Tensor:
    layout = obj.get("layout") if isinstance(obj, dict) else None
    return Tensor(
        name=identifier(_get(obj, "name", where), f"{where}.name", TENSOR_NAME_RE),
        shape=shape(_get(obj, "shape", where), f"{where}.shape"),
        dtype=identifier(obj.get("dtype", "float32"), f"{where}.dtype"),
        layout=None if layout is None else choice(layout, f"{where}.layout", LAYOUTS),
    )


def _tensors(value: Any, where: str) -> tuple[Tensor, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(where, "must be a non-empty list")
    return tuple(_tensor(t, f"{where}[{i}]") for i, t in enumerate(value))


def _artifact(obj: Any, where: str, out_dir: Path) -> Artifact:
    fmt = identifier(_get(obj, "format", where), f"{where}.format")
    files = _get(obj, "files", where)
    if not isinstance(files, dict) or not files:
        raise _fail(f"{where}.files", "must be a non-empty object")
    paths = {identifier(role, f"{where}.files key"): confined_path(p, f"{where}.files.{role}", out_dir) for role, p in files.items()}
    inputs = _tensors(_get(obj, "inputs", where), f"{where}.inputs")
    outputs = _tensors(_get(obj, "outputs", where), f"{where}.outputs")
    runtime = obj.get("runtime_io") if isinstance(obj.get("runtime_io"), dict) else {}
    details = obj.get(fmt) if isinstance(obj.get(fmt), dict) else {}
    input_name = runtime.get("input") or details.get("input_blob") or inputs[0].name
    output_names = runtime.get("outputs") or details.get("output_blobs") or [outputs[0].name]
    if not isinstance(output_names, list) or not output_names:
        raise _fail(f"{where}.runtime_io.outputs", "must be a non-empty list")
    io = details.get("io") if fmt == "tflite" else None
    float_io = True
    if io is not None:
        if not isinstance(io, dict):
            raise _fail(f"{where}.tflite.io", "is not an object")
        dtypes = [identifier(_get(t, "dtype", f"{where}.tflite.io"), f"{where}.tflite.io dtype")
                  for t in list(io.get("inputs") or []) + list(io.get("outputs") or [])]
        float_io = all(d == "float32" for d in dtypes)
    return Artifact(
        id=identifier(_get(obj, "id", where), f"{where}.id"),
        format=fmt,
        precision=identifier(_get(obj, "precision", where), f"{where}.precision"),
        status=identifier(obj.get("status", "ok"), f"{where}.status"),
        files=paths,
        inputs=inputs,
        outputs=outputs,
        input_name=identifier(input_name, f"{where}.runtime_io.input", TENSOR_NAME_RE),
        output_name=identifier(output_names[0], f"{where}.runtime_io.outputs[0]", TENSOR_NAME_RE),
        float_io=float_io,
    )


def parse_manifest(manifest: Any, out_dir: Path) -> AppManifest:
    """The typed view of manifest.json; raises SpecError naming the first bad field."""
    model = _get(manifest, "model", "manifest")
    pre = _get(manifest, "preprocessing", "manifest")
    post = _get(manifest, "postprocessing", "manifest")
    validation = _get(manifest, "validation", "manifest")
    task = choice(_get(model, "task", "model"), "model.task", TASKS)
    raw_shape = _get(pre, "input_shape", "preprocessing")
    if not isinstance(raw_shape, list) or len(raw_shape) != 4:
        raise _fail("preprocessing.input_shape", "must be [N, C, H, W]")
    n, c, h, w = shape(raw_shape, "preprocessing.input_shape")
    if n != 1 or c not in (1, 3) or h > 4096 or w > 4096:
        raise _fail("preprocessing.input_shape", f"must be [1, 1|3, H<=4096, W<=4096], not {list(raw_shape)}")
    labels_raw = _get(model, "labels", "model")
    if not isinstance(labels_raw, list):
        raise _fail("model.labels", "must be a list of strings")
    labels = tuple(text(label, f"model.labels[{i}]") for i, label in enumerate(labels_raw))
    num_classes = integer(_get(model, "num_classes", "model"), "model.num_classes", 1, 100_000)
    if len(labels) != num_classes:
        raise _fail("model.labels", f"has {len(labels)} entries for {num_classes} classes")
    mean = tuple(number(v, f"preprocessing.mean[{i}]", -1e4, 1e4) for i, v in enumerate(_list(_get(pre, "mean", "preprocessing"), "preprocessing.mean", 3)))
    std = tuple(number(v, f"preprocessing.std[{i}]", 1e-8, 1e4) for i, v in enumerate(_list(_get(pre, "std", "preprocessing"), "preprocessing.std", 3)))
    output_kind = model.get("classifier_output")
    artifacts = _get(manifest, "artifacts", "manifest")
    if not isinstance(artifacts, list):
        raise _fail("artifacts", "must be a list")
    return AppManifest(
        edgepack_version=identifier(_get(manifest, "edgepack_version", "manifest"), "edgepack_version", VERSION_RE),
        model_name=text(_get(model, "name", "model"), "model.name", 100),
        task=task,
        head=choice(_get(model, "head", "model"), "model.head", HEADS) if task == "detect" else None,
        num_classes=num_classes,
        labels=labels,
        classifier_output=None if output_kind is None else choice(output_kind, "model.classifier_output", CLASSIFIER_OUTPUTS),
        input_shape=(n, c, h, w),
        resize=choice(_get(pre, "resize", "preprocessing"), "preprocessing.resize", RESIZE_MODES),
        color_order=choice(_get(pre, "color_order", "preprocessing"), "preprocessing.color_order", COLOR_ORDERS),
        mean=mean,
        std=std,
        score_threshold=number(_get(post, "score_threshold", "postprocessing"), "postprocessing.score_threshold", 0.0, 1.0),
        iou_threshold=number(_get(post, "iou_threshold", "postprocessing"), "postprocessing.iou_threshold", 0.0, 1.0),
        validation_inputs=confined_path(_get(validation, "inputs", "validation"), "validation.inputs", out_dir),
        validation_task_outputs=confined_path(_get(validation, "reference_task_outputs", "validation"), "validation.reference_task_outputs", out_dir),
        artifacts=tuple(_artifact(a, f"artifacts[{i}]", out_dir) for i, a in enumerate(artifacts)),
    )


def _list(value: Any, where: str, length: int) -> list:
    if not isinstance(value, list) or len(value) != length:
        raise _fail(where, f"must be a list of {length} numbers")
    return value


def safe_file_name(name: str) -> str:
    """A file name for the app bundle: letters, digits, '.', '-', '_' (others become '_')."""
    cleaned = re.sub(r"[^A-Za-z0-9._\-]", "_", name).lstrip(".")
    return cleaned or "model"
