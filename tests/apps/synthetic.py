"""A small, fast OUT folder written directly (no conversion): a manifest.json of the real schema
with placeholder model files. The app generator only copies model files, so every rendering,
escaping and re-build test can run on it in milliseconds; the tests that run real models use
the session conversions of tests/conftest.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np


def manifest_for(task: str = "detect", num_classes: int = 5, size: int = 320, anchors: int = 2100,
                 labels: list[str] | None = None) -> dict[str, Any]:
    labels = labels or [f"class {i}" for i in range(num_classes)]
    out_shape = [1, 4 + num_classes, anchors] if task == "detect" else [1, num_classes]

    def artifact(fmt: str, precision: str, files: dict[str, str], layout: str = "NCHW", **extra: Any) -> dict[str, Any]:
        in_shape = [1, 3, size, size] if layout == "NCHW" else [1, size, size, 3]
        return {"id": f"{fmt}-{precision}", "format": fmt, "precision": precision, "status": "ok", "files": files,
                "task": task, "inputs": [{"name": "images", "shape": in_shape, "dtype": "float32", "layout": layout}],
                "outputs": [{"name": "output0", "shape": out_shape, "dtype": "float32"}], **extra}

    return {
        "schema": "edgepack.manifest/1",
        "edgepack_version": "0.1.0",
        "model": {"name": "synthetic", "task": task, "head": "yolov8" if task == "detect" else None,
                  "num_classes": num_classes, "labels": labels, "labels_file": "labels.txt"},
        "preprocessing": {"input_shape": [1, 3, size, size], "resize": "letterbox", "pad_value": 114, "color_order": "rgb",
                          "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0], "layout": "NCHW"},
        "postprocessing": {"score_threshold": 0.25, "iou_threshold": 0.45},
        "validation": {"inputs": "validation/inputs.npz", "reference_task_outputs": "validation/reference_task.json"},
        "artifacts": [
            artifact("tflite", "fp16", {"model": "tflite/synthetic-fp16.tflite"}, layout="NHWC",
                     runtime_io={"input": "serving_default_args_0", "outputs": ["serving_default_output_0"]},
                     tflite={"io": {"inputs": [{"name": "serving_default_args_0", "dtype": "float32"}],
                                    "outputs": [{"name": "serving_default_output_0", "dtype": "float32"}]}}),
            artifact("ncnn", "fp16", {"param": "ncnn/synthetic-fp16.ncnn.param", "bin": "ncnn/synthetic-fp16.ncnn.bin"},
                     runtime_io={"input": "in0", "outputs": ["out0"]}, ncnn={"input_blob": "in0", "output_blobs": ["out0"]}),
            artifact("mnn", "fp16", {"model": "mnn/synthetic-fp16.mnn"}),
            artifact("coreml", "fp16", {"model": "coreml/synthetic-fp16.mlpackage"}),
        ],
    }


def write_out(root: Path, manifest: dict[str, Any] | None = None) -> Path:
    """OUT with the manifest and every file it lists (placeholder bytes), golden inputs included."""
    manifest = copy.deepcopy(manifest or manifest_for())
    root.mkdir(parents=True, exist_ok=True)
    for entry in manifest["artifacts"]:
        for rel in entry["files"].values():
            path = root / rel
            if path.suffix == ".mlpackage":
                (path / "Data").mkdir(parents=True, exist_ok=True)
                (path / "Manifest.json").write_text('{"fileFormatVersion": "1.0.0"}')
                (path / "Data" / "weights.bin").write_bytes(b"\0" * 64)
            elif not Path(rel).is_absolute() and ".." not in Path(rel).parts:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(f"placeholder {rel}".encode())
    _, c, h, w = manifest["preprocessing"]["input_shape"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 1, c, h, w)).astype(np.float32) / 255.0
    (root / "validation").mkdir(exist_ok=True)
    np.savez_compressed(root / "validation/inputs.npz", inputs=images)
    task = manifest["model"]["task"]
    reference = [[{"box": [10.0, 20.0, 100.0, 120.0], "score": 0.9, "class": 1}], []] if task == "detect" else [2, 1]
    (root / "validation/reference_task.json").write_text(json.dumps(reference))
    (root / "labels.txt").write_text("\n".join(manifest["model"]["labels"]) + "\n", encoding="utf-8")
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    return root
