"""Skip a conversion whose inputs have not changed: the cache key is a content hash of the
source model, the whole build spec, the calibration/validation image folders (names, sizes,
mtimes), the tool versions and edgepack's own version. An output folder whose manifest carries
the same key and whose artifact files still match their recorded sha256 is reused as is."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from edgepack import __version__
from edgepack.spec import BUILTIN_PREFIX, BuildSpec
from edgepack.tools import package_version, sha256_file


def _folder_fingerprint(folder: str | None) -> list[Any] | None:
    if not folder or not Path(folder).is_dir():
        return None
    return sorted((str(p.relative_to(folder)), p.stat().st_size, int(p.stat().st_mtime)) for p in Path(folder).rglob("*") if p.is_file())


def _source_digest(spec: BuildSpec) -> str | None:
    source = spec.model.source
    if source is None or source.startswith(BUILTIN_PREFIX):
        from edgepack.builtin import get_example

        name = source[len(BUILTIN_PREFIX):] if source else ("shapes-classifier" if spec.model.task == "classify" else "shapes-detector")
        example = get_example(name)
        weights = example.weights_path
        return f"builtin:{name}:{sha256_file(weights) if weights.is_file() else 'random-init'}"
    path = Path(source)
    if path.is_file():
        return sha256_file(path)
    return None  # package.module:factory: code can change without a file to hash


def cache_key(spec: BuildSpec, tool_packages: tuple[str, ...]) -> str | None:
    """None when the inputs cannot be fingerprinted (then the build always runs)."""
    digest = _source_digest(spec)
    if digest is None:
        return None
    settings = dataclasses.asdict(spec)
    settings.pop("output", None)
    payload = {
        "source": digest,
        "labels": sha256_file(Path(spec.model.labels)) if spec.model.labels else None,
        "spec": settings,
        "calibration_images": _folder_fingerprint(spec.calibration.images),
        "validation_images": _folder_fingerprint(spec.validation.images),
        "tools": {p: package_version(p) for p in tool_packages},
        "edgepack": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def reusable_manifest(out: Path, key: str | None) -> dict[str, Any] | None:
    """The existing manifest when it was built from the same inputs and its files are intact."""
    from edgepack.manifest import MANIFEST_NAME, load_manifest

    if key is None or not (out / MANIFEST_NAME).is_file():
        return None
    try:
        manifest = load_manifest(out)
    except Exception:
        return None
    if manifest.get("cache_key") != key:
        return None
    for entry in manifest["artifacts"]:
        for role, digest in entry.get("sha256", {}).items():
            path = out / entry["files"][role]
            if not path.is_file() or sha256_file(path) != digest:
                return None
        for rel in entry["files"].values():
            if not (out / rel).exists():
                return None
    return manifest
