"""detect: YOLO-style box outputs (heads yolov8, yolov5, yolox; `raw` = no decoder).

A head guess is checked on the reference outputs before any artifact is trusted: decoded boxes
must be possible boxes (positive size, inside or near the input, not all the same), scores must
be probabilities, and the output must be decoded at all (a raw YOLOX head gives grid offsets and
logits). The agreement counts only images where the reference finds objects; with too few of
them it is "not measurable" instead of a vacuous F1 of 1.0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgepack.validate import detection
from edgepack.validate.tasks.base import (
    MIN_IMAGES_WITH_OBJECTS,
    MIN_OBJECTS,
    Agreement,
    HeadMismatch,
    Part,
    TaskHandler,
    TaskSpec,
    part,
    pick_output,
    shape_text,
    stack_rows,
)

STRIDES = (8, 16, 32)
SCORE_TOLERANCE = 1e-3


def grid_cells(input_shape: tuple[int, ...], strides: tuple[int, ...] = STRIDES) -> int:
    """Anchor points of a YOLO head over strides 8/16/32 (8400 at 640x640)."""
    h, w = input_shape[-2], input_shape[-1]
    return sum(-(-h // s) * -(-w // s) for s in strides)


def yolo_layout_fits(head: str, shape: tuple[int, ...], min_channels: int = 5) -> bool:
    """Whether an output shape can be the head's layout at all (one 3-D batch-1 output)."""
    if len(shape) != 3 or shape[0] != 1 or min(shape) <= 0:
        return False
    if head == "yolov8":
        return min(shape[1], shape[2]) >= min_channels
    return shape[2] >= 6  # yolov5 / yolox: [1, N, 5 + C]


def describe_head(task: TaskSpec) -> str:
    i = task.main_index
    return f"head {task.head!r} does not fit output {task.output!r} {shape_text(task.output_shapes[i])}"


def box_problem(task: TaskSpec, cxcywh: np.ndarray, score_channels: np.ndarray, scores: np.ndarray) -> str | None:
    """Why decoded reference rows cannot be boxes of this head, or None. `cxcywh` [M, 4] and
    `score_channels` [M, S] (channels that must be probabilities) over every row of every image,
    `scores` [M] the final detection score of each row."""
    h, w = (task.input_shape[-2], task.input_shape[-1]) if len(task.input_shape) == 4 else (None, None)
    finite = np.isfinite(cxcywh).all() and np.isfinite(score_channels).all()
    if not finite:
        return "the reference output contains NaN or inf"
    if h and len(cxcywh) >= 10:
        span_x, span_y = np.ptp(cxcywh[:, 0]), np.ptp(cxcywh[:, 1])
        if span_x < 0.05 * w and span_y < 0.05 * h:
            lo, hi = float(cxcywh[:, :2].min()), float(cxcywh[:, :2].max())
            return (f"box centres span only {lo:.2f}..{hi:.2f} on a {w}x{h} input: the output is not decoded "
                    "(raw grid offsets, e.g. a YOLOX export without decode_in_inference, or normalized coordinates)")
    if score_channels.size:
        lo, hi = float(score_channels.min()), float(score_channels.max())
        if lo < -SCORE_TOLERANCE or hi > 1 + SCORE_TOLERANCE:
            return f"score channels span {lo:.3g}..{hi:.3g}, not 0..1 (logits: the head is not decoded/activated)"
    if not len(scores):
        return None
    chosen = np.flatnonzero(scores > task.score_threshold)
    if len(chosen) < 20:  # judge the rows the decoder would look at first
        chosen = np.argsort(-scores, kind="stable")[:100]
    boxes = cxcywh[chosen]
    nonpositive = (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
    if nonpositive.mean() > 0.5:
        return f"{nonpositive.mean():.0%} of the decoded boxes have width or height <= 0"
    if h:
        outside = ((boxes[:, 0] < -0.5 * w) | (boxes[:, 0] > 1.5 * w) | (boxes[:, 1] < -0.5 * h) | (boxes[:, 1] > 1.5 * h)
                   | (boxes[:, 2] > 2 * w) | (boxes[:, 3] > 2 * h))
        if outside.mean() > 0.5:
            return f"{outside.mean():.0%} of the decoded boxes lie outside the {w}x{h} input"
    if len(boxes) >= 10:
        distinct = len(np.unique(np.round(boxes, 1), axis=0))
        if distinct < 0.1 * len(boxes):
            return f"most decoded boxes are identical ({distinct} distinct among the {len(boxes)} best)"
    return None


def check_rows(task: TaskSpec, main: np.ndarray, extra: int = 0) -> None:
    """Refuse the head when the decoded reference rows are not boxes (HeadMismatch)."""
    shape = task.output_shapes[task.main_index]
    if task.head == "yolov8" and len(task.input_shape) == 4:
        anchors = max(shape[1], shape[2])
        if anchors == 3 * grid_cells(task.input_shape) and anchors != grid_cells(task.input_shape):
            raise HeadMismatch(f"{describe_head(task)}: {anchors} rows are 3 anchors per grid cell, the YOLOv5 layout")
    if task.head in ("yolov5", "yolox") and shape[1] < shape[2]:
        raise HeadMismatch(f"{describe_head(task)}: {shape[1]} rows of {shape[2]} channels look channels-first (the yolov8 layout)")
    rows, channels, scores = [], [], []
    known = task.fact("channels_first")
    for image in stack_rows(main):
        cxcywh, class_scores, _ = detection.split_rows(image, task.head, task.num_classes, extra, known)
        out = image.reshape(image.shape[-2:])
        if task.head == "yolov8":
            first = detection.channels_first(out.shape, 4 + task.num_classes + extra if task.num_classes else None) if known is None else known
            table = out.T if first else out
            probabilities = table[:, 4 : table.shape[1] - extra]
        else:
            probabilities = out[:, 4 : out.shape[1] - extra]  # objectness and class scores
        rows.append(cxcywh)
        channels.append(probabilities)
        scores.append(class_scores.max(axis=1) if class_scores.shape[1] else np.zeros(len(class_scores)))
    problem = box_problem(task, np.concatenate(rows), np.concatenate(channels), np.concatenate(scores))
    if problem:
        raise HeadMismatch(f"{describe_head(task)}: {problem}")


def detection_agreement(reference: list[Any], candidate: list[Any], metric: str = "box_f1_iou50", accept=None) -> Agreement:
    """F1 of the candidate's detections against the reference's, on the images where the
    reference finds objects; `accept(ref, cand, i_cand, j_ref)` can demand more of a box match
    (mask IoU, keypoints). Not measurable with fewer than MIN_OBJECTS objects on
    MIN_IMAGES_WITH_OBJECTS images."""
    with_objects = [i for i, r in enumerate(reference) if len(r)]
    objects = sum(len(reference[i]) for i in with_objects)
    empty_extras = sum(len(candidate[i]) for i in range(len(reference)) if not len(reference[i]))
    details = {"images_with_objects": len(with_objects), "reference_objects": objects,
               "candidate_objects_on_empty_images": empty_extras}
    if len(with_objects) < MIN_IMAGES_WITH_OBJECTS or objects < MIN_OBJECTS:
        note = (f"not measurable: the reference found {objects} objects on {len(with_objects)} of {len(reference)} images "
                f"(at least {MIN_OBJECTS} objects on {MIN_IMAGES_WITH_OBJECTS} images needed)")
        return Agreement(metric, None, note, details)
    tp = fp = fn = 0
    for i in with_objects:
        pairs = detection.match_pairs(reference[i], candidate[i])
        good = sum(1 for c, r in pairs if accept is None or accept(reference[i], candidate[i], c, r))
        tp, fp, fn = tp + good, fp + len(candidate[i]) - good, fn + len(reference[i]) - good
    return Agreement(metric, 2 * tp / max(2 * tp + fp + fn, 1), None, details)


def detection_parts(task: TaskSpec, extra_parts: list[tuple[str, int, int, int]] = ()) -> list[Part]:
    """Box coordinates, objectness, class scores (and the extra channels named in `extra_parts`
    as (name, start, stop, step) after the class scores) of the main output."""
    shape = task.output_shapes[task.main_index]
    extra = sum(len(range(a, b, s)) for _, a, b, s in extra_parts) if extra_parts else 0
    if task.head == "yolov8":
        channels = 4 + task.num_classes + extra if task.num_classes else None
        first = task.fact("channels_first")
        axis = 0 if (detection.channels_first(shape[1:], channels) if first is None else first) else 1
        total = shape[1 + axis]
        parts = [part("boxes", axis, 0, 4), part("scores", axis, 4, total - extra)]
    else:
        axis, total = 1, shape[2]
        parts = [part("boxes", axis, 0, 4), part("objectness", axis, 4, 5), part("scores", axis, 5, total - extra)]
    start = total - extra
    for name, a, b, step in extra_parts:
        parts.append(part(name, axis, start + a, start + b, step))
    return parts


class DetectTask(TaskHandler):
    name = "detect"
    dataset_metric = True

    def bind(self, task: TaskSpec) -> TaskSpec:
        if task.head == "raw":  # no decoder: any output, or the named one
            return pick_output(task, list(range(len(task.output_names))), "head 'raw'") if task.output else task
        fits = [i for i, s in enumerate(task.output_shapes) if yolo_layout_fits(task.head, s)]
        layout = "[1, 4 + C, N]" if task.head == "yolov8" else "[1, N, 5 + C]"
        return pick_output(task, fits, f"head {task.head!r} ({layout})")

    def looks_like(self, task: TaskSpec, reference: list[np.ndarray] | None) -> bool:
        return reference is not None and task.head != "raw"  # any [1, A, B] output fits until values are seen

    def expected_classes(self, task: TaskSpec) -> int | None:
        if task.head == "raw" or task.output is None:
            return None
        return detection.num_classes(task.head, task.output_shapes[task.main_index])

    def check_reference(self, task: TaskSpec, reference: list[np.ndarray]) -> TaskSpec:
        if task.head == "raw":
            return task
        check_rows(task, reference[task.main_index])
        return task

    def results(self, task: TaskSpec, outputs: list[np.ndarray]) -> list[Any]:
        if task.head == "raw":
            return []
        main = outputs[task.main_index] if len(outputs) > task.main_index else outputs[0]
        return [detection.decode(o, task.head, task.score_threshold, task.iou_threshold, num_classes=task.num_classes) for o in main]

    def agreement(self, task: TaskSpec, reference: list[Any], candidate: list[Any]) -> Agreement:
        if task.head == "raw":
            return super().agreement(task, reference, candidate)
        return detection_agreement(reference, candidate)

    def parts(self, task: TaskSpec, index: int) -> list[Part]:
        if task.head == "raw" or index != task.main_index or task.output is None:
            return []
        return detection_parts(task)
