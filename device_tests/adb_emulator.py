"""An Android device as the adb server sees it over TCP, for tests without a phone.

It speaks the device side of the adb transport protocol on loopback (the same wire format
adbd uses for `adb connect` devices):

- messages: 24-byte header (command, arg0, arg1, data length, data checksum, magic) + payload;
  CNXN handshake (no AUTH), OPEN / OKAY / WRTE / CLSE streams with per-write acknowledgement;
- `shell:` (v1: one merged stream, closed at exit) and `shell,v2,...:` (packets with stdout,
  stderr and the exit code), announced with the `shell_v2` feature;
- `sync:` with STAT / LIST / SEND / RECV / QUIT (v1 requests; `stat_v2`/`ls_v2` not announced);
- `getprop` answered from a property table; other shell commands run by /bin/sh on the host
  with `/data/local/tmp` mapped to a sandbox folder that stands for the device's storage.

Test knobs (attributes of `EmulatedDevice`): `free_kb` (what `df` reports and the sync quota),
`runner_env` (extra environment for programs run on the "device", e.g. to make the host runner
crash or perturb outputs), `props`, `emulators`.

The device advertises arm64-v8a. Like a kernel's binfmt handler, a command that executes an ELF
file built for another machine (an arm64 edgepack-runner) runs it through qemu-user
(`emulators`: ELF machine -> command, default qemu-aarch64 for arm64): the real arm64 binary runs,
only the CPU is emulated.

The adb client and server are never mocked: tests run Debian's real `adb` against this.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

A_CNXN, A_OPEN, A_OKAY, A_CLSE, A_WRTE, A_AUTH = (0x4E584E43, 0x4E45504F, 0x59414B4F, 0x45534C43, 0x45545257, 0x48545541)
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
DEVICE_ROOT = "/data/local/tmp"
FEATURES = "shell_v2,cmd"

SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN = 0, 1, 2, 3, 4

ELF_AARCH64 = 0xB7
# Where a command may start: beginning, after a separator or `exec`, after VAR=value assignments.
COMMAND_POSITION = re.compile(
    r"""(^|&&|\|\||;|\||\(|\bexec\b)(\s*(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)('?)([^\s;&|()'=]+)\3(?=\s|$|;|&|\||\))""")

DEFAULT_PROPS = {
    "ro.product.model": "Pixel Emu",
    "ro.product.manufacturer": "edgepack",
    "ro.product.name": "emu",
    "ro.product.device": "emu",
    "ro.soc.model": "EMU-SOC",
    "ro.soc.manufacturer": "edgepack",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.build.version.sdk": "35",
    "ro.build.version.release": "15",
}


def _message(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    checksum = sum(data) & 0xFFFFFFFF
    return struct.pack("<6I", command, arg0, arg1, len(data), checksum, command ^ 0xFFFFFFFF) + data


@dataclass
class EmulatedDevice:
    sandbox: Path
    props: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROPS))
    free_kb: int = 8 * 1024 * 1024
    runner_env: dict[str, str] = field(default_factory=dict)
    thermal_status: int = 0
    port: int = 0
    commands: list[str] = field(default_factory=list)  # every shell command received, for tests
    emulators: dict[int, list[str]] = field(default_factory=lambda: {ELF_AARCH64: ["qemu-aarch64"]})
    emulated: list[str] = field(default_factory=list)  # device paths run through an emulator

    def __post_init__(self) -> None:
        (self.sandbox / DEVICE_ROOT.lstrip("/")).mkdir(parents=True, exist_ok=True)
        self._server: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._stopped = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "EmulatedDevice":
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(4)
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def stop(self) -> None:
        """The device disappears (cable pulled): listening socket and live connections close."""
        self._stopped.set()
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def device_path(self, path: str) -> Path:
        """Where a device path lives in the sandbox."""
        return self.sandbox / path.lstrip("/")

    # -- transport ---------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._connections.append(conn)
            threading.Thread(target=_Connection(self, conn).serve, daemon=True).start()

    # -- shell -------------------------------------------------------------------------------
    def run_shell(self, command: str) -> tuple[int, bytes, bytes]:
        self.commands.append(command)
        if command.strip() == "getprop":
            props = dict(self.props)
            props["thermal.status"] = str(self.thermal_status)
            text = "".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items()))
            return 0, text.encode(), b""
        match = re.fullmatch(r"\s*getprop\s+(\S+)\s*", command)
        if match:
            return 0, (self.props.get(match.group(1), "") + "\n").encode(), b""
        if re.fullmatch(r"\s*df\s+-k\s+(\S+)\s*", command):
            used = sum(f.stat().st_size for f in self.device_path(DEVICE_ROOT).rglob("*") if f.is_file()) // 1024
            text = f"Filesystem 1K-blocks Used Available Use% Mounted on\n/dev/block/dm-5 {self.free_kb + used} {used} {self.free_kb} 1% /data\n"
            return 0, text.encode(), b""
        host_root = str(self.device_path(DEVICE_ROOT))
        mapped = self._through_emulators(command.replace(DEVICE_ROOT, host_root), host_root)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": host_root, "TMPDIR": host_root, **self.runner_env}
        for key in ("PYTHONPATH", "VIRTUAL_ENV", "LANG"):
            if key in os.environ:
                env.setdefault(key, os.environ[key])
        proc = subprocess.run(["/bin/sh", "-c", mapped], capture_output=True, env=env, cwd=host_root, stdin=subprocess.DEVNULL)
        # paths printed by programs are device paths again
        return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode, \
            proc.stdout.replace(host_root.encode(), DEVICE_ROOT.encode()), \
            proc.stderr.replace(host_root.encode(), DEVICE_ROOT.encode())


    def _through_emulators(self, command: str, host_root: str) -> str:
        """Prefix every foreign-machine ELF file run by `command` with its qemu-user command."""

        def replace(match: re.Match) -> str:
            before, space, quote, path = match.groups()
            target = Path(path) if path.startswith("/") else Path(host_root) / path
            machine = _elf_machine(target) if path.startswith((host_root, "./")) or not path.startswith("/") else None
            emulator = self.emulators.get(machine) if machine is not None else None
            if not emulator:
                return match.group(0)
            self.emulated.append(str(target).replace(host_root, DEVICE_ROOT))
            return f"{before}{space}{' '.join(shlex.quote(a) for a in emulator)} {quote}{path}{quote}"

        return COMMAND_POSITION.sub(replace, command)


def _elf_machine(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little")


class _Connection:
    """One adb server connection: the message loop and its open streams."""

    def __init__(self, device: EmulatedDevice, conn: socket.socket) -> None:
        self.device = device
        self.conn = conn
        self.lock = threading.Lock()
        self.next_id = 1
        self.streams: dict[int, "_Stream"] = {}
        self.max_payload = 4096

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        with self.lock:
            self.conn.sendall(_message(command, arg0, arg1, data))

    def _read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def serve(self) -> None:
        try:
            while True:
                command, arg0, arg1, length, _checksum, _magic = struct.unpack("<6I", self._read_exact(24))
                data = self._read_exact(length) if length else b""
                self._dispatch(command, arg0, arg1, data)
        except (ConnectionError, OSError):
            pass
        finally:
            for stream in self.streams.values():
                stream.closed.set()
                stream.acked.set()
            try:
                self.conn.close()
            except OSError:
                pass

    def _dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            self.max_payload = min(arg1, MAX_PAYLOAD)
            banner = "device::" + ";".join(
                f"{k}={self.device.props[k]}" for k in ("ro.product.name", "ro.product.model", "ro.product.device")
            ) + f";features={FEATURES}"
            self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, banner.encode())
        elif command == A_OPEN:
            local_id, self.next_id = self.next_id, self.next_id + 1
            stream = _Stream(self, local_id, arg0)
            self.streams[local_id] = stream
            self.send(A_OKAY, local_id, arg0)
            service = data.rstrip(b"\0").decode()
            threading.Thread(target=stream.run, args=(service,), daemon=True).start()
        elif command == A_OKAY:
            stream = self.streams.get(arg1)
            if stream:
                stream.acked.set()
        elif command == A_WRTE:
            stream = self.streams.get(arg1)
            self.send(A_OKAY, arg1, arg0)
            if stream:
                stream.incoming.append(data)
                stream.data_ready.set()
        elif command == A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream:
                stream.closed.set()
                stream.acked.set()
                stream.data_ready.set()


class _Stream:
    def __init__(self, connection: _Connection, local_id: int, remote_id: int) -> None:
        self.connection = connection
        self.local_id = local_id
        self.remote_id = remote_id
        self.acked = threading.Event()
        self.closed = threading.Event()
        self.data_ready = threading.Event()
        self.incoming: list[bytes] = []
        self.buffer = b""

    # -- writing to the host ---------------------------------------------------------------
    def write(self, data: bytes) -> None:
        step = self.connection.max_payload
        for start in range(0, len(data), step):
            if self.closed.is_set():
                raise ConnectionError("stream closed")
            self.acked.clear()
            self.connection.send(A_WRTE, self.local_id, self.remote_id, data[start : start + step])
            self.acked.wait(30)

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.connection.streams.pop(self.local_id, None)
            try:
                self.connection.send(A_CLSE, self.local_id, self.remote_id)
            except OSError:
                pass

    # -- reading from the host -------------------------------------------------------------
    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if self.incoming:
                self.buffer += self.incoming.pop(0)
                continue
            if self.closed.is_set():
                raise ConnectionError("stream closed")
            self.data_ready.wait(30)
            self.data_ready.clear()
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    # -- services --------------------------------------------------------------------------
    def run(self, service: str) -> None:
        try:
            if service.startswith("shell,v2") or service.startswith("shell,"):
                options, _, command = service.partition(":")
                self._shell(command, v2="v2" in options.split(","))
            elif service.startswith("shell:"):
                self._shell(service[len("shell:"):], v2=False)
            elif service == "sync:":
                self._sync()
            else:
                self.write(b"FAIL" + f"{len('unknown service'):04x}unknown service".encode())
        except (ConnectionError, OSError):
            pass
        finally:
            self.close()

    def _shell(self, command: str, v2: bool) -> None:
        code, out, err = self.connection.device.run_shell(command)
        if not v2:
            self.write(out + err)
            return
        packet = b""
        for kind, payload in ((SHELL_STDOUT, out), (SHELL_STDERR, err)):
            if payload:
                packet += struct.pack("<BI", kind, len(payload)) + payload
        packet += struct.pack("<BI", SHELL_EXIT, 1) + bytes([code & 0xFF])
        self.write(packet)

    def _sync(self) -> None:
        device = self.connection.device
        while True:
            request, length = struct.unpack("<4sI", self.read(8))
            if request == b"QUIT":
                return
            path = self.read(length).decode()
            local = device.device_path(path)
            if request == b"STAT":
                if local.exists():
                    st = local.stat()
                    self.write(struct.pack("<4sIII", b"STAT", st.st_mode, st.st_size, int(st.st_mtime)))
                else:
                    self.write(struct.pack("<4sIII", b"STAT", 0, 0, 0))
            elif request == b"LIST":
                if local.is_dir():
                    for child in sorted(local.iterdir()):
                        st = child.stat()
                        name = child.name.encode()
                        self.write(struct.pack("<4sIIII", b"DENT", st.st_mode, st.st_size, int(st.st_mtime), len(name)) + name)
                self.write(struct.pack("<4sIIII", b"DONE", 0, 0, 0, 0))
            elif request == b"SEND":
                self._receive_file(path)
            elif request == b"RECV":
                if not local.is_file():
                    self._fail(f"remote object '{path}' does not exist")
                    continue
                data = local.read_bytes()
                for start in range(0, len(data), 64 * 1024):
                    chunk = data[start : start + 64 * 1024]
                    self.write(struct.pack("<4sI", b"DATA", len(chunk)) + chunk)
                self.write(struct.pack("<4sI", b"DONE", 0))
            else:
                self._fail(f"unknown sync request {request!r}")
                return

    def _receive_file(self, spec: str) -> None:
        device = self.connection.device
        path, _, mode = spec.rpartition(",")
        target = device.device_path(path)
        chunks, total = [], 0
        while True:
            request, length = struct.unpack("<4sI", self.read(8))
            if request == b"DATA":
                chunk = self.read(length)
                chunks.append(chunk)
                total += len(chunk)
            elif request == b"DONE":
                break
            else:
                self._fail(f"unexpected {request!r} during SEND")
                return
        if total > device.free_kb * 1024:
            self._fail(f"failed to write {path}: No space left on device")
            return
        if not target.parent.is_dir():
            self._fail(f"failed to create {path}: No such file or directory")
            return
        target.write_bytes(b"".join(chunks))
        try:
            os.chmod(target, int(mode) & 0o777)
        except ValueError:
            pass
        device.free_kb -= total // 1024
        self.write(struct.pack("<4sI", b"OKAY", 0))

    def _fail(self, message: str) -> None:
        data = message.encode()
        self.write(struct.pack("<4sI", b"FAIL", len(data)) + data)


class IsolatedAdbServer:
    """A private adb server on a random port (outside 5555-5585), with its own HOME for keys,
    so a developer's real devices and server are never touched."""

    def __init__(self, home: Path, adb: str = "adb") -> None:
        self.adb = adb
        self.home = home
        self.port = _free_port()
        home.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "ANDROID_ADB_SERVER_PORT": str(self.port),
                "ADB_MDNS": "0", "ADB_LIBUSB": "0", "ANDROID_USER_HOME": str(self.home / ".android")}

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([self.adb, "-P", str(self.port), *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self) -> "IsolatedAdbServer":
        self.run("start-server")
        return self

    def connect(self, device: EmulatedDevice, wait: float = 15) -> None:
        """`adb connect` exits 0 even on failure: wait for the `device` state instead."""
        self.run("connect", device.serial)
        deadline = time.time() + wait
        while time.time() < deadline:
            if f"{device.serial}\tdevice" in self.run("devices").stdout:
                return
            time.sleep(0.2)
        raise RuntimeError(f"emulated device {device.serial} did not come online: {self.run('devices').stdout}")

    def disconnect(self, device: EmulatedDevice) -> None:
        self.run("disconnect", device.serial)

    def stop(self) -> None:
        self.run("kill-server")


def _free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not 5554 <= port <= 5585:
            return port


def shell_quote(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)
