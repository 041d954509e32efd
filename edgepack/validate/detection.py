"""The reference decoder for YOLO-style heads, NMS, and detection agreement.

The generated apps' C++, Kotlin and Swift decoders mirror this file and are tested against it.
Layouts (boxes are cx, cy, w, h in model-input pixels):
- yolov8: [1, 4 + C, N] (or [1, N, 4 + C]); class scores already activated.
- yolov5: [1, N, 5 + C]; objectness then class scores, already activated; score = obj * cls.
- yolox: a YOLOX export with decode_in_inference: the yolov5 layout (one row per grid cell).
Segment and pose heads (yolov8-seg, yolov8-pose) add mask coefficients / keypoints after the
class scores; `decode_rows` returns them for the kept rows.
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
    if head in ("yolov5", "yolox"):
        return output_shape[2] - 5
    raise ValueError(head)


def channels_first(shape: tuple[int, ...], channels: int | None = None) -> bool:
    """Whether a yolov8-style output [1, A, B] is [1, channels, anchors]: by the channel count
    when it is known, else the smaller axis is the channel axis (as Ultralytics exports it)."""
    a, b = shape[-2], shape[-1]
    if channels is not None and (a == channels) != (b == channels):
        return a == channels
    return a <= b


def split_rows(output: np.ndarray, head: str, num_classes: int | None = None, extra: int = 0,
               first: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's output as rows: (cx cy w h [N, 4], class scores [N, C] (objectness already
    multiplied in for yolov5/yolox), extra channels [N, E] (mask coefficients, keypoints))."""
    out = np.asarray(output, dtype=np.float32)
    out = out.reshape(out.shape[-2:]) if out.ndim >= 3 else out
    if head == "yolov8":
        channels = 4 + num_classes + extra if num_classes else None
        first = channels_first(out.shape, channels) if first is None else first
        rows = out.T if first else out  # N x (4 + C + E)
        end = rows.shape[1] - extra
        return rows[:, :4], rows[:, 4:end], rows[:, end:]
    if head in ("yolov5", "yolox"):
        end = out.shape[1] - extra
        return out[:, :4], out[:, 5:end] * out[:, 4:5], out[:, end:]
    raise ValueError(f"no decoder for head {head!r}")


def cxcywh_to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    return np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)


def decode_rows(
    output: np.ndarray,
    head: str,
    score_threshold: float,
    iou_threshold: float,
    max_det: int = 100,
    num_classes: int | None = None,
    extra: int = 0,
    first: bool | None = None,
) -> tuple[Detections, np.ndarray]:
    """`decode`, plus the extra channels of each kept detection ([K, E])."""
    cxcywh, class_scores, extras = split_rows(output, head, num_classes, extra, first)
    if class_scores.shape[1] == 0:
        raise ValueError(f"head {head!r}: the output has no class-score channels")
    classes = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(class_scores)), classes]
    keep = np.flatnonzero(scores > score_threshold)
    boxes = cxcywh_to_xyxy(cxcywh[keep])
    kept = keep[nms(boxes, scores[keep], classes[keep], iou_threshold)[:max_det]]
    dets = Detections(cxcywh_to_xyxy(cxcywh[kept]), scores[kept], classes[kept].astype(np.int64))
    return dets, extras[kept]


def decode(
    output: np.ndarray,
    head: str,
    score_threshold: float,
    iou_threshold: float,
    max_det: int = 100,
    num_classes: int | None = None,
) -> Detections:
    """Boxes above the score threshold after class-aware NMS. Without `num_classes`, the
    smaller axis of a yolov8 output is taken as the channel axis. A decoded YOLOX output has
    the yolov5 layout (objectness times class score)."""
    return decode_rows(output, head, score_threshold, iou_threshold, max_det, num_classes)[0]


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


def match_pairs(reference: Detections, candidate: Detections, iou_threshold: float = 0.5) -> list[tuple[int, int]]:
    """Greedy same-class matching by candidate score: (candidate index, reference index) pairs
    whose boxes overlap by at least `iou_threshold`."""
    if len(reference) == 0 or len(candidate) == 0:
        return []
    ious = iou_matrix(candidate.boxes, reference.boxes)
    used = np.zeros(len(reference), bool)
    pairs = []
    for i in np.argsort(-candidate.scores, kind="stable"):
        same = (reference.classes == candidate.classes[i]) & ~used
        if not same.any():
            continue
        j = int(np.argmax(np.where(same, ious[i], -1)))
        if ious[i, j] >= iou_threshold:
            used[j] = True
            pairs.append((int(i), j))
    return pairs


def match_counts(reference: Detections, candidate: Detections, iou_threshold: float = 0.5) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of `match_pairs`."""
    tp = len(match_pairs(reference, candidate, iou_threshold))
    return tp, len(candidate) - tp, len(reference) - tp


def f1_agreement(references: list[Detections], candidates: list[Detections], iou_threshold: float = 0.5) -> float:
    """F1 of candidate detections against reference detections, pooled over images (1.0 when both
    are empty: validation counts only images where the reference finds objects, see tasks/detect.py)."""
    tp = fp = fn = 0
    for ref, cand in zip(references, candidates):
        a, b, c = match_counts(ref, cand, iou_threshold)
        tp, fp, fn = tp + a, fp + b, fn + c
    if tp + fp + fn == 0:
        return 1.0
    return 2 * tp / (2 * tp + fp + fn)
