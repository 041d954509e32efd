"""The reference decoder for YOLO-style heads, NMS, and detection agreement.

The generated apps' C++, Kotlin and Swift decoders mirror this file and are tested against it.
Layouts (boxes are cx, cy, w, h in model-input pixels):
- yolov8: [1, 4 + C, N] (or [1, N, 4 + C]); class scores already activated.
- yolov5: [1, N, 5 + C]; objectness then class scores, already activated; score = obj * cls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    boxes: np.ndarray  # K x 4, x1 y1 x2 y2
    scores: np.ndarray  # K
    classes: np.ndarray  # K, int

    def __len__(self) -> int:
        return len(self.scores)

    def to_list(self) -> list[dict]:
        return [
            {"box": [round(float(v), 3) for v in b], "score": round(float(s), 5), "class": int(c)}
            for b, s, c in zip(self.boxes, self.scores, self.classes)
        ]


def num_classes(head: str, output_shape: tuple[int, ...]) -> int:
    """The class count a head layout implies for an output shape."""
    if head == "yolov8":
        channels = output_shape[1] if output_shape[1] < output_shape[2] else output_shape[2]
        return channels - 4
    if head == "yolov5":
        return output_shape[2] - 5
    raise ValueError(head)


def decode(
    output: np.ndarray,
    head: str,
    score_threshold: float,
    iou_threshold: float,
    max_det: int = 100,
    num_classes: int | None = None,
) -> Detections:
    """Boxes above the score threshold after class-aware NMS. Without `num_classes`, the
    smaller axis of a yolov8 output is taken as the channel axis."""
    out = np.asarray(output, dtype=np.float32)
    out = out.reshape(out.shape[-2:]) if out.ndim == 3 else out
    if head == "yolov8":
        channels_first = out.shape[0] == 4 + num_classes if num_classes else out.shape[0] < out.shape[1]
        rows = out.T if channels_first else out  # N x (4 + C)
        class_scores = rows[:, 4:]
    elif head == "yolov5":
        rows = out
        class_scores = rows[:, 5:] * rows[:, 4:5]
    else:
        raise ValueError(f"no decoder for head {head!r}")
    classes = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(rows)), classes]
    keep = scores > score_threshold
    cxcywh, scores, classes = rows[keep, :4], scores[keep], classes[keep]
    boxes = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
    kept = nms(boxes, scores, classes, iou_threshold)[:max_det]
    return Detections(boxes[kept], scores[kept], classes[kept].astype(np.int64))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware greedy NMS; returns kept indices by descending score (stable for ties)."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    suppressed = np.zeros(len(scores), bool)
    ious = iou_matrix(boxes, boxes)
    for i in order:
        if suppressed[i]:
            continue
        kept.append(int(i))
        suppressed |= (ious[i] > iou_threshold) & (classes == classes[i])
    return np.array(kept, dtype=np.int64)


def match_counts(reference: Detections, candidate: Detections, iou_threshold: float = 0.5) -> tuple[int, int, int]:
    """Greedy same-class matching by candidate score: (true positives, false positives, false negatives)."""
    if len(reference) == 0 or len(candidate) == 0:
        return 0, len(candidate), len(reference)
    ious = iou_matrix(candidate.boxes, reference.boxes)
    used = np.zeros(len(reference), bool)
    tp = 0
    for i in np.argsort(-candidate.scores, kind="stable"):
        same = (reference.classes == candidate.classes[i]) & ~used
        if not same.any():
            continue
        j = int(np.argmax(np.where(same, ious[i], -1)))
        if ious[i, j] >= iou_threshold:
            used[j] = True
            tp += 1
    return tp, len(candidate) - tp, len(reference) - tp


def f1_agreement(references: list[Detections], candidates: list[Detections], iou_threshold: float = 0.5) -> float:
    """F1 of candidate detections against reference detections, pooled over images (1.0 when both are empty)."""
    tp = fp = fn = 0
    for ref, cand in zip(references, candidates):
        a, b, c = match_counts(ref, cand, iou_threshold)
        tp, fp, fn = tp + a, fp + b, fn + c
    if tp + fp + fn == 0:
        return 1.0
    return 2 * tp / (2 * tp + fp + fn)
