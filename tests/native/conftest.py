"""Fixtures for the native (C++) tests: the cached ncnn builds (edgepack.devices.native_build),
converted models with their generated Android projects, and the app's runner built against ncnn
for the host and for arm64 (run under qemu-user).

Missing toolchains (cmake, g++, g++-aarch64-linux-gnu, qemu-user) make these tests fail with
the apt-get line to run, never skip: `make test` installs them (`make system-deps`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepack.devices import native_build

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgepack", *args], capture_output=True, text=True, timeout=1200)


def cpp_dir(out: Path) -> Path:
    return out / "android" / "app" / "src" / "main" / "cpp"


def artifact(out: Path, fmt: str, precision: str) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    return next(a for a in manifest["artifacts"] if a["format"] == fmt and a["precision"] == precision)


def run_runner(command: list[str], out: Path, entry: dict, workdir: Path, precision: str | None = None,
               inputs: int | None = None, threads: int = 2) -> np.ndarray:
    """Runs a runner binary (with an optional emulator prefix) on OUT's validation inputs and
    returns its first output for each input, shaped like the reference."""
    manifest = json.loads((out / "manifest.json").read_text())
    x = np.load(out / manifest["validation"]["inputs"])["inputs"][:inputs]
    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, tensor in enumerate(x):
        path = workdir / f"input_{i}.f32"
        np.asarray(tensor, "<f4").tofile(path)
        paths.append(str(path))
    shape = entry["outputs"][0]["shape"]
    argv = [*command, "--backend", "ncnn", "--accelerator", "cpu", "--precision", precision or entry["precision"],
            "--model", str(out / entry["files"]["param"]), "--weights", str(out / entry["files"]["bin"]),
            "--input-name", entry["ncnn"]["input_blob"], "--output-names", entry["ncnn"]["output_blobs"][0],
            "--output-shapes", "x".join(str(d) for d in shape),
            "--input-shape", ",".join(str(d) for d in manifest["preprocessing"]["input_shape"]),
            "--inputs", ",".join(paths), "--threads", str(threads), "--iterations", "1", "--warmup", "0",
            "--out", str(workdir / "out")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr + result.stdout
    record = json.loads((workdir / "out" / "result.json").read_text())
    assert record["contract"] == 1 and record["precision"] == (precision or entry["precision"])
    got = [np.fromfile(workdir / "out" / o["file"], dtype="<f4").reshape(shape) for o in record["outputs"]]
    return np.stack(got)


def reference(out: Path, entry: dict, count: int | None = None) -> np.ndarray:
    manifest = json.loads((out / "manifest.json").read_text())
    with np.load(out / manifest["validation"]["reference_outputs"]) as ref:
        return ref[entry["outputs"][0]["name"]][:count]


@pytest.fixture(scope="session")
def ncnn_host() -> Path:
    return native_build.ncnn_prefix("x86_64")


@pytest.fixture(scope="session")
def ncnn_arm64() -> Path:
    return native_build.ncnn_prefix("aarch64")


@pytest.fixture(scope="session")
def qemu() -> str:
    return native_build.require("qemu-aarch64", "qemu-user")


@pytest.fixture(scope="session")
def example_out(tmp_path_factory) -> Path:
    """The built-in example detector as ncnn fp32 + fp16, with its Android project."""
    out = tmp_path_factory.mktemp("native-example") / "out"
    result = run_cli("build", "--target", "android", "--formats", "ncnn", "--precisions", "fp32,fp16", "-o", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    return out


@pytest.fixture(scope="session")
def host_runner(example_out, ncnn_host, tmp_path_factory) -> Path:
    return native_build.build_runner(cpp_dir(example_out), "x86_64", tmp_path_factory.mktemp("runner-host") / "edgepack-runner")


@pytest.fixture(scope="session")
def arm64_runner(example_out, ncnn_arm64, tmp_path_factory) -> Path:
    return native_build.build_runner(cpp_dir(example_out), "aarch64", tmp_path_factory.mktemp("runner-arm64") / "edgepack-runner")


def compile_with_ncnn(sources: list[Path], prefix: Path, output: Path, include: list[Path] = ()) -> Path:
    """Host g++ against the cached host ncnn (static, OpenMP)."""
    gxx = native_build.require("g++", "g++")
    argv = [gxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{prefix / 'include' / 'ncnn'}",
            *(f"-I{p}" for p in include), *map(str, sources), str(prefix / "lib" / "libncnn.a"), "-fopenmp", "-pthread",
            "-o", str(output)]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return output


def which_or_fail(tool: str, package: str) -> str:
    found = shutil.which(tool)
    assert found, f"{tool} not found: apt-get install {package} (make system-deps)"
    return found
