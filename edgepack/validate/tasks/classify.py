"""classify: one row of class scores per image ([1, C], or [1, C, 1, 1]).

The reference tells whether the scores are probabilities (every value in [0, 1] and each row
summing to 1 within 1e-3) or logits; the manifest records it as `classifier_output` so an app
knows whether to apply softmax before showing a confidence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgepack.validate.tasks.base import Agreement, HeadMismatch, TaskHandler, TaskSpec, outputs_text, pick_output, shape_text

SUM_TOLERANCE = 1e-3


def class_rows(shape: tuple[int, ...]) -> int | None:
    """The class count of a classifier output shape, or None when it is not one row of scores."""
    if len(shape) < 2 or shape[0] != 1 or shape[1] < 2 or any(d != 1 for d in shape[2:]):
        return None
    return int(shape[1])


def classifier_output(scores: np.ndarray) -> str:
    """'probabilities' when every value is in [0, 1] and each row sums to 1 within 1e-3, else 'logits'."""
    rows = scores.reshape(scores.shape[0], -1).astype(np.float64)
    if rows.min() >= 0 and rows.max() <= 1 and np.all(np.abs(rows.sum(axis=1) - 1) <= SUM_TOLERANCE):
        return "probabilities"
    return "logits"


class ClassifyTask(TaskHandler):
    name = "classify"
    dataset_metric = True

    def bind(self, task: TaskSpec) -> TaskSpec:
        fits = [i for i, s in enumerate(task.output_shapes) if class_rows(s)]
        if task.output is None and len(fits) > 1:
            fits = fits[:1]  # the first [1, C] output: logits usually come before auxiliary outputs
        if task.output is None and not fits:
            raise HeadMismatch(f"task 'classify' needs an output [1, C] of class scores; outputs: {outputs_text(task)}")
        return pick_output(task, fits, "task 'classify' ([1, C] class scores)")

    def expected_classes(self, task: TaskSpec) -> int | None:
        return class_rows(task.output_shapes[task.main_index]) if task.output else None

    def check_reference(self, task: TaskSpec, reference: list[np.ndarray]) -> TaskSpec:
        main = reference[task.main_index]
        if main.size == 0 or not np.isfinite(main).all():
            raise HeadMismatch(f"task 'classify': output {task.output!r} {shape_text(task.output_shapes[task.main_index])} "
                               "gives no finite scores on the reference images")
        return task.with_facts(classifier_output=classifier_output(main))

    def results(self, task: TaskSpec, outputs: list[np.ndarray]) -> list[Any]:
        main = outputs[task.main_index] if len(outputs) > task.main_index else outputs[0]
        return [int(np.argmax(row)) for row in main.reshape(main.shape[0], -1)]

    def agreement(self, task: TaskSpec, reference: list[Any], candidate: list[Any]) -> Agreement:
        if not reference:
            return Agreement("top1_agreement", None, "not measurable: no images")
        return Agreement("top1_agreement", float(np.mean([a == b for a, b in zip(reference, candidate)])))
