"""Android: the template context for templates/android/ (Kotlin, CameraX, JNI + CMake)."""

from __future__ import annotations

import json
import keyword
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.apps.base import APPS, AppRenderer
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
}
ANDROID_FORMATS = ("tflite", "ncnn", "mnn")
PRECISION_PREFERENCE = ("fp16", "int8", "fp32", "int8-weight", "int8-dynamic")
PACKAGE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
# Kotlin hard keywords are not allowed as package segments either
KOTLIN_KEYWORDS = {"as", "break", "class", "continue", "do", "else", "false", "for", "fun", "if", "in", "interface",
                   "is", "null", "object", "package", "return", "super", "this", "throw", "true", "try", "typealias",
                   "typeof", "val", "var", "when", "while"}


def check_package(package: str) -> None:
    if not PACKAGE_RE.match(package):
        raise SpecError(f"app package {package!r} is not a valid Android application id", "use e.g. com.example.detector (lower case, dots)")
    bad = [part for part in package.split(".") if part in KOTLIN_KEYWORDS or keyword.iskeyword(part)]
    if bad:
        raise SpecError(f"app package {package!r} uses the reserved word {bad[0]!r}", "rename that segment")


def _float_io(entry: dict[str, Any]) -> bool:
    """The app feeds and reads float tensors: a full-integer TFLite model (int8 I/O) needs the
    (de)quantization an app would add with the scale/zero point from the manifest."""
    io = (entry.get("tflite") or {}).get("io")
    return io is None or all(t["dtype"] == "float32" for t in io["inputs"] + io["outputs"])


def pick_artifacts(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One artifact per backend: a passing one, preferring the precisions phones run fastest."""
    chosen: dict[str, dict[str, Any]] = {}
    for fmt in ANDROID_FORMATS:
        candidates = [a for a in manifest["artifacts"] if a["format"] == fmt and a.get("status") != "failed" and _float_io(a)]
        if not candidates:
            continue
        candidates.sort(key=lambda a: (a.get("status") != "ok", PRECISION_PREFERENCE.index(a["precision"]) if a["precision"] in PRECISION_PREFERENCE else 99))
        chosen[fmt] = candidates[0]
    return chosen


@APPS.register("android")
class AndroidRenderer(AppRenderer):
    platform = "android"

    def context(self, manifest: dict[str, Any], out_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
        package = options.get("package") or "dev.edgepack.demo"
        check_package(package)
        name = str(options.get("name") or "Edgepack Demo").strip()
        if not name:
            raise SpecError("app name is empty", "set app.name in edgepack.yaml")
        chosen = pick_artifacts(manifest)
        if not chosen:
            raise SpecError("the manifest has no artifact an Android app can run (tflite, ncnn or mnn)", "convert with --formats ncnn,mnn")
        pre, model, post = manifest["preprocessing"], manifest["model"], manifest["postprocessing"]
        _, channels, height, width = pre["input_shape"]
        out_shape = manifest["artifacts"][0]["outputs"][0]["shape"]
        detect = model["task"] == "detect"
        num_classes = model["num_classes"]
        channels_first = bool(detect and model["head"] == "yolov8" and out_shape[1] == 4 + num_classes)
        anchors = (out_shape[2] if channels_first else out_shape[1]) if detect else 0
        backends = []
        for fmt, entry in chosen.items():
            files = {role: f"{fmt}/{Path(rel).name}" for role, rel in entry["files"].items() if role in ("param", "bin", "model")}
            backends.append({
                "name": fmt,
                "precision": entry["precision"],
                "files": files,
                "input_blob": (entry.get("ncnn") or {}).get("input_blob", entry["inputs"][0]["name"]),
                "output_blob": ((entry.get("ncnn") or {}).get("output_blobs") or [entry["outputs"][0]["name"]])[0],
                "layout": entry["inputs"][0].get("layout", "NCHW"),
            })
        return {
            "app_name": name,
            # Gradle project names may not contain / \\ : < > " ? * |
            "project_name": re.sub(r'[/\\:<>"?*|]', "_", name),
            "package": package,
            "package_path": package.replace(".", "/"),
            "task": model["task"],
            "head": model["head"] or "raw",
            "model_name": model["name"],
            "num_classes": num_classes,
            "labels": model["labels"],
            "input_width": width,
            "input_height": height,
            "input_channels": channels,
            "mean": [float(v) for v in pre["mean"]],
            "std": [float(v) for v in pre["std"]],
            "bgr": pre["color_order"] == "bgr",
            "keep_aspect": pre["resize"] == "letterbox",
            "score_threshold": float(post["score_threshold"]),
            "iou_threshold": float(post["iou_threshold"]),
            "num_anchors": anchors,
            "channels_first": channels_first,
            "output_size": int(np.prod(out_shape)),
            "backends": backends,
            "backend_names": [b["name"] for b in backends],
            "has_tflite": "tflite" in chosen,
            "has_ncnn": "ncnn" in chosen,
            "has_mnn": "mnn" in chosen,
            "has_native": "ncnn" in chosen or "mnn" in chosen,
            "versions": VERSIONS,
            "edgepack_version": manifest["edgepack_version"],
        }

    def copy_assets(self, manifest: dict[str, Any], out_dir: Path, project: Path, context: dict[str, Any]) -> None:
        assets = project / "app" / "src" / "main" / "assets"
        chosen = pick_artifacts(manifest)
        for fmt, entry in chosen.items():
            (assets / fmt).mkdir(parents=True, exist_ok=True)
            for role, rel in entry["files"].items():
                if role in ("param", "bin", "model"):
                    shutil.copy(out_dir / rel, assets / fmt / Path(rel).name)
        shutil.copy(out_dir / "labels.txt", assets / "labels.txt")
        slim = {k: manifest[k] for k in ("schema", "model", "preprocessing", "postprocessing")}
        slim["artifacts"] = list(chosen.values())
        (assets / "manifest.json").write_text(json.dumps(slim, indent=2, ensure_ascii=False))
        # golden input and expected results for the instrumented test
        golden = project / "app" / "src" / "androidTest" / "assets"
        golden.mkdir(parents=True, exist_ok=True)
        inputs = np.load(out_dir / manifest["validation"]["inputs"])["inputs"]
        inputs[0].astype("<f4").tofile(golden / "golden_input.f32")
        expected = json.loads((out_dir / manifest["validation"]["reference_task_outputs"]).read_text())
        first = expected[0] if isinstance(expected[0], list) else [expected[0]]  # boxes, or [top-1 class]
        (golden / "golden_expected.json").write_text(json.dumps(first))
