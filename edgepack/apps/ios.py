"""iOS: the template context for templates/ios/ (SwiftUI, AVFoundation, Vision + Core ML).

The Xcode project file is rendered from a template too: every object ID is derived from a
stable key (sha1 of e.g. "file:Detector.swift"), so regenerating gives the same file and diffs
stay readable. The file lists below are the single source of truth for what the project
references; the tests check that each reference resolves to a rendered file.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

from edgepack.apps.android import app_name_option, golden_case
from edgepack.apps.base import APPS, AppRenderer
from edgepack.apps.records import AppManifest, Artifact
from edgepack.errors import SpecError

VERSIONS = {"ios_deployment": "16.0", "swift": "5.0", "xcode_object_version": 56, "xcode_compat": "Xcode 14.0", "tools": "1600"}
PRECISION_PREFERENCE = ("fp16", "int8-weight", "fp32")
BUNDLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*(\.[A-Za-z0-9][A-Za-z0-9-]*)+$")

# (path inside the app folder, kind) -- kinds map to Xcode file types and build phases
APP_SOURCES = ["App.swift", "ContentView.swift", "CameraController.swift", "FrameProcessor.swift", "CameraPreview.swift", "Detector.swift",
               "OverlayView.swift", "SettingsView.swift", "ModelInfo.swift", "Core/Geometry.swift", "Core/Probabilities.swift"]
TEST_SOURCES = ["GeometryTests.swift", "GoldenImageTests.swift"]
FILE_TYPES = {".swift": "sourcecode.swift", ".plist": "text.plist.xml", ".txt": "text", ".json": "text.json",
              ".png": "image.png", ".xcassets": "folder.assetcatalog", ".mlpackage": "folder.mlpackage"}


def xcode_id(key: str) -> str:
    """A stable 24-hex-digit object ID (Xcode's format) for a key."""
    return hashlib.sha1(f"edgepack:{key}".encode()).hexdigest()[:24].upper()


def pbx_string(value: Any) -> str:
    """A value in an OpenStep property list: bare when safe, else quoted and escaped."""
    text = str(value)
    if text and re.fullmatch(r"[A-Za-z0-9_./$]+", text) and not text.startswith("$("):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def swift_string(value: str) -> str:
    """Body of a Swift "..." literal."""
    out = []
    for ch in str(value):
        if ch in ('\\', '"'):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return "".join(out)


def swift_identifier(name: str) -> str:
    """A Swift type / Xcode target name from free text: ASCII letters and digits, camel-cased."""
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    words = re.findall(r"[A-Za-z0-9]+", ascii_text)
    ident = "".join(w[:1].upper() + w[1:] for w in words)
    if not ident or not ident[0].isalpha():
        ident = "App" + ident
    return ident


def pick_coreml(manifest: AppManifest) -> Artifact | None:
    candidates = [a for a in manifest.artifacts if a.format == "coreml" and a.status in ("ok", "unverified-on-this-host")]
    candidates.sort(key=lambda a: PRECISION_PREFERENCE.index(a.precision) if a.precision in PRECISION_PREFERENCE else 99)
    return candidates[0] if candidates else None


def _file(path: str, group: str, role: str) -> dict[str, str]:
    name = Path(path).name
    suffix = Path(path).suffix
    return {"path": path, "name": name, "group": group, "role": role, "type": FILE_TYPES.get(suffix, "text"),
            "id": xcode_id(f"file:{group}/{path}"), "build_id": xcode_id(f"build:{group}/{path}")}


@APPS.register("ios")
class IosRenderer(AppRenderer):
    platform = "ios"
    refresh_templates = frozenset({"{{ target }}/ModelInfo.swift"})

    def context(self, manifest: AppManifest, out_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
        entry = pick_coreml(manifest)
        if entry is None:
            raise SpecError("the manifest has no Core ML artifact that passed its checks", "convert with --formats coreml")
        if "model" not in entry.files:
            raise SpecError(f"{entry.id}: no model file in the manifest", "run `edgepack convert` again")
        name = app_name_option(options)
        bundle = options.get("bundle_id") or options.get("package") or "dev.edgepack.demo"
        if not isinstance(bundle, str) or not BUNDLE_RE.match(bundle):
            raise SpecError(f"bundle id {bundle!r} is not valid", "use reverse-DNS letters, digits and hyphens, e.g. com.example.detector")
        target = swift_identifier(name)
        model_class = swift_identifier(manifest.model_name) + "Model"
        model_file = f"{model_class}.mlpackage"
        detect = manifest.task == "detect"
        app_files = [_file(p, "app", "source") for p in APP_SOURCES]
        app_files += [_file("Info.plist", "app", "plist"), _file("Assets.xcassets", "app", "resource"),
                      _file(f"Models/{model_file}", "app", "model"), _file("Models/labels.txt", "app", "resource")]
        test_files = [_file(p, "tests", "source") for p in TEST_SOURCES]
        test_files += [_file("golden.png", "tests", "resource"), _file("golden_expected.json", "tests", "resource")]
        ids = {key: xcode_id(key) for key in (
            "project", "main_group", "products_group", "app_group", "tests_group", "app_target", "test_target",
            "app_product", "test_product", "app_sources", "app_resources", "app_frameworks", "test_sources",
            "test_resources", "test_frameworks", "proxy", "dependency", "project_configs", "app_configs", "test_configs",
            "project_debug", "project_release", "app_debug", "app_release", "test_debug", "test_release",
        )}
        groups: dict[str, list[dict[str, str]]] = {}
        for f in app_files:
            folder = str(Path(f["path"]).parent)
            groups.setdefault(folder, []).append(f)
        subgroups = [{"name": folder, "id": xcode_id(f"group:{folder}"), "files": files} for folder, files in sorted(groups.items()) if folder != "."]
        return {
            "app_name": name,
            "target": target,
            "bundle_id": bundle,
            "task": manifest.task,
            "model_name": manifest.model_name,
            "model_class": model_class,
            "model_file": model_file,
            "model_source": entry.files["model"],
            "precision": entry.precision,
            "labels": list(manifest.labels),
            "input_width": manifest.input_width,
            "input_height": manifest.input_height,
            "letterbox": manifest.resize == "letterbox",
            "score_threshold": manifest.score_threshold,
            "iou_threshold": manifest.iou_threshold,
            "classifier_output": manifest.classifier_output or "auto",
            "is_detector": detect,
            "versions": VERSIONS,
            "ids": ids,
            "app_files": app_files,
            "top_files": groups.get(".", []),
            "subgroups": subgroups,
            "test_files": test_files,
            "edgepack_version": manifest.edgepack_version,
        }

    def assets(self, manifest: AppManifest, out_dir: Path, context: dict[str, Any]) -> list[tuple[str, Path | bytes]]:
        import numpy as np
        from PIL import Image

        target = context["target"]
        files: list[tuple[str, Path | bytes]] = []
        package = out_dir / context["model_source"]
        if not package.is_dir():
            raise SpecError(f"{context['model_source']} (the Core ML package) is missing", "run `edgepack convert` again")
        for source in sorted(p for p in package.rglob("*") if p.is_file() and not p.is_symlink()):
            files.append((f"{target}/Models/{context['model_file']}/{source.relative_to(package).as_posix()}", source))
        files.append((f"{target}/Models/labels.txt", ("\n".join(manifest.labels) + "\n").encode("utf-8")))
        # the golden image: the first validation input, already letterboxed to the model size
        golden_input, expected = golden_case(manifest, out_dir)
        x = np.frombuffer(golden_input, dtype="<f4").reshape(manifest.input_shape[1:])
        mean = np.asarray(manifest.mean, np.float32)[:, None, None]
        std = np.asarray(manifest.std, np.float32)[:, None, None]
        pixels = np.clip(np.rint(x * std[: x.shape[0]] + mean[: x.shape[0]]), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        if manifest.color_order == "bgr":
            pixels = pixels[..., ::-1]
        if pixels.shape[2] == 1:
            pixels = np.repeat(pixels, 3, axis=2)
        png = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(png, format="PNG")
        files.append((f"{target}Tests/golden.png", png.getvalue()))
        golden = golden_expectation(expected[0] if manifest.task == "classify" else expected, context)
        files.append((f"{target}Tests/golden_expected.json", json.dumps(golden, indent=1, ensure_ascii=False).encode("utf-8")))
        return files


def golden_expectation(expected: Any, context: dict[str, Any]) -> dict[str, Any]:
    """What the XCTest compares with: boxes normalized to the image (top-left origin) with labels,
    or the top-1 label."""
    labels = context["labels"]
    if not context["is_detector"]:
        return {"task": "classify", "label": labels[int(expected)]}
    w, h = context["input_width"], context["input_height"]
    boxes = []
    for d in expected:
        x1, y1, x2, y2 = d["box"]
        boxes.append({"label": labels[d["class"]], "score": d["score"],
                      "rect": [round(x1 / w, 6), round(y1 / h, 6), round((x2 - x1) / w, 6), round((y2 - y1) / h, 6)]})
    return {"task": "detect", "min_f1": 0.9, "iou": 0.5, "boxes": boxes}
