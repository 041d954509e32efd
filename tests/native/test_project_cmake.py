"""The generated project's CMakeLists.txt and JNI bridge on the host: the default project (no
ncnn/MNN libraries unpacked, nothing downloadable) configures without error and leaves the
engines out; a present library is picked up; the download path checks the pinned sha256; the
bridge compiles against a JDK's jni.h and exports every `external fun` of NativeDetector.kt."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from edgepack.devices import native_build
from native.conftest import HERE, cpp_dir


def configure(source: Path, build: Path, *args: str) -> subprocess.CompletedProcess:
    """CMake configure; stdout/stderr with whitespace folded (CMake wraps warning text)."""
    cmake = native_build.require("cmake", "cmake")
    result = subprocess.run([cmake, "-S", str(source), "-B", str(build), "-DEDGEPACK_BUILD_RUNNER=ON", *args],
                            capture_output=True, text=True, timeout=300)
    result.stdout, result.stderr = " ".join(result.stdout.split()), " ".join(result.stderr.split())
    return result


def test_default_project_configures_without_engine_libraries(example_out, tmp_path):
    project = tmp_path / "cpp"
    shutil.copytree(cpp_dir(example_out), project)
    result = configure(project, tmp_path / "build")
    assert result.returncode == 0, result.stderr
    assert "no ncnn for x86_64: the ncnn backend is left out" in result.stderr
    # without an engine the runner still builds and says so at run time
    build = subprocess.run([native_build.require("cmake", "cmake"), "--build", str(tmp_path / "build"), "--target",
                            "edgepack-runner"], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run([str(tmp_path / "build" / "edgepack-runner"), "--backend", "ncnn", "--model", "m", "--input-name", "i",
                          "--output-names", "o", "--output-shapes", "1x2", "--input-shape", "1,3,2,2", "--inputs", "x",
                          "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert run.returncode == 2 and "not built into this runner" in run.stderr


def test_unpacked_ncnn_is_found(example_out, ncnn_host, tmp_path):
    """An ncnn release unpacked in place (ncnn-<version>-android-vulkan/<abi>/...) is used as is."""
    project = tmp_path / "cpp"
    shutil.copytree(cpp_dir(example_out), project)
    shutil.copytree(ncnn_host, project / "ncnn-20260526-android-vulkan" / "x86_64")
    result = configure(project, tmp_path / "build")
    assert result.returncode == 0, result.stderr
    assert "edgepack: ncnn for x86_64 from" in result.stdout and "ncnn-20260526-android-vulkan" in result.stdout


def _fake_release(ncnn_host: Path, folder: Path) -> Path:
    """A zip with the layout of ncnn's Android release, holding the host build."""
    archive = folder / "ncnn-test-android-vulkan.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in ncnn_host.rglob("*"):
            if path.is_file():
                z.write(path, f"ncnn-test-android-vulkan/x86_64/{path.relative_to(ncnn_host)}")
    return archive


@pytest.mark.parametrize("good_hash", [True, False])
def test_download_is_checked_against_its_sha256(example_out, ncnn_host, tmp_path, good_hash):
    """The fetch path of the Android build (ANDROID is faked here; the URL is a local file):
    a package whose sha256 differs is not used, and that is a warning, not a configure error."""
    import hashlib

    project = tmp_path / "cpp"
    shutil.copytree(cpp_dir(example_out), project)
    archive = _fake_release(ncnn_host, tmp_path)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest() if good_hash else "0" * 64
    result = configure(project, tmp_path / "build", "-DANDROID=ON", f"-DEDGEPACK_NCNN_URL=file://{archive}",
                       f"-DEDGEPACK_NCNN_SHA256={sha}", "-DANDROID_ABI=x86_64", "-DEDGEPACK_FETCH_ENGINES=ON")
    assert result.returncode == 0, result.stderr
    if good_hash:
        assert "edgepack: ncnn for x86_64 from" in result.stdout and (project / ".engines").is_dir()
    else:
        assert "expected 000000" in result.stderr and "the ncnn backend is left out" in result.stderr
        assert not list((project / ".engines").glob("ncnn-*/*"))


def test_no_download_unless_asked_and_no_search_for_an_engine_gradle_left_out(example_out, ncnn_host, tmp_path):
    """Downloads are opt-in (Gradle: -Pedgepack.fetchEngines=true); an engine Gradle passes as
    OFF is not looked for even when its package is unpacked next to CMakeLists.txt."""
    import hashlib

    project = tmp_path / "cpp"
    shutil.copytree(cpp_dir(example_out), project)
    archive = _fake_release(ncnn_host, tmp_path)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    result = configure(project, tmp_path / "build", "-DANDROID=ON", f"-DEDGEPACK_NCNN_URL=file://{archive}",
                       f"-DEDGEPACK_NCNN_SHA256={sha}", "-DANDROID_ABI=x86_64")
    assert result.returncode == 0, result.stderr
    assert "downloading" not in result.stdout and not (project / ".engines").exists()
    assert "the ncnn backend is left out" in result.stderr
    with zipfile.ZipFile(archive) as z:
        z.extractall(project)  # unpacked as the README says: ncnn-<version>-android-vulkan/<abi>/...
    result = configure(project, tmp_path / "build2", "-DANDROID=ON", "-DANDROID_ABI=x86_64")
    assert result.returncode == 0 and "edgepack: ncnn for x86_64 from" in result.stdout, result.stderr
    result = configure(project, tmp_path / "build3", "-DANDROID=ON", "-DANDROID_ABI=x86_64", "-DEDGEPACK_WITH_NCNN=OFF")
    assert result.returncode == 0 and "ncnn left out (EDGEPACK_WITH_NCNN=OFF)" in result.stdout, result.stdout + result.stderr


def test_jni_bridge_exports_what_the_kotlin_declares(example_out, tmp_path):
    jdk_include = sorted(Path("/usr/lib/jvm").glob("*/include/jni.h"))
    assert jdk_include, "no JDK jni.h (apt-get install openjdk-17-jdk-headless)"
    include = jdk_include[0].parent
    gxx = native_build.require("g++", "g++")
    obj = tmp_path / "jni_bridge.o"
    cpp = cpp_dir(example_out)
    subprocess.run([gxx, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fPIC", "-c", f"-I{include}", f"-I{include / 'linux'}",
                    f"-I{HERE / 'stubs'}", f"-I{cpp}", "-DEDGEPACK_WITH_NCNN=1", str(cpp / "jni_bridge.cpp"), "-o", str(obj)],
                   check=True, capture_output=True, text=True)
    symbols = set(subprocess.run(["nm", "-g", "--defined-only", str(obj)], capture_output=True, text=True, check=True).stdout.split())
    kotlin = next((example_out / "android" / "app" / "src" / "main" / "java").rglob("NativeDetector.kt")).read_text()
    package = re.search(r"^package (\S+)", kotlin, re.M).group(1)
    declared = re.findall(r"external fun (\w+)", kotlin)
    assert "nativeCreate" in declared
    prefix = "Java_" + package.replace("_", "_1").replace(".", "_") + "_NativeDetector_"
    missing = [name for name in declared if prefix + name not in symbols]
    assert not missing, (missing, sorted(s for s in symbols if s.startswith("Java_")))
    # and the other way round: every exported function has its Kotlin declaration (nativeBackends
    # is how the app lists only the engines compiled in)
    undeclared = [s[len(prefix):] for s in symbols if s.startswith(prefix) and s[len(prefix):] not in declared]
    assert not undeclared and "nativeBackends" in declared, undeclared
