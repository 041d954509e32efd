"""MNN .mnn through MNN's native converter module; validated with the MNN Python runtime.

The `mnnconvert`/`mnnquant` console scripts of the mnn wheel import `MNN.tools.utils.log`,
which pip-installs a logging SDK and uploads usage telemetry. edgepack never imports those
wrappers: it calls the wheel's native `_tools` extension in a child interpreter (which also
keeps the converter's fd-1 chatter and any native crash away from this process).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import ConversionError
from edgepack.formats.base import FORMATS, ConversionJob, ConvertedModel, FormatInfo, HostRunner, TargetFormat, require_modules, fit_shape
from edgepack.native import captured_native_stdout
from edgepack.tools import run_python

# Exit 0 only when the converter said so: _tools.mnnconvert returns True even on failure.
CONVERT_SNIPPET = (
    "import sys, _tools\n"
    "_tools.mnnconvert(sys.argv[1:])\n"
)
PRECISION_FLAGS = {
    "fp32": [],
    "fp16": ["--fp16"],
    "int8-weight": ["--weightQuantBits", "8"],
    "int8": [],  # fp32 first, then the quantization tool
}
_NOT_SUPPORTED = re.compile(r"Op Not Support:\s*(.+)")


def convert_onnx(onnx_path: Path, out_path: Path, flags: list[str], workdir: Path, log_name: str) -> None:
    argv = ["mnnconvert", "-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(out_path), "--bizCode", "edgepack"]
    output = run_python("mnn", CONVERT_SNIPPET, argv + flags, cwd=workdir, log_file=workdir / log_name)
    missing = _NOT_SUPPORTED.search(output)
    if missing:
        ops = [op.split("::")[-1] for op in missing.group(1).split()]
        node = _first_node_of(onnx_path, ops[0])
        raise ConversionError(
            f"mnn: unsupported op {ops[0]} at node '{node}'" + (f" (also: {', '.join(ops[1:])})" if ops[1:] else ""),
            "replace that operation in the model, or drop mnn from --formats",
        )
    if "Converted Success" not in output or not out_path.is_file():
        tail = " | ".join(output.strip().splitlines()[-2:])
        raise ConversionError(f"mnn: conversion failed: {tail} (full log: {workdir / log_name})")


def _first_node_of(onnx_path: Path, op_type: str) -> str:
    import onnx

    for node in onnx.load(str(onnx_path), load_external_data=False).graph.node:
        if node.op_type == op_type:
            return node.name or node.output[0]
    return "?"


class MnnRunner:
    def __init__(self, path: Path, entry: dict[str, Any], threads: int) -> None:
        with captured_native_stdout("MNN"):  # MNN prints its CPU features on import
            import MNN.nn as nn

        precision = {"fp32": "high", "fp16": "low"}.get(entry["precision"], "normal")
        self.input_name = entry["inputs"][0]["name"]
        self.output_names = [o["name"] for o in entry["outputs"]]
        self.output_shapes = [o["shape"] for o in entry["outputs"]]
        with captured_native_stdout("MNN"):
            runtime = nn.create_runtime_manager(({"backend": "CPU", "precision": precision, "numThread": threads},))
            self.module = nn.load_module_from_file(str(path), [self.input_name], self.output_names, runtime_manager=runtime)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        import MNN.expr as F

        with captured_native_stdout("MNN"):
            outputs = self.module.forward([F.const(np.ascontiguousarray(x, np.float32), list(x.shape), F.NCHW)])
            results = []
            for var, shape in zip(outputs, self.output_shapes):
                if var.data_format == F.NC4HW4:
                    var = F.convert(var, F.NCHW)
                results.append(fit_shape(np.array(var.read(), dtype=np.float32), shape))
        return results


# The child side of MnnChildRunner: frames are a 4-byte little-endian length and an .npy/.npz
# payload; the protocol uses a private copy of fd 1 because MNN prints to fd 1 itself.
CHILD_SNIPPET = """
import io, json, os, struct, sys
from pathlib import Path
import numpy as np
protocol = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
source = os.fdopen(sys.stdin.fileno(), "rb", buffering=0)
def read_exact(n):
    data = bytearray()
    while len(data) < n:
        chunk = source.read(n - len(data))
        if not chunk:
            raise SystemExit(0)
        data += chunk
    return bytes(data)
def send(kind, payload):
    protocol.write(kind + struct.pack("<I", len(payload)) + payload)
    protocol.flush()
try:
    (size,) = struct.unpack("<I", read_exact(4))
    request = json.loads(read_exact(size))
    from edgepack.formats.mnn import MnnRunner
    runner = MnnRunner(Path(request["path"]), request["entry"], int(request["threads"]))
    send(b"R", b"")
except Exception as e:
    send(b"E", f"{type(e).__name__}: {e}".encode())
    raise SystemExit(1)
while True:
    (size,) = struct.unpack("<I", read_exact(4))
    x = np.load(io.BytesIO(read_exact(size)), allow_pickle=False)
    try:
        outputs = runner.run(x)
        buffer = io.BytesIO()
        np.savez(buffer, *outputs)
        send(b"O", buffer.getvalue())
    except Exception as e:
        send(b"E", f"{type(e).__name__}: {e}".encode())
"""


class MnnChildRunner:
    """An MNN runner in its own interpreter. MNN 3.6.1's int8 kernels read memory they never
    wrote: the same int8 model gives slightly different outputs depending on what the process
    did before (after another int8 model was loaded, up to ~1.5 px on box coordinates of the
    built-in detector). A fresh child process per artifact, started identically every time (the
    model path and record come over the pipe, not argv), makes the numbers reproducible;
    run() sends the input over the pipe, which adds well under a millisecond per call here
    (part of the measured latency)."""

    def __init__(self, path: Path, entry: dict[str, Any], threads: int) -> None:
        import json
        import os
        import subprocess
        import sys
        import tempfile

        import edgepack

        minimal = {k: entry[k] for k in ("precision", "inputs", "outputs")}
        package_root = str(Path(edgepack.__file__).resolve().parents[1])
        # a fixed, small environment: the int8 results depend on the child's memory contents,
        # which the size of its environment changes
        env = {"PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
               "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/"), "LC_ALL": "C.UTF-8"}
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [sys.executable, "-c", CHILD_SNIPPET], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
        )
        self._send(json.dumps({"path": str(Path(path).resolve()), "entry": minimal, "threads": threads}).encode())
        self._receive()  # "ready", or the load error

    def _send(self, payload: bytes) -> None:
        import struct

        try:
            self._process.stdin.write(struct.pack("<I", len(payload)) + payload)
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # the child is gone: _receive reports why

    def _receive(self) -> bytes:
        import struct

        head = self._read(5)
        kind, size = head[:1], struct.unpack("<I", head[1:])[0]
        payload = self._read(size)
        if kind == b"E":
            raise ConversionError(f"mnn: {payload.decode(errors='replace')}")
        return payload

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self._process.stdout.read(n - len(data))
            if not chunk:
                self._stderr.seek(0)
                tail = " | ".join(self._stderr.read().decode(errors="replace").strip().splitlines()[-2:])
                raise ConversionError(f"mnn: the runner process ended (exit {self._process.poll()}): {tail or 'no output'}")
            data += chunk
        return data

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        import io

        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(x, np.float32), allow_pickle=False)
        self._send(buffer.getvalue())
        with np.load(io.BytesIO(self._receive()), allow_pickle=False) as outputs:
            return [outputs[f"arr_{i}"] for i in range(len(outputs.files))]

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except Exception:
                self._process.kill()
                self._process.wait()
        self._stderr.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def open_mnn_runner(path: Path, entry: dict[str, Any], threads: int) -> HostRunner:
    """MNN runner for an artifact: full int8 models run in a fresh child process each."""
    if entry["precision"] == "int8":
        return MnnChildRunner(path, entry, threads)
    return MnnRunner(path, entry, threads)


@FORMATS.register("mnn")
class MnnFormat(TargetFormat):
    info = FormatInfo(
        name="mnn",
        title="MNN",
        precisions=("fp32", "fp16", "int8-weight", "int8"),
        default_precisions=("fp32", "fp16", "int8-weight"),
        calibrated=("int8",),
        runtime="MNN",
        platforms=("android",),
    )

    def check_environment(self) -> None:
        require_modules("mnn", {"MNN": "MNN"})

    def convert(self, job: ConversionJob) -> ConvertedModel:
        out = job.workdir / "model.mnn"
        convert_onnx(job.model.onnx_path, out, PRECISION_FLAGS[job.precision], job.workdir, "mnnconvert.log")
        details: dict[str, Any] = {}
        if job.precision == "int8":
            from edgepack.quantize import mnn_int8

            out, details = mnn_int8.quantize(job, out)
        return ConvertedModel(
            files={"model": out},
            input_name=job.model.input_name,
            output_names=list(job.model.output_names),
            details=details,
        )

    def open_runner(self, files: dict[str, Path], entry: dict[str, Any], threads: int) -> HostRunner:
        return open_mnn_runner(files["model"], entry, threads)

    def describe(self, files: dict[str, Path]) -> dict[str, Any]:
        import MNN

        with captured_native_stdout("MNN"):
            interpreter = MNN.Interpreter(str(files["model"]))
            session = interpreter.createSession({"backend": "CPU"})
            inputs = {k: v.getShape() for k, v in interpreter.getSessionInputAll(session).items()}
            outputs = {k: v.getShape() for k, v in interpreter.getSessionOutputAll(session).items()}
        return {"inputs": inputs, "outputs": outputs, "model_uuid": MNN.get_model_uuid(str(files["model"]))}
