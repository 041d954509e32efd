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


def path_size(path: Path) -> int:
    """Bytes on disk of a file, or of every file in a folder (an .mlpackage is a folder)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size if path.is_file() else 0


def artifact_report(target: Path) -> dict[str, Any]:
    """What `inspect` knows of one artifact file: format, files with sizes, its manifest record, what the file says."""
    if not target.exists():
        raise SpecError(f"{target} does not exist", "give an artifact file or an output folder")
    fmt_role = ("ncnn", "param") if target.name.endswith(".ncnn.bin") else SUFFIXES.get(target.suffix)
    if fmt_role is None:
        known = ", ".join([*SUFFIXES, ".ncnn.bin"])
        raise SpecError(f"{target} is not a known artifact ({known}) or an output folder with {MANIFEST_NAME}")
    fmt, role = fmt_role
    if fmt == "ncnn":  # an ncnn model is two files: the graph (.param) and the weights (.bin)
        target = target.with_suffix(".param")
        files = {"param": target, "bin": target.with_suffix(".bin")}
        missing = [p for p in files.values() if not p.is_file()]
        if missing:
            raise SpecError(f"{missing[0]} is missing: an ncnn model needs both its .param and .bin", "keep the two files together")
    else:
        files = {role: target}
        for companion, suffix in COMPANIONS.get(fmt, {}).items():  # e.g. OpenVINO's .xml + .bin
            if target.with_suffix(suffix).is_file():
                files[companion] = target.with_suffix(suffix)
    entry = _entry_for_file(target)
    return {
        "path": str(target),
        "format": fmt,
        "title": FORMATS.get(fmt).info.title,
        "files": {r: {"path": str(p), "size_bytes": path_size(p)} for r, p in files.items()},
        "size_bytes": sum(path_size(p) for p in files.values()),
        "manifest_entry": _entry_summary(entry) if entry else None,
        "details": FORMATS.get(fmt)().describe(files),
    }


def _entry_summary(entry: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "precision", "status", "inputs", "outputs", "preprocessing")
    return {k: entry.get(k) for k in keys}


def inspect_path(target: Path, as_json: bool = False) -> dict[str, Any]:
    if target.is_dir() and (target / MANIFEST_NAME).is_file():
        return _inspect_output(target, as_json)
    report = artifact_report(target)
    if as_json:
        console.stdout.print_json(json.dumps(report, default=str))
        return report
    console.info(f"{report['path']}  ({report['title']}, {report['size_bytes'] / 1e6:.2f} MB)")
    for role, f in report["files"].items():
        console.info(f"  {role}: {f['path']} ({f['size_bytes'] / 1e6:.2f} MB)")
    if report["manifest_entry"]:
        _print_entry(report["manifest_entry"])
    _print_mapping(report["details"])
    return report


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


def _inspect_output(out: Path, as_json: bool) -> dict[str, Any]:
    manifest = load_manifest(out)
    if as_json:
        summary = {
            "path": str(out), "model": manifest["model"], "preprocessing": manifest["preprocessing"],
            "artifacts": [
                {**_entry_summary(e), "format": e["format"], "files": e["files"], "size_bytes": e["size_bytes"],
                 "validation": {k: v for k, v in (e.get("validation") or {}).items() if k in ("cosine", "task_metric", "task_agreement", "reasons")}}
                for e in manifest["artifacts"]
            ],
        }
        console.stdout.print_json(json.dumps(summary, default=str))
        return summary
    m = manifest["model"]
    pre = manifest["preprocessing"]
    console.info(f"{out}: {m['name']} ({m['task']}{', ' + m['head'] if m.get('head') else ''}), source {m['source']}")
    console.info(f"  input {pre['input_shape']} {pre['resize']} {pre['color_order']} mean={pre['mean']} std={pre['std']}")
    console.info(f"  {m['num_classes']} labels: {', '.join(m['labels'][:10])}{' ...' if len(m['labels']) > 10 else ''}")
    console.table("artifacts", COLUMNS, [artifact_row(e) for e in manifest["artifacts"]])
    return manifest
