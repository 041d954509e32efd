"""The device runner's contract, shared by the native runner (C++, generated next to the Android
app's JNI code, built by the user's NDK) and the host runner (`edgepack.devices.host_runner`,
the host runtimes behind the same command line).

    edgepack-runner --backend ncnn|mnn|tflite --accelerator cpu|vulkan|opencl|gpu|nnapi
                    --model FILE [--weights FILE] --precision P
                    --input-name NAME --output-names A,B --output-shapes 1x9x2100;...
                    --input-shape 1,3,H,W --inputs in0.f32,in1.f32
                    --threads N --iterations N --warmup N --out DIR

Inputs and outputs are raw little-endian float32 files in the canonical layout (NCHW inputs;
the runner transposes for NHWC engines). The runner writes DIR/result.json:

    {"contract": 1, "backend": ..., "accelerator": ..., "threads": N,
     "latencies_ms": [per timed iteration], "outputs": [{"input": i, "name": ..., "file": ..., "shape": [...]}]}

Exit codes: 0 ran; 2 the backend or accelerator is unavailable on this device (reported as
skipped); anything else is a failure (message on stderr).
"""

from __future__ import annotations

from pathlib import Path

CONTRACT_VERSION = 1
EXIT_UNAVAILABLE = 2
RESULT_FILE = "result.json"

ELF_MACHINES = {0xB7: "arm64-v8a", 0x28: "armeabi-v7a", 0x3E: "x86_64", 0x03: "x86"}


def runner_abi(path: Path) -> str | None:
    """The Android ABI of an ELF runner (from its header), or None for a script (any ABI)."""
    head = path.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        return None
    return ELF_MACHINES.get(int.from_bytes(head[18:20], "little"), f"unknown machine {int.from_bytes(head[18:20], 'little'):#x}")


def shape_text(shapes: list[list[int]]) -> str:
    return ";".join("x".join(str(d) for d in shape) for shape in shapes)


def parse_shapes(text: str) -> list[list[int]]:
    return [[int(d) for d in part.split("x")] for part in text.split(";") if part]
