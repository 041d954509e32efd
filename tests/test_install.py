"""How users install: the built wheel in a fresh venv, used from outside the repository; and every
native library of the environment finds the system libraries it links."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Native files in the pinned packages that are never loaded by edgepack on this platform, each with
# the reason; everything else must resolve every library it links.
NOT_LOADED = {
    "ai_edge_litert/vendors/": "LiteRT's accelerator-vendor plugins (OpenVINO, Qualcomm QNN) load only next to those SDKs",
    "torchao/_C_": "torchao's CUDA kernels and builds for other Python versions",
    "openvino/libs/libopenvino_intel_gpu_plugin.so": "OpenVINO's Intel GPU plugin (needs an OpenCL driver) loads only for device GPU; edgepack runs OpenVINO on the CPU",
    "torchvision/": "PyPI's torchvision is a CUDA build; edgepack uses none of its ops (onnx2torch needs them only for NMS/RoiAlign, refused by name)",
}


def _elf_files(root: Path) -> list[Path]:
    found = []
    for path in root.rglob("*.so*"):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def test_every_native_library_resolves_its_dependencies():
    site = Path(sysconfig.get_paths()["purelib"])
    missing = {}
    for path in _elf_files(site):
        rel = str(path.relative_to(site))
        if any(rel.startswith(prefix) for prefix in NOT_LOADED):
            continue
        # wheels vendor sibling libraries (h5py.libs, scipy.libs) that the loader finds through the
        # extension that loads them first: the file's own folder stands in for that here
        env = {**os.environ, "LD_LIBRARY_PATH": str(path.parent)}
        result = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env)
        lost = [line.split("=>")[0].strip() for line in result.stdout.splitlines() if "not found" in line]
        if lost:
            missing[rel] = lost
    assert not missing, f"native libraries with unresolved dependencies (install the system package): {missing}"


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_converts_and_builds_from_anywhere(tmp_path):
    """Build the wheel, install it into a new venv (CPU torch first, as the README says), then run
    convert and build from a folder outside the repository, and `pip check`."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
                   check=True, capture_output=True, text=True)
    wheel = next(dist.glob("edgepack-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for step in (["torch==2.13.0"], [str(wheel)]):
        result = subprocess.run(pip + step, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
    check = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    edgepack = str(venv / "bin" / "edgepack")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    convert = subprocess.run([edgepack, "convert", "--formats", "ncnn,tflite,coreml", "--precisions", "fp16", "-o", "out"],
                             cwd=elsewhere, capture_output=True, text=True, env=env, timeout=1800)
    assert convert.returncode == 0, convert.stderr[-3000:]
    build = subprocess.run([edgepack, "build", "--target", "android", "--target", "ios", "-o", "out"],
                           cwd=elsewhere, capture_output=True, text=True, env=env, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    assert (elsewhere / "out" / "android" / "app" / "src" / "main" / "cpp" / "runner" / "edgepack_runner.cpp").is_file()
    assert next((elsewhere / "out" / "ios").glob("*.xcodeproj/project.pbxproj")).is_file()
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import edgepack, os; print(os.path.dirname(edgepack.__file__))"],
                           cwd=elsewhere, capture_output=True, text=True, env=env)
    assert str(venv) in where.stdout, "the wheel's edgepack must be the one that ran, not the repository's"
