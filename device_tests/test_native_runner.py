"""The native runner's C++ (generated into the Android project) compiled with the host g++
against a stub engine, then held to the runner contract by the same code that reads device
results."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
CPP = ROOT / "templates" / "android" / "app" / "src" / "main" / "cpp"

STUB_ENGINE = r"""
#include "engine.h"
namespace edgepack {
class Doubler : public Engine {
public:
    explicit Doubler(const EngineConfig& c) : config(c) {}
    std::vector<float> run(const std::vector<float>& chw) override {
        std::vector<float> out(config.output_size);
        for (size_t i = 0; i < out.size(); ++i) out[i] = 2.0f * chw[i % chw.size()];
        return out;
    }
    int accelerator() const override { return 0; }  // only the CPU exists here
    EngineConfig config;
};
std::unique_ptr<Engine> create_ncnn_engine(const EngineConfig& c) { return std::make_unique<Doubler>(c); }
}
"""


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Path:
    gxx = shutil.which("g++")
    assert gxx is not None, "no host C++ compiler: apt-get install g++"
    folder = tmp_path_factory.mktemp("native-runner")
    (folder / "stub_engine.cpp").write_text(STUB_ENGINE)
    binary = folder / "edgepack-runner"
    subprocess.run([gxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-DEDGEPACK_WITH_NCNN=1", f"-I{CPP}",
                    str(CPP / "runner" / "edgepack_runner.cpp"), str(folder / "stub_engine.cpp"), "-o", str(binary)],
                   check=True, capture_output=True, text=True)
    return binary


def _args(tmp_path: Path, accelerator: str = "cpu", backend: str = "ncnn") -> list[str]:
    x = np.arange(2 * 3 * 4, dtype="<f4").reshape(1, 2, 3, 4)
    x.tofile(tmp_path / "in0.f32")
    (x + 1).tofile(tmp_path / "in1.f32")
    return ["--backend", backend, "--accelerator", accelerator, "--model", "m.param", "--weights", "m.bin",
            "--input-name", "in0", "--output-names", "out0", "--output-shapes", "1x6x2", "--input-shape", "1,2,3,4",
            "--inputs", f"{tmp_path}/in0.f32,{tmp_path}/in1.f32", "--threads", "1", "--iterations", "5",
            "--warmup", "1", "--out", str(tmp_path / "out")]


def test_contract_result_and_outputs(runner, tmp_path):
    proc = subprocess.run([str(runner), *_args(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["contract"] == 1 and result["backend"] == "ncnn" and len(result["latencies_ms"]) == 5
    assert [o["file"] for o in result["outputs"]] == ["out_0_0.f32", "out_1_0.f32"]
    assert result["outputs"][1]["shape"] == [1, 6, 2] and result["outputs"][0]["name"] == "out0"
    got = np.fromfile(tmp_path / "out" / "out_1_0.f32", dtype="<f4")
    assert np.array_equal(got, 2 * (np.arange(12, dtype="<f4") + 1))


@pytest.mark.parametrize("accelerator,backend", [("vulkan", "ncnn"), ("cpu", "mnn"), ("gpu", "tflite")])
def test_unavailable_backends_exit_2(runner, tmp_path, accelerator, backend):
    proc = subprocess.run([str(runner), *_args(tmp_path, accelerator, backend)], capture_output=True, text=True)
    assert proc.returncode == 2 and "not" in proc.stderr


def test_bad_input_file_is_an_error(runner, tmp_path):
    args = _args(tmp_path)
    (tmp_path / "in1.f32").write_bytes(b"\0" * 8)  # too short
    proc = subprocess.run([str(runner), *args], capture_output=True, text=True)
    assert proc.returncode == 1 and "cannot read 24 floats" in proc.stderr
