"""A small typed client over the real `adb` executable (never a reimplementation of its protocol).

Pitfalls handled here, as measured: `adb shell a b c` joins arguments unquoted, so one quoted
command string is sent; exit codes and separate stderr need the device's `shell_v2` feature
(checked, else the command's exit code is read from a marker); `adb connect` exits 0 on failure.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import DeviceError

ANDROID_TMP = "/data/local/tmp"


def find_adb(explicit: str | None = None) -> str:
    """`--adb`, then PATH, then the SDK's platform-tools."""
    if explicit:
        if Path(explicit).is_file() and os.access(explicit, os.X_OK):
            return explicit
        raise DeviceError(f"adb not found at {explicit}", "give the path of the adb executable")
    found = shutil.which("adb")
    if found:
        return found
    for variable in ("ANDROID_HOME", "ANDROID_SDK_ROOT"):
        root = os.environ.get(variable)
        if root and (Path(root) / "platform-tools" / "adb").is_file():
            return str(Path(root) / "platform-tools" / "adb")
    raise DeviceError("adb not found (PATH, $ANDROID_HOME/platform-tools, $ANDROID_SDK_ROOT/platform-tools)",
                      "install Android platform-tools (Debian: apt-get install adb) or pass --adb PATH")


@dataclass(frozen=True)
class Device:
    serial: str
    state: str  # device | offline | unauthorized | ...
    description: str = ""


@dataclass(frozen=True)
class ShellResult:
    exit_code: int
    stdout: str
    stderr: str


class AdbTimeout(Exception):
    pass


class Adb:
    def __init__(self, executable: str, server_port: int | None = None) -> None:
        self.executable = executable
        self.server_port = server_port

    def _argv(self, serial: str | None, *args: str) -> list[str]:
        argv = [self.executable]
        if self.server_port:
            argv += ["-P", str(self.server_port)]
        if serial:
            argv += ["-s", serial]
        return argv + list(args)

    def run(self, serial: str | None, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self._argv(serial, *args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AdbTimeout(f"adb {' '.join(args[:2])} did not finish within {timeout:.0f} s") from None

    def devices(self) -> list[Device]:
        result = self.run(None, "devices", "-l", timeout=30)
        if result.returncode != 0:
            raise DeviceError(f"adb devices failed: {result.stderr.strip() or result.stdout.strip()}", "restart the server: adb kill-server")
        found = []
        for line in result.stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2 and not line.startswith("*"):
                found.append(Device(parts[0], parts[1], " ".join(parts[2:])))
        return found

    def state(self, serial: str) -> str:
        result = self.run(serial, "get-state", timeout=10)
        return result.stdout.strip() if result.returncode == 0 else "gone"

    def features(self, serial: str) -> set[str]:
        result = self.run(serial, "features", timeout=10)
        return set(result.stdout.split()) if result.returncode == 0 else set()

    def shell(self, serial: str, command: str, timeout: float = 60, shell_v2: bool = True) -> ShellResult:
        """One command string; with shell_v2 the exit code and stderr come from the device."""
        if shell_v2:
            result = self.run(serial, "shell", command, timeout=timeout)
            return ShellResult(result.returncode, result.stdout, result.stderr)
        marker = "__EDGEPACK_EXIT__"
        result = self.run(serial, "shell", f"({command}); echo {marker}$?", timeout=timeout)
        out, _, code = result.stdout.rpartition(marker)
        return ShellResult(int(code.strip()) if code.strip().isdigit() else result.returncode, out, result.stderr)

    def push(self, serial: str, local: Path, remote: str, timeout: float = 300) -> None:
        result = self.run(serial, "push", str(local), remote, timeout=timeout)
        if result.returncode != 0:
            raise DeviceError(f"adb push {local.name} -> {remote} failed: {_last_line(result)}")

    def pull(self, serial: str, remote: str, local: Path, timeout: float = 300) -> None:
        result = self.run(serial, "pull", remote, str(local), timeout=timeout)
        if result.returncode != 0:
            raise DeviceError(f"adb pull {remote} failed: {_last_line(result)}")

    def getprop(self, serial: str) -> dict[str, str]:
        """Every property in one call, parsed from `[key]: [value]` lines."""
        result = self.shell(serial, "getprop", timeout=30)
        props = {}
        for line in result.stdout.splitlines():
            if line.startswith("[") and "]: [" in line:
                key, _, value = line.partition("]: [")
                props[key[1:]] = value.rstrip().removesuffix("]")
        return props


def _last_line(result: subprocess.CompletedProcess) -> str:
    text = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return text[-1] if text else f"exit {result.returncode}"


def quote(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)
