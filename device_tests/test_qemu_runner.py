"""`edgepack device-test --runner PATH` with the real arm64 runner: the app's C++ (runner +
ncnn engine) cross-compiled with Debian's aarch64-linux-gnu-g++ against ncnn built from its PyPI
source distribution, pushed by Debian's adb client to the emulated arm64-v8a device, which runs
it under qemu-aarch64; the outputs are compared with the host reference by the tool itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from device_tests.conftest import load_report
from edgepack.devices import native_build
from edgepack.devices.runner import runner_abi


@pytest.fixture(scope="module")
def arm64_runner(converted, tmp_path_factory) -> Path:
    native_build.require("qemu-aarch64", "qemu-user")
    result = subprocess.run([sys.executable, "-m", "edgepack", "build", "--target", "android", "-o", str(converted)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr + result.stdout
    cpp = converted / "android" / "app" / "src" / "main" / "cpp"
    return native_build.build_runner(cpp, "aarch64", tmp_path_factory.mktemp("arm64") / "edgepack-runner")


def test_emulated_device_runs_arm64_programs_through_qemu(adb_server, make_device, tmp_path):
    """A static arm64 program pushed with the real adb client runs on the emulated arm64-v8a
    device (under qemu-aarch64), with its exit code and streams."""
    native_build.require("qemu-aarch64", "qemu-user")
    gxx = native_build.require("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")
    source = tmp_path / "hello.cpp"
    source.write_text('#include <cstdio>\n#include <sys/utsname.h>\n'
                      'int main(int argc, char** argv) { utsname u; uname(&u); std::printf("%s %s\\n", u.machine, argv[1]);'
                      ' std::fputs("err\\n", stderr); return 7; }\n')
    subprocess.run([gxx, "-static", "-O1", str(source), "-o", str(tmp_path / "hello")], check=True, capture_output=True)
    assert runner_abi(tmp_path / "hello") == "arm64-v8a"
    device = make_device()
    assert adb_server.run("-s", device.serial, "push", str(tmp_path / "hello"), "/data/local/tmp/hello").returncode == 0
    result = adb_server.run("-s", device.serial, "shell", "chmod 755 /data/local/tmp/hello && /data/local/tmp/hello ok")
    assert (result.returncode, result.stdout, result.stderr) == (7, "aarch64 ok\n", "err\n")
    assert device.emulated == ["/data/local/tmp/hello"]


def test_arm64_runner_through_adb_matches_the_host(make_device, device_test, arm64_runner):
    assert runner_abi(arm64_runner) == "arm64-v8a"
    device = make_device()
    result, report_dir = device_test("--serial", device.serial, "--backends", "ncnn,mnn", "--accelerators", "cpu,vulkan",
                                     runner=arm64_runner)
    assert result.returncode == 0, result.stdout + result.stderr
    cases = {(c["backend"], c["accelerator"]): c for c in load_report(report_dir)["cases"]}
    ncnn = cases[("ncnn", "cpu")]
    assert ncnn["status"] == "passed", ncnn
    assert ncnn["metrics"]["cosine"] > 0.999 and ncnn["metrics"]["task_agreement"] >= 0.95
    assert len(ncnn["latencies_ms"]) == 4
    # the runner has no Vulkan (built without it) and no MNN: reported as unavailable, not failed
    assert cases[("ncnn", "vulkan")]["status"] == "skipped"
    assert cases[("mnn", "cpu")]["status"] == "skipped" and "not built into this runner" in cases[("mnn", "cpu")]["message"]
    # it really was the arm64 binary, run by qemu on the "device"
    assert device.emulated and all(path.endswith("/edgepack-runner") for path in device.emulated)


def test_arm64_runner_that_differs_fails(make_device, device_test, arm64_runner, converted, tmp_path):
    """The same run with a corrupted weight file: the device outputs no longer match."""
    device = make_device()
    manifest_bin = next(converted.glob("ncnn/*.ncnn.bin"))
    original = manifest_bin.read_bytes()
    try:
        data = bytearray(original)
        # fp16 weights sit at even offsets (ncnn's blobs are 4-byte aligned): odd offsets hold their sign bits
        for i in range(len(data) // 2 | 1, len(data) // 2 + 8192, 2):
            data[i] ^= 0x80
        manifest_bin.write_bytes(bytes(data))
        result, report_dir = device_test("--serial", device.serial, "--backends", "ncnn", runner=arm64_runner)
    finally:
        manifest_bin.write_bytes(original)
    assert result.returncode == 6, result.stdout + result.stderr
    case = load_report(report_dir)["cases"][0]
    assert case["status"] == "failed" and case["message"], case


def test_libraries_the_runner_links_are_pushed_beside_it(tmp_path):
    """An NDK-built runner with MNN links libMNN.so (and libc++_shared.so) from its folder."""
    from edgepack.devices.device_test import runner_libraries

    runner = tmp_path / "edgepack-runner"
    runner.write_bytes(b"\x7fELF....\0libMNN.so\0libMNN_CL.so\0libc++_shared.so\0libm.so\0")
    for name in ("libMNN.so", "libMNN_CL.so", "libc++_shared.so", "libunrelated.so"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in runner_libraries(runner)] == ["libMNN.so", "libMNN_CL.so", "libc++_shared.so"]
