"""Tasks and their output heads: which output a task decodes, whether the head guess fits the
reference outputs, per-image results, agreement with the reference, and per-part metrics.

One module per task: detect (yolov8, yolov5, yolox, raw), classify, segment (yolov8-seg, map),
pose (yolov8-pose), sequence (ctc), tensor (no decoder). The functions here dispatch to them:

    task = bind(TaskSpec(...), output_names, output_shapes)   # before running anything
    task = check_reference(task, reference_outputs)           # refuses impossible head guesses
    results(task, outputs) -> per-image results; agreement(task, ref, cand) -> Agreement
    parts(task, output_index) -> [Part]                       # box coordinates vs scores, ...
    app_support(task, head) -> (supported, reason)            # what the generated apps decode
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgepack.validate.tasks.base import Agreement, HeadMismatch, Part, TaskHandler, TaskSpec
from edgepack.validate.tasks.classify import ClassifyTask
from edgepack.validate.tasks.detect import DetectTask
from edgepack.validate.tasks.pose import PoseTask
from edgepack.validate.tasks.segment import SegmentTask
from edgepack.validate.tasks.sequence import SequenceTask
from edgepack.validate.tasks.tensor import TensorTask

HANDLERS: dict[str, TaskHandler] = {h.name: h for h in (DetectTask(), ClassifyTask(), SegmentTask(), PoseTask(), SequenceTask(), TensorTask())}

# what the generated Android/iOS apps decode today
APP_HEADS = {("detect", "yolov8"), ("detect", "yolov5"), ("classify", None)}

# tried, in this order, to suggest a better task/head when a guess does not fit
_CANDIDATES = (("detect", "yolov8"), ("detect", "yolov5"), ("detect", "yolox"), ("segment", "yolov8"), ("pose", "yolov8"),
               ("segment", "map"), ("classify", None), ("sequence", "ctc"))

__all__ = ["Agreement", "HeadMismatch", "Part", "TaskSpec", "agreement", "app_support", "bind", "check_reference",
           "dataset_support", "expected_classes", "handler", "parts", "results", "to_json"]


def handler(task: TaskSpec | str) -> TaskHandler:
    name = task if isinstance(task, str) else task.task
    if name not in HANDLERS:
        raise HeadMismatch(f"unknown task {name!r} (choose from: {', '.join(HANDLERS)})")
    return HANDLERS[name]


def _bind(task: TaskSpec, names: list[str], shapes: list[tuple[int, ...]]) -> TaskSpec:
    import dataclasses

    task = dataclasses.replace(task, output_names=tuple(names), output_shapes=tuple(tuple(int(d) for d in s) for s in shapes))
    return handler(task).bind(task)


def bind(task: TaskSpec, output_names: list[str], output_shapes: list[tuple[int, ...]]) -> TaskSpec:
    """The task bound to the model's outputs: its main output chosen by name (`task.output`)
    or by shape. Raises HeadMismatch (a SpecError, one line) when nothing or several fit."""
    try:
        return _bind(task, output_names, output_shapes)
    except HeadMismatch as e:
        raise HeadMismatch(_with_suggestion(e.message, task, output_names, output_shapes, None)) from None


def check_reference(task: TaskSpec, reference: list[np.ndarray]) -> TaskSpec:
    """Refuse a head whose decoded reference outputs are impossible (HeadMismatch, naming the
    tasks/heads that do fit); return the task with what the reference showed (`facts`)."""
    try:
        return handler(task).check_reference(task, reference)
    except HeadMismatch as e:
        raise HeadMismatch(_with_suggestion(e.message, task, list(task.output_names), list(task.output_shapes), reference)) from None


def _with_suggestion(message: str, task: TaskSpec, names: list[str], shapes: list[tuple[int, ...]], reference) -> str:
    picks = [_flag(task, t, h) for t, h in suggestions(task, names, shapes, reference)]
    picks.append("--task tensor")
    return f"{message} (pick {' / '.join(dict.fromkeys(picks))})"


def _flag(current: TaskSpec, task: str, head: str | None) -> str:
    if task == current.task:
        return f"--head {head}"
    return f"--task {task}" + (f" --head {head}" if head else "")


def suggestions(task: TaskSpec, names: list[str], shapes: list[tuple[int, ...]], reference: list[np.ndarray] | None) -> list[tuple[str, str | None]]:
    """Other (task, head) pairs whose layout fits the outputs (and, given reference outputs,
    whose decoded reference passes the plausibility checks)."""
    import dataclasses

    found = []
    for name, head in _CANDIDATES:
        if (name, head) == (task.task, task.head):
            continue
        candidate = dataclasses.replace(task, task=name, head=head, output=None, facts=())
        try:
            candidate = _bind(candidate, names, shapes)
            if reference is not None:
                candidate = handler(candidate).check_reference(candidate, reference)
            if not handler(candidate).looks_like(candidate, reference):
                continue
        except (HeadMismatch, ValueError, IndexError):
            continue
        found.append((name, head))
    found.sort(key=lambda pair: pair[0] != task.task)  # other heads of the same task first
    return found[:3]


def expected_classes(task: TaskSpec) -> int | None:
    """The class count the bound output implies (None when the layout does not say)."""
    return handler(task).expected_classes(task)


def results(task: TaskSpec, outputs: list[np.ndarray]) -> list[Any]:
    """Per-image task results of outputs stacked over images (one array per output, in the
    reference's order); [] for tasks without a decoder."""
    return handler(task).results(task, outputs)


def agreement(task: TaskSpec, reference: list[Any], candidate: list[Any]) -> Agreement:
    return handler(task).agreement(task, reference, candidate)


def parts(task: TaskSpec, index: int) -> list[Part]:
    """The parts of output `index` that get their own metrics ([] = the whole output only)."""
    return handler(task).parts(task, index) if task.output_names else []


def to_json(task: TaskSpec, per_image: list[Any]) -> list[Any]:
    """Per-image results as JSON-ready values (validation/reference_task.json)."""
    return handler(task).to_json(per_image)


def app_support(task: str, head: str | None) -> tuple[bool, str]:
    """Whether the generated Android/iOS apps decode this task/head, and a one-line reason."""
    from edgepack.spec import task_head

    try:
        head = task_head(task, head)
    except Exception as e:  # an unknown task/head: say so rather than guess
        return False, str(e)
    if (task, head) in APP_HEADS:
        what = "boxes with labels (class-aware NMS)" if task == "detect" else "the top class with its label"
        return True, f"the generated apps decode {task}" + (f" head {head!r}" if head else "") + f": {what}"
    if (task, head) == ("detect", "yolox"):
        return False, ("the generated apps decode yolov8 and yolov5 outputs; a decoded YOLOX output has the yolov5 layout, "
                       "so build the app with --head yolov5")
    if (task, head) == ("detect", "raw"):
        return False, "head 'raw' has no decoder: the apps cannot draw its boxes (the artifacts run; decode them in your own code)"
    label = f"task {task!r}" + (f" head {head!r}" if head else "")
    return False, f"the generated apps decode detect (yolov8, yolov5) and classify only; {label} runs in them but its outputs are not decoded"


def dataset_support(task: TaskSpec) -> str | None:
    """None when `validate --dataset` can measure the task, else why not (one line)."""
    if handler(task).dataset_metric and task.head != "raw":
        return None
    label = f"task {task.task!r}" + (f" head {task.head!r}" if task.head else "")
    return f"validate --dataset: not measurable for {label} (dataset metrics: mAP for detect yolov8/yolov5/yolox, top-1 for classify)"
