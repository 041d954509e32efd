"""The reference: ONNX Runtime on the canonical ONNX graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class OnnxRuntimeRunner:
    def __init__(self, onnx_path: Path, threads: int = 2) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float32) for o in self.session.run(None, {self.input_name: x.astype(np.float32)})]


def run_all(runner, inputs: np.ndarray) -> list[np.ndarray]:
    """Run every input (N x 1 x C x H x W) and stack each output: one N x ... array per output."""
    per_input = [runner.run(x) for x in inputs]
    return [np.stack([outs[i] for outs in per_input]) for i in range(len(per_input[0]))]
