"""The runner cross-compiled for arm64 (static, aarch64-linux-gnu-g++, ncnn built for ARMv8.2 with
fp16 arithmetic) and run under qemu-aarch64: the same numbers as the host reference, and the fp32
artifact stays fp32 although ncnn's ARM defaults would compute it in fp16."""

from __future__ import annotations

from edgepack.devices.runner import runner_abi
from edgepack.validate import metrics
from native.conftest import artifact, reference, run_runner


def test_runner_is_a_static_arm64_binary(arm64_runner):
    assert runner_abi(arm64_runner) == "arm64-v8a"
    # no program interpreter (PT_INTERP): runs under qemu (or on any arm64 Linux kernel) without a sysroot
    assert not _program_headers(arm64_runner.read_bytes()) & {PT_INTERP, PT_DYNAMIC}


PT_DYNAMIC, PT_INTERP = 2, 3


def _program_headers(data: bytes) -> set[int]:
    """The p_type of every program header of a little-endian ELF64 file."""
    import struct

    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return {struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)}


def test_arm64_runner_matches_the_reference(example_out, arm64_runner, qemu, tmp_path):
    for precision, floor in (("fp32", 0.999999), ("fp16", 0.9999)):
        entry = artifact(example_out, "ncnn", precision)
        got = run_runner([qemu, str(arm64_runner)], example_out, entry, tmp_path / precision, inputs=2)
        want = reference(example_out, entry, 2)
        assert metrics.cosine(got, want) >= floor, (precision, metrics.cosine(got, want))


def test_fp32_artifact_is_not_computed_in_fp16_on_arm(example_out, arm64_runner, qemu, tmp_path):
    """ncnn's defaults on an ARMv8.2 CPU (use_fp16_packed/storage/arithmetic) would run the fp32
    artifact in fp16: with the artifact's own precision the engine keeps fp32, and the error is
    orders of magnitude smaller than with fp16 allowed."""
    entry = artifact(example_out, "ncnn", "fp32")
    want = reference(example_out, entry, 2)
    strict = run_runner([qemu, str(arm64_runner)], example_out, entry, tmp_path / "strict", inputs=2)
    relaxed = run_runner([qemu, str(arm64_runner)], example_out, entry, tmp_path / "relaxed", precision="fp16", inputs=2)
    strict_err, relaxed_err = metrics.max_abs(strict, want), metrics.max_abs(relaxed, want)
    assert strict_err < 2e-3 and relaxed_err > 10 * strict_err, (strict_err, relaxed_err)
