"""Fixtures for `edgepack device-test` against the adb device emulator: a converted model, an
isolated adb server (random port outside 5555-5585, its own HOME for keys), emulated devices,
and the host runner wrapped as the runner executable the tool pushes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from device_tests.adb_emulator import EmulatedDevice, IsolatedAdbServer  # noqa: E402
from models import export_onnx, tiny_detector  # noqa: E402

ADB = shutil.which("adb")


def pytest_collection_modifyitems(items):
    if ADB is None:  # `make test` installs Debian's adb; without it these tests cannot mean anything
        raise pytest.UsageError("device_tests need the adb client (apt-get install adb): run `make test`")


@pytest.fixture(scope="session")
def converted(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("device-model")
    model = folder / "detector.onnx"
    export_onnx(tiny_detector(), model, (1, 3, 128, 128))
    (folder / "labels.txt").write_text("a\nb\nc\n")
    out = folder / "out"
    result = subprocess.run(
        [sys.executable, "-m", "edgepack", "convert", str(model), "--labels", str(folder / "labels.txt"),
         "--formats", "ncnn,mnn,tflite", "--precisions", "fp16", "-o", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return out


@pytest.fixture(scope="session")
def host_runner(tmp_path_factory) -> Path:
    """The runner contract on the host runtimes, as an executable file the tool pushes."""
    path = tmp_path_factory.mktemp("runner") / "edgepack-runner"
    path.write_text(f"#!/bin/sh\nexec {sys.executable} -m edgepack.devices.host_runner \"$@\"\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def adb_server(tmp_path):
    server = IsolatedAdbServer(tmp_path / "adb-home", ADB).start()
    yield server
    server.stop()


@pytest.fixture
def make_device(tmp_path, adb_server):
    devices = []

    def make(connect: bool = True, **knobs) -> EmulatedDevice:
        device = EmulatedDevice(tmp_path / f"device{len(devices)}", **knobs).start()
        devices.append(device)
        if connect:
            adb_server.connect(device)
        return device

    yield make
    for device in devices:
        device.stop()


@pytest.fixture
def device_test(adb_server, converted, host_runner, tmp_path):
    """Run the real CLI (`python -m edgepack device-test`) with the isolated server's environment."""

    def run(*args: str, runner: Path | None = None, timeout: float = 600) -> tuple[subprocess.CompletedProcess, Path]:
        report = tmp_path / "report"
        argv = [sys.executable, "-m", "edgepack", "device-test", str(converted), "--runner", str(runner or host_runner),
                "--iterations", "4", "--warmup", "1", "--report", str(report), *args]
        result = subprocess.run(argv, capture_output=True, text=True, env=adb_server.env, timeout=timeout)
        return result, report

    return run


def load_report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())
