"""The reference: ONNX Runtime on the canonical ONNX graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float32) for o in self.session.run(None, {self.input_name: x.astype(np.float32)})]


def ordered_outputs(result: Any, names: list[str] | None, runner_names: list[str] | None = None) -> list[np.ndarray]:
    """A runner's outputs in the order of `names`: a dict name -> array is matched by name, and
    so is a list when the runner says which name each entry has (`runner.output_names`)."""
    if isinstance(result, dict):
        if names is None:
            return [np.asarray(v) for v in result.values()]
        missing = [n for n in names if n not in result]
        if missing:
            raise ValueError(f"the runner gave outputs {', '.join(map(str, result))}, not {', '.join(missing)}")
        return [np.asarray(result[n]) for n in names]
    result = [np.asarray(v) for v in result]
    if names is not None and runner_names is not None and list(runner_names) != list(names):
        if len(runner_names) == len(result) and set(names) <= set(runner_names):
            position = {n: i for i, n in enumerate(runner_names)}
            return [result[position[n]] for n in names]
    return result


def run_all(runner, inputs: np.ndarray, names: list[str] | None = None) -> list[np.ndarray]:
    """Run every input (N x 1 x C x H x W) and stack each output: one N x ... array per output,
    in the order of `names` when the runner names its outputs (dict results, `output_names`)."""
    runner_names = getattr(runner, "output_names", None)
    runner_names = list(runner_names) if isinstance(runner_names, (list, tuple)) else None
    per_input = [ordered_outputs(runner.run(x), names, runner_names) for x in inputs]
    return [np.stack([outs[i] for outs in per_input]) for i in range(len(per_input[0]))]
