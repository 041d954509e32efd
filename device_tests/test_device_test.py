"""`edgepack device-test` end to end: the real CLI, Debian's real adb client and server, and the
emulated device (adb wire protocol on loopback) running the host runner."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

from device_tests.conftest import ADB, load_report


def _error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0]


def test_every_backend_runs_and_matches(make_device, device_test):
    device = make_device()
    result, report_dir = device_test("--serial", device.serial)
    assert result.returncode == 0, result.stdout + result.stderr
    report = load_report(report_dir)
    facts = report["devices"][0]
    assert (facts["model"], facts["soc"], facts["abi"], facts["sdk"], facts["thermal_status"]) == ("Pixel Emu", "EMU-SOC", "arm64-v8a", 35, "none")
    assert facts["free_kb"] > 0
    cases = {c["backend"]: c for c in report["cases"]}
    assert set(cases) == {"ncnn", "mnn", "tflite"}
    for case in cases.values():
        assert case["status"] == "passed", case
        assert case["metrics"]["cosine"] > 0.999 and case["metrics"]["task_agreement"] >= 0.95
        assert len(case["latencies_ms"]) == 4 and case["latency"]["min_ms"] <= case["latency"]["median_ms"] <= case["latency"]["p99_ms"]
    # the tool cleaned up after itself on the device
    assert list((device.device_path("/data/local/tmp/edgepack")).iterdir()) == []
    # facts came from one getprop call
    assert sum(1 for c in device.commands if c.strip() == "getprop") == 1
    junit = ET.parse(report_dir / "junit.xml").getroot()
    testcases = junit.findall(".//testcase")
    assert len(testcases) == 3 and not junit.findall(".//failure")
    html = (report_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "Pixel Emu" in html


def test_no_adb(device_test, tmp_path):
    result, _ = device_test("--adb", str(tmp_path / "no-adb-here"))
    assert result.returncode == 8 and "adb not found" in _error_line(result)


def test_no_adb_on_path(converted, host_runner, tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "edgepack", "device-test", str(converted), "--runner", str(host_runner)],
                            capture_output=True, text=True, env=env, timeout=120)
    line = _error_line(result)
    assert result.returncode == 8 and "adb not found" in line and "apt-get install adb" in line


def test_no_device(device_test):
    result, _ = device_test()
    assert result.returncode == 8 and "no device connected" in _error_line(result)


def test_two_devices_need_a_serial_or_all_devices(make_device, device_test):
    first, second = make_device(), make_device()
    result, _ = device_test()
    line = _error_line(result)
    assert result.returncode == 8 and "2 devices" in line and first.serial in line and second.serial in line and "--serial" in line
    result, report_dir = device_test("--all-devices", "--backends", "ncnn")
    assert result.returncode == 0, result.stdout + result.stderr
    report = load_report(report_dir)
    assert {d["serial"] for d in report["devices"]} == {first.serial, second.serial}
    assert [c["status"] for c in report["cases"]] == ["passed", "passed"]


def test_device_goes_offline_mid_run(make_device, device_test):
    device = make_device(runner_env={"EDGEPACK_RUNNER_SLEEP": "4"})

    def pull_the_cable():
        while not any("edgepack-runner" in c and "--backend" in c for c in device.commands):
            time.sleep(0.05)
        time.sleep(0.5)
        device.stop()

    watcher = threading.Thread(target=pull_the_cable, daemon=True)
    watcher.start()
    result, _ = device_test("--serial", device.serial, "--backends", "ncnn")
    line = _error_line(result)
    assert result.returncode == 8 and device.serial in line and "went" in line, result.stdout + result.stderr


def test_runner_crash_fails_the_backend(make_device, device_test):
    device = make_device(runner_env={"EDGEPACK_RUNNER_CRASH": "1"})
    result, report_dir = device_test("--serial", device.serial, "--backends", "ncnn")
    assert result.returncode == 6 and "1 device run(s) failed" in _error_line(result)
    case = load_report(report_dir)["cases"][0]
    assert case["status"] == "failed" and "crashed (signal 6)" in case["message"]
    failure = ET.parse(report_dir / "junit.xml").getroot().find(".//failure")
    assert failure is not None and "crashed" in failure.get("message")


def test_runner_timeout(make_device, device_test):
    device = make_device(runner_env={"EDGEPACK_RUNNER_SLEEP": "30"})
    started = time.time()
    result, report_dir = device_test("--serial", device.serial, "--backends", "mnn", "--timeout", "3")
    assert result.returncode == 6, result.stdout + result.stderr
    assert "timed out after 3 s" in load_report(report_dir)["cases"][0]["message"]
    assert time.time() - started < 60


def test_unavailable_accelerator_is_skipped_not_failed(make_device, device_test):
    device = make_device()
    result, report_dir = device_test("--serial", device.serial, "--backends", "ncnn", "--accelerators", "cpu,vulkan")
    assert result.returncode == 0, result.stdout + result.stderr
    cases = {c["accelerator"]: c for c in load_report(report_dir)["cases"]}
    assert cases["cpu"]["status"] == "passed"
    assert cases["vulkan"]["status"] == "skipped" and "vulkan is not available" in cases["vulkan"]["message"]
    assert ET.parse(report_dir / "junit.xml").getroot().find(".//skipped") is not None


def test_wrong_abi_is_refused_before_pushing(make_device, device_test, tmp_path):
    device = make_device()
    runner = tmp_path / "edgepack-runner-x86_64"
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[18:20] = (0x3E).to_bytes(2, "little")  # e_machine: x86-64
    runner.write_bytes(bytes(header))
    result, _ = device_test("--serial", device.serial, runner=runner)
    line = _error_line(result)
    assert result.returncode == 8 and "built for x86_64" in line and "arm64-v8a" in line
    assert not any(c.startswith("mkdir") for c in device.commands)


def test_full_storage(make_device, device_test):
    device = make_device(free_kb=64)
    result, _ = device_test("--serial", device.serial)
    line = _error_line(result)
    assert result.returncode == 8 and "not enough space" in line and "64 KB free" in line


def test_outputs_that_differ_fail_with_the_numbers(make_device, device_test):
    device = make_device(runner_env={"EDGEPACK_RUNNER_PERTURB": "3.0"})
    result, report_dir = device_test("--serial", device.serial, "--backends", "ncnn")
    assert result.returncode == 6
    case = load_report(report_dir)["cases"][0]
    assert case["status"] == "failed"
    assert "cosine" in case["message"] or "box_f1" in case["message"], case["message"]
    assert case["metrics"]["outputs"][0]["max_abs"] > 2.9  # the numbers are in the report
    assert "vs host reference" in result.stdout + result.stderr


def test_shell_v1_without_exit_codes_still_works(adb_server, make_device):
    """The emulator speaks both shell protocols; the real client falls back to v1 by request."""
    device = make_device()
    v2 = adb_server.run("-s", device.serial, "shell", "echo out; echo err >&2; exit 5")
    assert (v2.returncode, v2.stdout, v2.stderr) == (5, "out\n", "err\n")
    v1 = adb_server.run("-s", device.serial, "shell", "-x", "echo out; exit 5")
    assert v1.stdout.strip() == "out"  # v1: no exit code, streams merged


def test_adb_version_is_the_real_client():
    version = subprocess.run([ADB, "version"], capture_output=True, text=True).stdout
    assert "Android Debug Bridge" in version


def test_a_runner_result_naming_paths_outside_is_refused(make_device, device_test, tmp_path):
    """result.json comes from a program on the phone: an output `file` like ../../x must not make
    the host write outside its work folder; the case fails naming the field."""
    runner = tmp_path / "hostile" / "edgepack-runner"
    runner.parent.mkdir()
    runner.write_text(
        f"#!{sys.executable}\n"
        "import json, pathlib, sys\n"
        "out = pathlib.Path(sys.argv[sys.argv.index('--out') + 1]); out.mkdir(parents=True, exist_ok=True)\n"
        "(out.parent / 'escaped.f32').write_bytes(bytes(16))\n"
        "record = {'input': 0, 'name': 'output0', 'file': '../escaped.f32'}\n"
        "(out / 'result.json').write_text(json.dumps({'latencies_ms': [1.0], 'outputs': [record]}))\n"
    )
    runner.chmod(0o755)
    device = make_device()
    result, report_dir = device_test("--serial", device.serial, "--backends", "ncnn", runner=runner)
    assert result.returncode == 6, result.stdout + result.stderr
    case = load_report(report_dir)["cases"][0]
    assert case["status"] == "failed" and "'../escaped.f32' is not a plain file name" in case["message"], case


def test_runner_results_are_checked_field_by_field():
    import pytest

    from edgepack.devices.device_test import checked_result

    good = {"latencies_ms": [1, 2.5], "outputs": [{"input": 0, "name": "o", "file": "out_0_0.f32"}]}
    assert checked_result(good)["latencies_ms"] == [1.0, 2.5]
    for bad, why in [
        ({**good, "outputs": [{"input": 0, "name": "o", "file": "/etc/passwd"}]}, "not a plain file name"),
        ({**good, "outputs": [{"input": 0, "name": "o", "file": ".."}]}, "not a plain file name"),
        ({**good, "outputs": [{"input": "0", "name": "o", "file": "a.f32"}]}, "not a whole number"),
        ({**good, "latencies_ms": [float("nan")]}, "finite"),
        ([], "expected an object"),
    ]:
        with pytest.raises(ValueError, match=why):
            checked_result(bad)
