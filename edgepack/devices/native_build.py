"""Native builds for Linux: ncnn from its PyPI source distribution, and the Android project's
device runner (OUT/android/app/src/main/cpp, target `edgepack-runner`) against it, for the host
(x86_64, host g++) or for arm64 (Debian's aarch64-linux-gnu-g++, linked statically so that
qemu-user or any arm64 Linux kernel runs it without a sysroot).

This is how edgepack checks the app's C++ engine, pre/post-processing and runner on real models
without an Android NDK; the phone build stays the NDK's (`edgepack.devices.ndk`).

    python -m edgepack.devices.native_build ncnn --arch aarch64          # build or reuse the library
    python -m edgepack.devices.native_build runner OUT --arch aarch64 -o edgepack-runner-arm64

ncnn is built once per version/architecture/CPU variant into $EDGEPACK_NATIVE_CACHE (default
~/.cache/edgepack/native/ncnn-<version>-<arch>-<variant>/), outside any repository, and rebuilt
when that folder is missing. The source comes from PyPI (the same version as the ncnn wheel that
converts and validates): its setup.py stamps today's date as the version, so pip's metadata check
rejects `ncnn==<version>`; a direct reference to the registry's file, pinned by sha256, is not
version-checked (`--no-build-isolation` skips installing build dependencies that only the
metadata step would use). Only the C++ library is built: CPU only, static, no tools, no Python.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import MissingDependencyError
from edgepack.tools import exclusive_lock, sha256_file

NCNN_VERSION = "1.0.20261020"
NCNN_SDIST_URL = ("https://files.pythonhosted.org/packages/b7/50/"
                  "32b5172afe7d3e0dce410b7d8f4a5b7b84b942a0d69affbaedf669de52bc/ncnn-1.0.20261020.tar.gz")
NCNN_SDIST_SHA256 = "ad8cdd63e9755cfa8e23b9b6d9ce46156077d80298a89e7c3ba325ffccfca200"

# Only the inference library. One CPU level instead of ncnn's runtime dispatch over every ISA
# level (x86: SSE2..AVX-512, arm: ARMv8.0..v8.6 SVE) cuts the build to a fraction; the image
# helpers, the C API and bf16 kernels are not used by the engine.
NCNN_COMMON_OPTIONS = [
    "-DCMAKE_BUILD_TYPE=Release", "-DNCNN_VULKAN=OFF", "-DNCNN_SHARED_LIB=OFF", "-DNCNN_BUILD_TOOLS=OFF",
    "-DNCNN_BUILD_EXAMPLES=OFF", "-DNCNN_BUILD_BENCHMARK=OFF", "-DNCNN_BUILD_TESTS=OFF", "-DNCNN_PYTHON=OFF",
    "-DNCNN_RUNTIME_CPU=OFF", "-DNCNN_C_API=OFF", "-DNCNN_BF16=OFF",
    "-DNCNN_PIXEL_ROTATE=OFF", "-DNCNN_PIXEL_AFFINE=OFF", "-DNCNN_PIXEL_DRAWING=OFF",
]

# The layers a converted CNN classifier/detector uses (what pnnx emits for convolutions,
# activations, pooling, resize, concat/split/slice, linear layers, normalisation, int8), plus the
# ones ncnn creates internally (Packing, Cast, Padding, Crop, Flatten, (De/Re)quantize). The
# others (RNNs, attention, 1-D/3-D convolutions, detection-output heads...) are left out: the
# library builds in about half the time. A model that needs one fails to load, with the layer named.
NCNN_LAYERS = frozenset("""
    AbsVal BatchNorm Bias BinaryOp Cast Clip Concat Convolution ConvolutionDepthWise Crop Deconvolution
    DeconvolutionDepthWise Dequantize Dropout Eltwise ELU Exp ExpandDims Flatten GELU Gemm HardSigmoid HardSwish
    InnerProduct Input Interp LayerNorm MemoryData Mish Noop Packing Padding Permute PixelShuffle Pooling Power PReLU
    Quantize Reduction ReLU Requantize Reshape Scale ShuffleChannel Sigmoid Slice Softmax Softplus Split Squeeze Swish
    TanH UnaryOp
""".split())


def layer_options(source: Path) -> list[str]:
    """-DWITH_LAYER_<name>=OFF for every layer of this ncnn source outside NCNN_LAYERS."""
    import re

    text = (source / "src" / "CMakeLists.txt").read_text()
    return [f"-DWITH_LAYER_{name.lower()}=OFF" for name in re.findall(r"ncnn_add_layer\((\w+)", text) if name not in NCNN_LAYERS]


class NativeBuildError(RuntimeError):
    """A build step failed; the message ends with the tail of its log."""


@dataclass(frozen=True)
class Target:
    arch: str  # x86_64 | aarch64
    variant: str  # the one CPU level ncnn is compiled for
    cxx: str
    cc: str
    apt_package: str
    options: tuple[str, ...]
    static: bool  # link the runner statically (cross builds run under qemu without a sysroot)


def _x86_target() -> Target:
    # SSE2 only: the host build checks the engine's code, not x86 speed, and the AVX2/FMA/F16C
    # kernels take several times longer to compile (ncnn's fp16 paths are checked on arm64).
    return Target("x86_64", "sse2", "g++", "gcc", "g++", ("-DNCNN_AVX=OFF",), static=False)


# ARMv8.2 with fp16 arithmetic and dot product, as every current phone core (and qemu's default
# `max` CPU) has: ncnn then really computes in fp16 when its options allow it, which is what the
# fp32/fp16 option tests need to see.
AARCH64 = Target("aarch64", "armv82", "aarch64-linux-gnu-g++", "aarch64-linux-gnu-gcc", "g++-aarch64-linux-gnu",
                 ("-DNCNN_ARM82=ON", "-DNCNN_ARM82DOT=ON", "-DNCNN_ARM82FP16FML=ON", "-DNCNN_ARM84BF16=OFF",
                  "-DNCNN_ARM84I8MM=OFF", "-DNCNN_ARM86SVE=OFF"), static=True)


def target(arch: str) -> Target:
    if arch in ("x86_64", "host"):
        if platform.machine() != "x86_64":
            raise MissingDependencyError(f"native builds for the host support x86_64 only (this is {platform.machine()})")
        return _x86_target()
    if arch in ("aarch64", "arm64", "arm64-v8a"):
        return AARCH64
    raise ValueError(f"unknown architecture {arch!r} (x86_64 or aarch64)")


def cache_root() -> Path:
    explicit = os.environ.get("EDGEPACK_NATIVE_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgepack" / "native"


def require(tool: str, apt_package: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise MissingDependencyError(f"{tool} not found", f"apt-get install {apt_package} (or `make system-deps`)")
    return found


def _run(argv: list[str], cwd: Path, log: Path, what: str) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        result = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise NativeBuildError(f"{what} failed (exit {result.returncode}); log: {log}\n{tail}")


def ncnn_sdist(cache: Path | None = None) -> Path:
    """The pinned ncnn source distribution, downloaded from PyPI by pip once."""
    folder = (cache or cache_root()) / "sdist"
    tarball = folder / f"ncnn-{NCNN_VERSION}.tar.gz"
    if tarball.is_file() and sha256_file(tarball) == NCNN_SDIST_SHA256:
        return tarball
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "--quiet",
                "-d", tmp, f"ncnn @ {NCNN_SDIST_URL}#sha256={NCNN_SDIST_SHA256}"]
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        got = Path(tmp) / tarball.name
        if result.returncode != 0 or not got.is_file():
            raise NativeBuildError(f"pip could not download the ncnn {NCNN_VERSION} source distribution: "
                            f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}")
        if sha256_file(got) != NCNN_SDIST_SHA256:
            raise NativeBuildError(f"ncnn source distribution has the wrong sha256 (expected {NCNN_SDIST_SHA256})")
        os.replace(got, tarball)
    return tarball


def _toolchain_file(t: Target, folder: Path) -> Path:
    path = folder / f"{t.arch}-linux-gnu.cmake"
    path.write_text(
        "set(CMAKE_SYSTEM_NAME Linux)\n"
        f"set(CMAKE_SYSTEM_PROCESSOR {t.arch})\n"
        f"set(CMAKE_C_COMPILER {t.cc})\nset(CMAKE_CXX_COMPILER {t.cxx})\n"
        f"set(CMAKE_FIND_ROOT_PATH /usr/{t.arch}-linux-gnu)\n"
        "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)\n"
        "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)\n"
        "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)\n"
        "set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)\n"
    )
    return path


def _cmake_args(t: Target, folder: Path) -> list[str]:
    if t.arch == platform.machine():
        return []
    return [f"-DCMAKE_TOOLCHAIN_FILE={_toolchain_file(t, folder)}"]


def ncnn_prefix(arch: str = "x86_64", cache: Path | None = None) -> Path:
    """Install prefix of the cached ncnn build for `arch` (include/ncnn, lib/libncnn.a,
    lib/cmake/ncnn); builds it first when missing."""
    t = target(arch)
    root = cache or cache_root()
    prefix = root / f"ncnn-{NCNN_VERSION.rsplit('.', 1)[-1]}-{t.arch}-{t.variant}"
    stamp = prefix / "edgepack-build.json"
    if stamp.is_file():
        return prefix
    cmake = require("cmake", "cmake")
    require(t.cxx, t.apt_package)
    with exclusive_lock(root / f".{prefix.name}.lock"):  # one build per cache entry at a time
        if stamp.is_file():  # another process built it while we waited
            return prefix
        for stale in root.glob(f"build-{prefix.name}-*"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        sdist = ncnn_sdist(root)
        started, cpu_started = time.perf_counter(), _children_cpu()
        work = Path(tempfile.mkdtemp(prefix=f"build-{prefix.name}-", dir=root))
        try:
            with tarfile.open(sdist) as tar:
                tar.extractall(work, filter="data")
            source = work / f"ncnn-{NCNN_VERSION}"
            build, staging = work / "build", work / "install"
            build.mkdir()
            log = work / "build.log"
            _run([cmake, "-S", str(source), "-B", str(build), *NCNN_COMMON_OPTIONS, *t.options, *layer_options(source),
                  *_cmake_args(t, work),
                  f"-DCMAKE_INSTALL_PREFIX={staging}", "-DCMAKE_INSTALL_LIBDIR=lib"], work, log, f"configuring ncnn for {t.arch}")
            _run([cmake, "--build", str(build), "-j", str(os.cpu_count() or 2)], work, log, f"building ncnn for {t.arch}")
            _run([cmake, "--install", str(build)], work, log, f"installing ncnn for {t.arch}")
            seconds = round(time.perf_counter() - started, 1)
            (staging / "edgepack-build.json").write_text(json.dumps({
                "ncnn": NCNN_VERSION, "arch": t.arch, "variant": t.variant, "seconds": seconds, "cores": os.cpu_count(),
                # compiler CPU time: wall time on an otherwise idle machine is about this / cores
                "cpu_seconds": round(_children_cpu() - cpu_started, 1), "load_average": os.getloadavg()[0],
                "options": NCNN_COMMON_OPTIONS + list(t.options), "layers": sorted(NCNN_LAYERS),
                "sdist_sha256": NCNN_SDIST_SHA256,
            }, indent=1))
            if prefix.exists():
                shutil.rmtree(prefix)
            os.replace(staging, prefix)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return prefix


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build_info(prefix: Path) -> dict:
    return json.loads((prefix / "edgepack-build.json").read_text())


def build_runner(cpp_dir: Path, arch: str, output: Path, cache: Path | None = None) -> Path:
    """Configure the Android project's own CMakeLists.txt for a Linux target with the cached
    ncnn and build its `edgepack-runner` target; the binary is copied to `output`."""
    t = target(arch)
    cpp_dir = Path(cpp_dir)
    if not (cpp_dir / "runner" / "edgepack_runner.cpp").is_file():
        raise FileNotFoundError(f"no runner sources in {cpp_dir} (generate the Android project first)")
    prefix = ncnn_prefix(arch, cache)
    cmake = require("cmake", "cmake")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgepack-runner-build-") as tmp:
        work = Path(tmp)
        log = work / "build.log"
        try:
            _run([cmake, "-S", str(cpp_dir), "-B", str(work / "build"), "-DCMAKE_BUILD_TYPE=Release",
                  "-DEDGEPACK_BUILD_RUNNER=ON", f"-DEDGEPACK_RUNNER_STATIC={'ON' if t.static else 'OFF'}",
                  "-DEDGEPACK_FETCH_ENGINES=OFF", f"-DEDGEPACK_NCNN_DIR={prefix / 'lib' / 'cmake' / 'ncnn'}",
                  *_cmake_args(t, work)], work, log, f"configuring edgepack-runner for {t.arch}")
            _run([cmake, "--build", str(work / "build"), "--target", "edgepack-runner", "-j", str(os.cpu_count() or 2)],
                 work, log, f"building edgepack-runner for {t.arch}")
        except NativeBuildError:
            shutil.copy(log, output.with_suffix(".build.log"))
            raise
        shutil.copy(work / "build" / "edgepack-runner", output)
    return output


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgepack.devices.native_build", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    lib = sub.add_parser("ncnn", help="build (or reuse) ncnn for an architecture; prints its install prefix")
    lib.add_argument("--arch", default="x86_64", choices=["x86_64", "aarch64"])
    run = sub.add_parser("runner", help="build edgepack-runner from an edgepack output folder or its cpp folder")
    run.add_argument("source", help="OUT (with android/) or the app's src/main/cpp folder")
    run.add_argument("--arch", default="x86_64", choices=["x86_64", "aarch64"])
    run.add_argument("-o", "--output", required=True)
    a = p.parse_args(argv)
    if a.command == "ncnn":
        prefix = ncnn_prefix(a.arch)
        print(prefix)
        print(json.dumps(build_info(prefix)), file=sys.stderr)
        return 0
    source = Path(a.source)
    if (source / "android").is_dir():
        source = source / "android" / "app" / "src" / "main" / "cpp"
    print(build_runner(source, a.arch, Path(a.output)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
