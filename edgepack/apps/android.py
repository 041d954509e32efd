"""Android: the template context for templates/android/ (Kotlin, CameraX, LiteRT, NCNN/MNN via JNI)."""

from __future__ import annotations

import io
import json
import keyword
import math
import re
from pathlib import Path
from typing import Any

from edgepack.apps.base import APPS, AppRenderer
from edgepack.apps.records import CONTROL_RE, AppManifest, Artifact, safe_file_name
from edgepack.errors import SpecError

# Every version the generated project uses, in one place (rendered into gradle/libs.versions.toml).
VERSIONS = {
    "agp": "8.13.1",
    "gradle": "8.14.3",
    "kotlin": "2.2.21",
    "compile_sdk": 36,
    "target_sdk": 36,
    "min_sdk": 24,
    "ndk": "28.2.13676358",
    "cmake": "3.22.1",
    "camerax": "1.5.1",
    "litert": "1.4.0",
    "core_ktx": "1.17.0",
    "appcompat": "1.7.1",
    "material": "1.13.0",
    "constraintlayout": "2.2.1",
    "lifecycle": "2.9.4",
    "junit": "4.13.2",
    "androidx_junit": "1.3.0",
    "androidx_test": "1.7.0",
    # AGP 8.13 needs Android Studio Narwhal 3 Feature Drop (2025.1.3) or newer (AGP/Studio compatibility table)
    "android_studio": "Narwhal 3 Feature Drop (2025.1.3)",
}
ANDROID_FORMATS = ("tflite", "ncnn", "mnn")
PRECISION_PREFERENCE = ("fp16", "int8", "fp32", "int8-weight", "int8-dynamic")
MODEL_ROLES = ("param", "bin", "model")
PACKAGE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
# Kotlin hard keywords are not allowed as package segments either
KOTLIN_KEYWORDS = {"as", "break", "class", "continue", "do", "else", "false", "for", "fun", "if", "in", "interface",
                   "is", "null", "object", "package", "return", "super", "this", "throw", "true", "try", "typealias",
                   "typeof", "val", "var", "when", "while"}


def check_package(package: str) -> None:
    if not isinstance(package, str) or not PACKAGE_RE.match(package):
        raise SpecError(f"app package {package!r} is not a valid Android application id", "use e.g. com.example.detector (lower case, dots)")
    bad = [part for part in package.split(".") if part in KOTLIN_KEYWORDS or keyword.iskeyword(part)]
    if bad:
        raise SpecError(f"app package {package!r} uses the reserved word {bad[0]!r}", "rename that segment")


def _float_io(entry: dict[str, Any]) -> bool:
    """The app feeds and reads float tensors: a full-integer TFLite model (int8 I/O) needs the
    (de)quantization an app would add with the scale/zero point from the manifest."""
    io_ = (entry.get("tflite") or {}).get("io")
    return io_ is None or all(t["dtype"] == "float32" for t in io_["inputs"] + io_["outputs"])


def _preference(precision: str) -> int:
    return PRECISION_PREFERENCE.index(precision) if precision in PRECISION_PREFERENCE else 99


def pick_artifacts(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One artifact per backend: a passing one, preferring the precisions phones run fastest
    (raw manifest entries; the device tests use this)."""
    chosen: dict[str, dict[str, Any]] = {}
    for fmt in ANDROID_FORMATS:
        candidates = [a for a in manifest["artifacts"] if a["format"] == fmt and a.get("status") != "failed" and _float_io(a)]
        if candidates:
            candidates.sort(key=lambda a: (a.get("status") != "ok", _preference(a["precision"])))
            chosen[fmt] = candidates[0]
    return chosen


def pick_records(manifest: AppManifest) -> dict[str, Artifact]:
    """The same choice as pick_artifacts, on typed records."""
    chosen: dict[str, Artifact] = {}
    for fmt in ANDROID_FORMATS:
        candidates = [a for a in manifest.artifacts if a.format == fmt and a.status != "failed" and a.float_io]
        if candidates:
            candidates.sort(key=lambda a: (a.status != "ok", _preference(a.precision)))
            chosen[fmt] = candidates[0]
    return chosen


def output_layout(manifest: AppManifest, artifact: Artifact) -> tuple[int, bool]:
    """(anchors, channels_first) of a detector's first output: [1, 4+C, N] / [1, N, 4+C] for
    yolov8, 5+C for yolov5; a classifier's output must hold one score per class."""
    out = artifact.outputs[0].shape
    if manifest.task == "classify":
        if math.prod(out) != manifest.num_classes:
            raise SpecError(f"{artifact.id}: output shape {list(out)} does not hold {manifest.num_classes} class scores",
                            "check the labels file against the model")
        return 0, True
    if manifest.head not in ("yolov8", "yolov5"):
        raise SpecError(f"the apps decode yolov8 and yolov5 detector heads, not {manifest.head!r}", "set model.head in edgepack.yaml")
    channels = (4 if manifest.head == "yolov8" else 5) + manifest.num_classes
    if len(out) == 3 and out[0] == 1 and out[1] == channels:
        return out[2], True
    if len(out) == 3 and out[0] == 1 and out[2] == channels:
        return out[1], False
    raise SpecError(f"{artifact.id}: output shape {list(out)} is not [1, {channels}, N] or [1, N, {channels}] "
                    f"for a {manifest.head} head with {manifest.num_classes} classes", "check model.head and the labels")


def asset_name(fmt: str, source: str) -> str:
    return f"{fmt}/{safe_file_name(Path(source).name)}"


def app_name_option(options: dict[str, Any]) -> str:
    """The display name: one line of text (it reaches Kotlin, Swift, XML, plist and Gradle escaped)."""
    raw = options.get("name")
    name = "Edgepack Demo" if raw is None else str(raw).strip()
    if not name:
        raise SpecError("app name is empty", "set app.name in edgepack.yaml")
    if len(name) > 60 or CONTROL_RE.search(name):
        raise SpecError(f"app name {name[:60]!r} must be one line of at most 60 characters", "pass a shorter --app-name")
    return name


@APPS.register("android")
class AndroidRenderer(AppRenderer):
    platform = "android"
    refresh_templates = frozenset({"app/src/main/java/{{ package_path }}/ModelConfig.kt"})

    def context(self, manifest: AppManifest, out_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
        package = options.get("package") or "dev.edgepack.demo"
        check_package(package)
        name = app_name_option(options)
        chosen = pick_records(manifest)
        if not chosen:
            raise SpecError("the manifest has no artifact an Android app can run (tflite, ncnn or mnn)", "convert with --formats tflite,ncnn,mnn")
        backends = []
        for fmt, artifact in chosen.items():
            anchors, channels_first = output_layout(manifest, artifact)
            files = [asset_name(fmt, artifact.files[role]) for role in MODEL_ROLES if role in artifact.files]
            if len(set(files)) != len(files) or not files:
                raise SpecError(f"{artifact.id}: model files {sorted(artifact.files.values())} clash once made safe for the app", "rename the model")
            backends.append({
                "name": fmt,
                "precision": artifact.precision,
                "files": files,
                "input_name": artifact.input_name,
                "output_name": artifact.output_name,
                "input_shape": list(artifact.inputs[0].shape),
                "output_shape": list(artifact.outputs[0].shape),
                "output_size": artifact.outputs[0].size,
                "num_anchors": anchors,
                "channels_first": channels_first,
            })
        return {
            "app_name": name,
            # Gradle project names may not contain / \\ : < > " ? * |
            "project_name": re.sub(r'[/\\:<>"?*|]', "_", name),
            "package": package,
            "package_path": package.replace(".", "/"),
            "task": manifest.task,
            "head": manifest.head or "none",
            "model_name": manifest.model_name,
            "num_classes": manifest.num_classes,
            "first_label": manifest.labels[0],
            "input_width": manifest.input_width,
            "input_height": manifest.input_height,
            "input_channels": manifest.input_channels,
            "mean": list(manifest.mean),
            "std": list(manifest.std),
            "bgr": manifest.color_order == "bgr",
            "keep_aspect": manifest.resize == "letterbox",
            "score_threshold": manifest.score_threshold,
            "iou_threshold": manifest.iou_threshold,
            "classifier_output": manifest.classifier_output or "auto",
            "backends": backends,
            "backend_names": [b["name"] for b in backends],
            "has_tflite": "tflite" in chosen,
            "has_ncnn": "ncnn" in chosen,
            "has_mnn": "mnn" in chosen,
            "has_native": "ncnn" in chosen or "mnn" in chosen,
            "versions": VERSIONS,
            "edgepack_version": manifest.edgepack_version,
        }

    def assets(self, manifest: AppManifest, out_dir: Path, context: dict[str, Any]) -> list[tuple[str, Path | bytes]]:
        main = "app/src/main/assets"
        chosen = pick_records(manifest)
        files: list[tuple[str, Path | bytes]] = []
        for fmt, artifact in chosen.items():
            for role in MODEL_ROLES:
                if role in artifact.files:
                    files.append((f"{main}/{asset_name(fmt, artifact.files[role])}", out_dir / artifact.files[role]))
        files.append((f"{main}/labels.txt", ("\n".join(manifest.labels) + "\n").encode("utf-8")))
        files.append((f"{main}/manifest.json", app_manifest_json(manifest, chosen)))
        # golden input and expected results for the instrumented test
        golden_input, expected = golden_case(manifest, out_dir)
        files.append(("app/src/androidTest/assets/golden_input.f32", golden_input))
        files.append(("app/src/androidTest/assets/golden_expected.json", json.dumps(expected).encode()))
        return files


def app_manifest_json(manifest: AppManifest, chosen: dict[str, Artifact]) -> bytes:
    """The slim manifest bundled with the app, written from the typed records."""
    data = {
        "schema": "edgepack.app-manifest/1",
        "edgepack_version": manifest.edgepack_version,
        "model": {"name": manifest.model_name, "task": manifest.task, "head": manifest.head, "num_classes": manifest.num_classes,
                  "labels": list(manifest.labels), "classifier_output": manifest.classifier_output},
        "preprocessing": {"input_shape": list(manifest.input_shape), "resize": manifest.resize, "color_order": manifest.color_order,
                          "mean": list(manifest.mean), "std": list(manifest.std)},
        "postprocessing": {"score_threshold": manifest.score_threshold, "iou_threshold": manifest.iou_threshold},
        "artifacts": [{"id": a.id, "format": fmt, "precision": a.precision,
                       "files": [asset_name(fmt, a.files[r]) for r in MODEL_ROLES if r in a.files],
                       "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "layout": t.layout} for t in a.inputs],
                       "outputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in a.outputs]}
                      for fmt, a in chosen.items()],
    }
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def golden_case(manifest: AppManifest, out_dir: Path) -> tuple[bytes, Any]:
    """The first validation input (NCHW float32, little endian) and the host reference for it:
    boxes [{box, score, class}] for detectors, [top-1 class] for classifiers."""
    import numpy as np

    from edgepack.apps.records import _fail, integer, number

    try:
        with np.load(out_dir / manifest.validation_inputs, allow_pickle=False) as data:
            inputs = data["inputs"]
    except (OSError, ValueError, KeyError) as e:
        raise SpecError(f"{manifest.validation_inputs} cannot be read ({type(e).__name__})", "run `edgepack convert` again") from None
    expected_shape = manifest.input_shape
    if inputs.ndim != 5 or tuple(inputs.shape[1:]) != expected_shape or inputs.dtype.kind != "f":
        raise SpecError(f"{manifest.validation_inputs} holds {inputs.shape}, not images of {list(expected_shape)}", "run `edgepack convert` again")
    try:
        reference = json.loads((out_dir / manifest.validation_task_outputs).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SpecError(f"{manifest.validation_task_outputs} cannot be read ({type(e).__name__})", "run `edgepack convert` again") from None
    if not isinstance(reference, list) or not reference:
        raise _fail("validation.reference_task_outputs", "must list one result per validation image")
    first = reference[0]
    where = "reference task output [0]"
    if manifest.task == "classify":
        top = first[0] if isinstance(first, list) and first else first
        expected: Any = [integer(top, where, 0, manifest.num_classes - 1)]
    else:
        if not isinstance(first, list):
            raise _fail(where, "must be a list of boxes")
        expected = []
        for i, d in enumerate(first):
            if not isinstance(d, dict) or not isinstance(d.get("box"), list) or len(d["box"]) != 4:
                raise _fail(f"{where}[{i}]", "must be {box: [x1, y1, x2, y2], score, class}")
            expected.append({"box": [number(v, f"{where}[{i}].box") for v in d["box"]],
                             "score": number(d.get("score"), f"{where}[{i}].score", 0.0, 1.0),
                             "class": integer(d.get("class"), f"{where}[{i}].class", 0, manifest.num_classes - 1)})
    buffer = io.BytesIO()
    buffer.write(inputs[0].astype("<f4").tobytes())
    return buffer.getvalue(), expected
