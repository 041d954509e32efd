"""OUT/manifest.json: the one file apps and device tests read.

Schema `edgepack.manifest/1` (documented in the README). All paths are relative to OUT.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from edgepack.errors import SpecError

SCHEMA = "edgepack.manifest/1"
MANIFEST_NAME = "manifest.json"


def load_manifest(out_dir: str | Path) -> dict[str, Any]:
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        raise SpecError(f"{out_dir} has no {MANIFEST_NAME}", "give an output folder written by `edgepack convert`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SpecError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        schema = manifest.get("schema") if isinstance(manifest, dict) else None
        raise SpecError(f"{path} has schema {schema!r}; this edgepack reads {SCHEMA}")
    check_manifest(manifest, path)
    return manifest


SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
KNOWN_PRECISIONS = ("fp32", "fp16", "int8-weight", "int8-dynamic", "int8")


def safe_relative_path(value: Any) -> bool:
    """A path inside OUT: relative, no `..`, no backslashes or NULs, no empty parts."""
    if not isinstance(value, str) or not value or len(value) > 1024 or value.startswith("/") or "\\" in value or "\x00" in value:
        return False
    parts = value.split("/")
    return all(part not in ("", ".", "..") for part in parts)


def check_manifest(manifest: dict[str, Any], path: Path) -> None:
    """A manifest read from disk may come from anyone: check the fields that become file paths,
    identifiers or numbers before any of them is used (apps, device tests, validation)."""

    def bad(what: str, value: Any) -> SpecError:
        shown = repr(value)
        return SpecError(f"{path}: {what} {shown[:80]} is not allowed", "regenerate the folder with `edgepack convert`")

    model = manifest.get("model")
    if not isinstance(model, dict):
        raise bad("model", model)
    labels = model.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(v, str) and len(v) <= 256 and "\n" not in v for v in labels):
        raise bad("model.labels", labels)
    if not isinstance(model.get("num_classes", 0), int):
        raise bad("model.num_classes", model.get("num_classes"))
    if model.get("name") is not None and not (isinstance(model["name"], str) and SAFE_NAME.match(model["name"])):
        raise bad("model.name", model.get("name"))
    for key in ("inputs", "reference_outputs", "reference_task_outputs"):
        value = (manifest.get("validation") or {}).get(key)
        if value is not None and not safe_relative_path(value):
            raise bad(f"validation.{key}", value)
    onnx = (manifest.get("reference") or {}).get("onnx")
    if onnx is not None and not safe_relative_path(onnx):
        raise bad("reference.onnx", onnx)
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, list):
        raise bad("artifacts", artifacts)
    for entry in artifacts:
        if not isinstance(entry, dict):
            raise bad("artifact", entry)
        for key in ("id", "format"):
            if not (isinstance(entry.get(key), str) and SAFE_NAME.match(entry[key])):
                raise bad(f"artifact {key}", entry.get(key))
        if entry.get("precision") not in KNOWN_PRECISIONS:
            raise bad(f"artifact {entry['id']} precision", entry.get("precision"))
        files = entry.get("files")
        if not isinstance(files, dict):
            raise bad(f"artifact {entry['id']} files", files)
        for role, rel in files.items():
            if not (isinstance(role, str) and SAFE_NAME.match(role)) or not safe_relative_path(rel):
                raise bad(f"artifact {entry['id']} file path", rel)
        for io in [*entry.get("inputs", []), *entry.get("outputs", [])]:
            if not isinstance(io, dict) or not all(isinstance(d, int) and 0 < d < 1 << 24 for d in io.get("shape", [])):
                raise bad(f"artifact {entry['id']} tensor shape", io)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write next to the target and rename, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def artifact_files(out_dir: str | Path, entry: dict[str, Any]) -> dict[str, Path]:
    """role -> path of an artifact's files, each checked to stay inside OUT."""
    files = {}
    for role, rel in entry["files"].items():
        if not safe_relative_path(rel):
            raise SpecError(f"artifact {entry.get('id')!r}: file path {rel!r} leaves the output folder")
        files[role] = Path(out_dir) / rel
    return files


def verify_artifact_files(out_dir: str | Path, entry: dict[str, Any]) -> list[str]:
    """What changed since the build: missing files, and files whose sha256 is not the recorded one."""
    from edgepack.tools import sha256_file

    problems = []
    for role, path in artifact_files(out_dir, entry).items():
        if not path.exists():
            problems.append(f"{entry['files'][role]} is missing")
            continue
        digest = entry.get("sha256", {}).get(role)
        if digest and path.is_file() and sha256_file(path) != digest:
            problems.append(f"{entry['files'][role]} changed since it was built (sha256 differs)")
    return problems


def find_artifact(manifest: dict[str, Any], artifact_id: str) -> dict[str, Any]:
    for entry in manifest["artifacts"]:
        if entry["id"] == artifact_id:
            return entry
    ids = ", ".join(e["id"] for e in manifest["artifacts"])
    raise SpecError(f"no artifact {artifact_id!r} in the manifest (artifacts: {ids})")
