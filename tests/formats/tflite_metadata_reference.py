"""The independent reader of TFLite Metadata the tests hold edgepack's writer to: Debian's `flatc`
decoding the metadata buffer with tflite-support's own metadata_schema.fbs (taken from the
tflite-support 0.4.4 wheel, downloaded with pip once and cached), the buffer found in the model by
LiteRT's flatbuffer reader, the packed files opened with zipfile. None of it is edgepack code."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

TFLITE_SUPPORT = "tflite-support==0.4.4"
SCHEMA_MEMBER = "tensorflow_lite_support/metadata/metadata_schema.fbs"
SCHEMA_SHA256 = "2d3386ba124690ba1195bfc1d51ac814843bd675a7c845afab7c001c7891449e"  # schema version 1.5.0
CACHE = Path.home() / ".cache" / "edgepack" / "tflite-support-0.4.4"


@pytest.fixture(scope="session")
def metadata_schema_fbs() -> Path:
    """tflite-support's metadata_schema.fbs (the wheel is fetched from PyPI once, then cached)."""
    target = CACHE / "metadata_schema.fbs"
    if not target.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet", TFLITE_SUPPORT, "-d", tmp],
                capture_output=True, text=True, timeout=600,
            )
            assert result.returncode == 0, f"pip download {TFLITE_SUPPORT} failed (needs PyPI): {result.stderr[-500:]}"
            wheel = next(Path(tmp).glob("tflite_support-*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                target.write_bytes(archive.read(SCHEMA_MEMBER))
    assert hashlib.sha256(target.read_bytes()).hexdigest() == SCHEMA_SHA256, f"{target} is not tflite-support 0.4.4's schema"
    return target


@pytest.fixture(scope="session")
def flatc() -> str:
    path = shutil.which("flatc")
    assert path, "flatc is missing: `apt-get install flatbuffers-compiler` (make system-deps)"
    return path


@pytest.fixture
def flatc_json(flatc, metadata_schema_fbs, tmp_path):
    """Decode a metadata buffer as tflite-support's tools do (flatc, official schema, strict JSON)."""

    def decode(buffer: bytes) -> dict:
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        (folder / "metadata.bin").write_bytes(buffer)
        result = subprocess.run([flatc, "--json", "--strict-json", "-o", str(folder), str(metadata_schema_fbs), "--",
                                 str(folder / "metadata.bin")], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and (folder / "metadata.json").is_file(), f"flatc cannot read it: {result.stderr[-500:]}"
        return json.loads((folder / "metadata.json").read_text(encoding="utf-8"))

    return decode


@pytest.fixture
def flatc_encode(flatc, metadata_schema_fbs, tmp_path):
    """The reverse: flatc builds the binary of a JSON document with the official schema."""

    def encode(doc: dict) -> bytes:
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        (folder / "metadata.json").write_text(json.dumps(doc), encoding="utf-8")
        result = subprocess.run([flatc, "-b", "-o", str(folder), str(metadata_schema_fbs), str(folder / "metadata.json")],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr[-500:]
        return (folder / "metadata.tflitemeta").read_bytes()

    return encode


def litert_metadata_buffer(model_path: Path) -> bytes:
    """The TFLITE_METADATA buffer as LiteRT's own flatbuffer reader finds it (exactly one entry)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(model_path))
    entries = [m for m in model.metadata or [] if m.name == b"TFLITE_METADATA"]
    assert len(entries) == 1, [m.name for m in model.metadata or []]
    return bytes(model.buffers[entries[0].buffer].data)


def packed_files(model_path: Path) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(model_path) as archive:
        return {info.filename: info for info in archive.infolist()}


def same(got, want, path: str = "$") -> None:
    """Deep equality; floats to float32 precision (flatc prints 6 decimals)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), (path, sorted(got), sorted(want))
        for key in want:
            same(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (path, got, want)
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, f"{path}[{i}]")
    elif isinstance(want, float) or isinstance(got, float):
        assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), (path, got, want)
    else:
        assert got == want and type(got) is type(want), (path, got, want)
