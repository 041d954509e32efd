"""Shared pieces of the validation tests: the built-in detector's real outputs, runners that
replay given outputs, and `compare` on them."""

from __future__ import annotations

import numpy as np

from edgepack.validate.tasks import TaskSpec, bind, check_reference, results
from edgepack.validate.validator import compare

INPUT = (1, 3, 320, 320)


def builtin_detector_outputs(count: int = 8, seed: int = 20261121, blank: bool = False) -> np.ndarray:
    """The shipped, trained shapes detector on generated scenes (or on plain grey images):
    images x 1 x 9 x 2100 (cx cy w h, 5 sigmoid class scores)."""
    import torch

    from edgepack.builtin import EXAMPLES
    from edgepack.preprocess import generated_images, preprocess
    from edgepack.spec import ModelSpec

    model = EXAMPLES["shapes-detector"].load()
    images = [np.full((320, 320, 3), 114, np.uint8)] * count if blank else generated_images(count, seed, (320, 320))
    x = np.stack([preprocess(image, ModelSpec(), INPUT)[0] for image in images])
    with torch.no_grad():
        return np.stack([model(torch.from_numpy(t)).numpy() for t in x])


class ReplayRunner:
    """A runner that answers each input with recorded outputs (input i carries i in its first value)."""

    def __init__(self, outputs: list[np.ndarray], as_dict: list[str] | None = None, names: list[str] | None = None) -> None:
        self.outputs = outputs
        self.as_dict = as_dict
        if names is not None:
            self.output_names = names

    def run(self, x: np.ndarray):
        i = int(x.flat[0])
        values = [o[i] for o in self.outputs]
        return dict(zip(self.as_dict, values)) if self.as_dict else values


def indexed_inputs(count: int) -> np.ndarray:
    inputs = np.zeros((count, 1, 3, 4, 4), np.float32)
    inputs[:, 0, 0, 0, 0] = np.arange(count)
    return inputs


def bound(task: str, head: str | None, reference: list[np.ndarray], names: list[str] | None = None,
          input_shape=INPUT, **kw) -> TaskSpec:
    names = names or [f"out{i}" for i in range(len(reference))]
    spec = bind(TaskSpec(task, head, input_shape=input_shape, **kw), names, [r.shape[1:] for r in reference])
    return check_reference(spec, reference)


def validate(task: TaskSpec, reference: list[np.ndarray], candidate: list[np.ndarray], precision: str = "fp32",
             runner=None) -> dict:
    """compare() of a runner replaying `candidate` against `reference` (names from the task)."""
    inputs = indexed_inputs(len(reference[0]))
    runner = runner or ReplayRunner(candidate)
    return compare(runner, inputs, reference, list(task.output_names), precision, task, results(task, reference), 2, 1)
