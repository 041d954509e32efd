"""OUT/manifest.json: the one file apps and device tests read.

Schema `edgepack.manifest/1` (documented in the README). All paths are relative to OUT.
"""

from __future__ import annotations

import json
import os
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
    if manifest.get("schema") != SCHEMA:
        raise SpecError(f"{path} has schema {manifest.get('schema')!r}; this edgepack reads {SCHEMA}")
    return manifest


def write_json_atomic(path: Path, data: Any) -> None:
    """Write next to the target and rename, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def artifact_files(out_dir: str | Path, entry: dict[str, Any]) -> dict[str, Path]:
    return {role: Path(out_dir) / rel for role, rel in entry["files"].items()}


def find_artifact(manifest: dict[str, Any], artifact_id: str) -> dict[str, Any]:
    for entry in manifest["artifacts"]:
        if entry["id"] == artifact_id:
            return entry
    ids = ", ".join(e["id"] for e in manifest["artifacts"])
    raise SpecError(f"no artifact {artifact_id!r} in the manifest (artifacts: {ids})")
