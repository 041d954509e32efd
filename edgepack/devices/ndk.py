"""Where the device runner comes from: `--runner PATH`, or built from the Android project's
C++ sources (OUT/android/app/src/main/cpp, target `edgepack-runner`) with the user's NDK when
ANDROID_NDK_HOME is set. Not exercised in CI (no NDK here): the build is plain CMake with the
NDK's toolchain file, the same configuration Gradle uses for the app's JNI library."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgepack import console
from edgepack.errors import DeviceError
from edgepack.tools import run_tool

RUNNER_ABI = "arm64-v8a"
MIN_PLATFORM = "android-24"
ABI_TRIPLES = {"arm64-v8a": "aarch64-linux-android", "armeabi-v7a": "arm-linux-androideabi", "x86_64": "x86_64-linux-android"}


def resolve_runner(runner: str | None, out: Path, abi: str = RUNNER_ABI) -> Path | None:
    if runner:
        path = Path(runner)
        if not path.is_file():
            raise DeviceError(f"runner {runner} does not exist", "build it (see README 'With a real phone') or drop --runner")
        return path
    ndk = os.environ.get("ANDROID_NDK_HOME")
    if not ndk:
        return None
    return build_runner(Path(ndk), out, abi)


def build_runner(ndk: Path, out: Path, abi: str) -> Path:
    source = out / "android" / "app" / "src" / "main" / "cpp"
    if not (source / "runner" / "edgepack_runner.cpp").is_file():
        raise DeviceError(f"no runner sources in {source}", f"generate the Android project first: edgepack build --target android -o {out}")
    toolchain = ndk / "build" / "cmake" / "android.toolchain.cmake"
    if not toolchain.is_file():
        raise DeviceError(f"ANDROID_NDK_HOME={ndk} is not an NDK (no {toolchain.relative_to(ndk)})", "point it at an NDK r28+ folder")
    cmake = shutil.which("cmake")
    if not cmake:
        raise DeviceError("cmake not found", "install CMake 3.22+ (or the SDK's cmake package) and put it on PATH")
    build = out / "device-runner-build" / abi
    build.mkdir(parents=True, exist_ok=True)
    with console.step("Building", f"edgepack-runner for {abi} with {ndk.name}") as s:
        run_tool("cmake", [cmake, "-S", str(source), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={toolchain}",
                           f"-DANDROID_ABI={abi}", f"-DANDROID_PLATFORM={MIN_PLATFORM}", "-DEDGEPACK_BUILD_RUNNER=ON",
                           "-DANDROID_SUPPORT_FLEXIBLE_PAGE_SIZES=ON", "-DCMAKE_BUILD_TYPE=Release",
                           # one C++ runtime for the runner and libMNN.so (MNN's release is built with c++_shared)
                           "-DANDROID_STL=c++_shared"], cwd=build, log_file=build / "configure.log")
        run_tool("cmake", [cmake, "--build", str(build), "--target", "edgepack-runner", "-j"], cwd=build, log_file=build / "build.log")
        # device-test pushes the shared libraries found next to the runner (CMake copies libMNN*.so there)
        for stl in sorted(ndk.glob(f"toolchains/llvm/prebuilt/*/sysroot/usr/lib/{ABI_TRIPLES.get(abi, '')}/libc++_shared.so"))[:1]:
            shutil.copy(stl, build / stl.name)
        s["note"] = str(build / "edgepack-runner")
    return build / "edgepack-runner"
