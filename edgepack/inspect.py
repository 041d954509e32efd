"""`edgepack inspect`: what an artifact or an output folder contains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgepack import console
from edgepack.errors import SpecError
from edgepack.formats import FORMATS
from edgepack.manifest import MANIFEST_NAME, artifact_files, load_manifest
from edgepack.report import COLUMNS, artifact_row

# which format a bare file belongs to, and the role it plays
SUFFIXES = {".param": ("ncnn", "param"), ".mnn": ("mnn", "model"), ".tflite": ("tflite", "model"), ".mlpackage": ("coreml", "model"),
            ".xml": ("openvino", "model"), ".onnx": ("onnx", "model"), ".pte": ("executorch", "model")}
COMPANIONS = {"ncnn": {"bin": ".bin"}, "openvino": {"weights": ".bin"}, "onnx": {"ort": ".ort"}}  # files read with the main one


def inspect_path(target: Path) -> None:
    if target.is_dir() and (target / MANIFEST_NAME).is_file():
        return _inspect_output(target)
    if not target.exists():
        raise SpecError(f"{target} does not exist", "give an artifact file or an output folder")
    fmt_role = SUFFIXES.get(target.suffix)
    if fmt_role is None:
        raise SpecError(f"{target} is not a known artifact ({', '.join(SUFFIXES)}) or an output folder with {MANIFEST_NAME}")
    fmt, role = fmt_role
    files = {role: target}
    for companion, suffix in COMPANIONS.get(fmt, {}).items():
        if target.with_suffix(suffix).is_file():
            files[companion] = target.with_suffix(suffix)
    entry = _entry_for_file(target)
    console.info(f"{target}  ({FORMATS.get(fmt).info.title}, {target.stat().st_size / 1e6:.2f} MB)")
    if entry:
        _print_entry(entry)
    _print_mapping(FORMATS.get(fmt)().describe(files))


def _entry_for_file(target: Path) -> dict[str, Any] | None:
    """The manifest record of a file inside an output folder, if there is one."""
    for folder in (target.parent, target.parent.parent):
        if (folder / MANIFEST_NAME).is_file():
            manifest = load_manifest(folder)
            for entry in manifest["artifacts"]:
                if any(p.resolve() == target.resolve() for p in artifact_files(folder, entry).values()):
                    return entry
    return None


def _print_entry(entry: dict[str, Any]) -> None:
    console.info(f"  precision: {entry['precision']}   status: {entry.get('status')}")
    for io in entry["inputs"]:
        console.info(f"  input  {io['name']}: {io['shape']} {io['dtype']} {io.get('layout', '')}")
    for io in entry["outputs"]:
        console.info(f"  output {io['name']}: {io['shape']} {io['dtype']}")
    pre = entry.get("preprocessing", {})
    if pre:
        console.info(f"  preprocessing: {pre.get('resize')} {pre.get('color_order')} mean={pre.get('mean')} std={pre.get('std')}")


def _print_mapping(data: dict[str, Any], indent: str = "  ") -> None:
    for key, value in data.items():
        if isinstance(value, dict) and value and len(json.dumps(value)) > 100:
            console.info(f"{indent}{key}:")
            _print_mapping(value, indent + "  ")
        else:
            console.info(f"{indent}{key}: {value}")


def _inspect_output(out: Path) -> None:
    manifest = load_manifest(out)
    m = manifest["model"]
    pre = manifest["preprocessing"]
    console.info(f"{out}: {m['name']} ({m['task']}{', ' + m['head'] if m.get('head') else ''}), source {m['source']}")
    console.info(f"  input {pre['input_shape']} {pre['resize']} {pre['color_order']} mean={pre['mean']} std={pre['std']}")
    console.info(f"  {m['num_classes']} labels: {', '.join(m['labels'][:10])}{' ...' if len(m['labels']) > 10 else ''}")
    console.table("artifacts", COLUMNS, [artifact_row(e) for e in manifest["artifacts"]])
