"""segment: instance masks (head yolov8: YOLOv8-seg) and dense maps (head map).

- yolov8: output [1, 4 + C + M, N] (boxes, class scores, M mask coefficients) and prototypes
  [1, M, H/4, W/4]; a detection's mask is sigmoid(coefficients @ prototypes) > 0.5 inside its
  box. Agreement: F1 of detections whose boxes match (same class, IoU >= 0.5) AND whose masks
  overlap by IoU >= 0.5; the mean mask IoU of box-matched pairs is recorded too.
- map: a per-pixel map [1, K, H, W] (K = 1: a probability map such as a text detector's,
  foreground where it exceeds `map_threshold`, 0.3 by default as DB-style detectors use it;
  logits are thresholded at the same probability; K > 1: per-pixel class scores, argmax).
  Agreement: IoU of the foreground (K = 1) or mean IoU over the classes present (K > 1), on
  the images where the reference has foreground; pixel agreement over all images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepack.validate import detection
from edgepack.validate.tasks.base import (
    MIN_IMAGES_WITH_OBJECTS,
    Agreement,
    HeadMismatch,
    Part,
    TaskHandler,
    TaskSpec,
    outputs_text,
    pick_output,
)
from edgepack.validate.tasks.detect import check_rows, detection_agreement, detection_parts

MASK_IOU = 0.5


@dataclass
class MaskedDetections(detection.Detections):
    masks: np.ndarray | None = None  # K x h x w bool, at the prototypes' resolution

    def to_list(self) -> list[dict]:
        rows = super().to_list()
        for row, mask in zip(rows, self.masks if self.masks is not None else []):
            row["mask_pixels"] = int(mask.sum())
        return rows


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def instance_masks(coefficients: np.ndarray, protos: np.ndarray, boxes: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """sigmoid(coefficients @ prototypes) > 0.5, cropped to each box (boxes in input pixels)."""
    m, h, w = protos.shape
    if not len(coefficients):
        return np.zeros((0, h, w), bool)
    logits = (coefficients.astype(np.float32) @ protos.reshape(m, -1)).reshape(-1, h, w)
    masks = logits > 0  # sigmoid(x) > 0.5
    sy, sx = h / input_hw[0], w / input_hw[1]
    ys, xs = np.arange(h)[:, None] + 0.5, np.arange(w)[None, :] + 0.5
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        inside = (xs >= x1 * sx) & (xs < x2 * sx) & (ys >= y1 * sy) & (ys < y2 * sy)
        masks[k] &= inside
    return masks


class SegmentTask(TaskHandler):
    name = "segment"

    # --- binding -----------------------------------------------------------------------------
    def bind(self, task: TaskSpec) -> TaskSpec:
        return self._bind_map(task) if task.head == "map" else self._bind_instances(task)

    def _bind_instances(self, task: TaskSpec) -> TaskSpec:
        protos = [i for i, s in enumerate(task.output_shapes) if len(s) == 4 and s[0] == 1 and min(s) > 0]
        if task.output is not None and task.output in task.output_names:
            protos = [i for i in protos if task.output_names[i] != task.output]
        if len(protos) != 1:
            found = "none" if not protos else ", ".join(task.output_names[i] for i in protos)
            raise HeadMismatch(f"head 'yolov8' (segment) needs one prototype output [1, M, H/4, W/4] besides [1, 4 + C + M, N]; "
                               f"4-D outputs: {found}; outputs: {outputs_text(task)}")
        m = task.output_shapes[protos[0]][1]
        fits = [i for i, s in enumerate(task.output_shapes)
                if len(s) == 3 and s[0] == 1 and min(s[1], s[2]) >= 4 + 1 + m]
        task = pick_output(task, fits, f"head 'yolov8' (segment, [1, 4 + C + {m}, N])")
        shape = task.output_shapes[task.main_index]
        first = shape[1] <= shape[2] if min(shape[1], shape[2]) >= 5 + m else shape[1] >= 5 + m
        return task.with_facts(protos_output=task.output_names[protos[0]], mask_coefficients=int(m), channels_first=bool(first))

    def _bind_map(self, task: TaskSpec) -> TaskSpec:
        fits = [i for i, s in enumerate(task.output_shapes) if len(s) == 4 and s[0] == 1 and s[2] > 1 and s[3] > 1]
        if task.output is not None and task.output in task.output_names:
            shape = task.output_shapes[task.output_index(task.output)]
            if len(shape) == 3 and shape[0] == 1 and min(shape[1:]) > 1:  # [1, H, W]
                fits.append(task.output_index(task.output))
        task = pick_output(task, fits, "head 'map' ([1, K, H, W] per-pixel map)")
        shape = task.output_shapes[task.main_index]
        return task.with_facts(map_channels=int(shape[1]) if len(shape) == 4 else 1)

    def expected_classes(self, task: TaskSpec) -> int | None:
        if task.head == "map":
            channels = task.fact("map_channels", 1)
            return channels if channels > 1 else None
        shape = task.output_shapes[task.main_index]
        channels = shape[1] if task.fact("channels_first", True) else shape[2]
        return channels - 4 - int(task.fact("mask_coefficients", 32))

    # --- reference checks --------------------------------------------------------------------
    def check_reference(self, task: TaskSpec, reference: list[np.ndarray]) -> TaskSpec:
        main = reference[task.main_index]
        if task.head == "map":
            if not np.isfinite(main).all():
                raise HeadMismatch(f"head 'map': output {task.output!r} contains NaN or inf on the reference images")
            if task.fact("map_channels", 1) == 1:
                inside = main.min() >= -1e-3 and main.max() <= 1 + 1e-3
                return task.with_facts(map_values="probabilities" if inside else "logits")
            return task
        check_rows(task, main, extra=int(task.fact("mask_coefficients")))
        return task

    # --- results and agreement ---------------------------------------------------------------
    def results(self, task: TaskSpec, outputs: list[np.ndarray]) -> list[Any]:
        main = outputs[task.main_index] if len(outputs) > task.main_index else outputs[0]
        if task.head == "map":
            return [self._map_result(task, image) for image in main]
        protos_name = task.fact("protos_output")
        protos = outputs[task.output_index(protos_name)] if protos_name in task.output_names and len(outputs) == len(task.output_names) else None
        m = int(task.fact("mask_coefficients"))
        hw = (task.input_shape[-2], task.input_shape[-1]) if len(task.input_shape) == 4 else None
        results = []
        for i, image in enumerate(main):
            dets, coefficients = detection.decode_rows(image, "yolov8", task.score_threshold, task.iou_threshold,
                                                       num_classes=task.num_classes, extra=m, first=task.fact("channels_first"))
            masks = None
            if protos is not None:
                p = protos[i].reshape(protos[i].shape[-3:])
                masks = instance_masks(coefficients, p, dets.boxes, hw or (p.shape[1] * 4, p.shape[2] * 4))
            results.append(MaskedDetections(dets.boxes, dets.scores, dets.classes, masks))
        return results

    def _map_result(self, task: TaskSpec, image: np.ndarray) -> np.ndarray:
        channels = int(task.fact("map_channels", 1))
        values = image.reshape(-1, *image.shape[-2:]) if channels > 1 else image.reshape(image.shape[-2:])
        if channels > 1:
            return values.argmax(axis=0).astype(np.int32)
        t = task.map_threshold
        threshold = t if task.fact("map_values", "probabilities") == "probabilities" else math.log(t / (1 - t))
        return values > threshold

    def agreement(self, task: TaskSpec, reference: list[Any], candidate: list[Any]) -> Agreement:
        if task.head == "map":
            return map_agreement(reference, candidate)
        ious: list[float] = []

        def accept(ref, cand, c, r) -> bool:
            if ref.masks is None or cand.masks is None:
                return True  # prototypes were not given: boxes only
            iou = mask_iou(cand.masks[c], ref.masks[r])
            ious.append(iou)
            return iou >= MASK_IOU

        result = detection_agreement(reference, candidate, "mask_f1_iou50", accept)
        if result.measurable and ious:
            result.details["mean_mask_iou"] = round(float(np.mean(ious)), 6)
        return result

    def to_json(self, results: list[Any]) -> list[Any]:
        out = []
        for r in results:
            if isinstance(r, np.ndarray) and r.dtype == bool:
                out.append({"foreground_fraction": round(float(r.mean()), 6)})
            elif isinstance(r, np.ndarray):
                classes, counts = np.unique(r, return_counts=True)
                out.append({"class_fractions": {int(c): round(float(n / r.size), 6) for c, n in zip(classes, counts)}})
            else:
                out.append(r.to_list())
        return out

    def parts(self, task: TaskSpec, index: int) -> list[Part]:
        if task.head == "map" or index != task.main_index:
            return []
        m = int(task.fact("mask_coefficients"))
        return detection_parts(task, [("mask_coefficients", 0, m, 1)])


def map_agreement(reference: list[np.ndarray], candidate: list[np.ndarray]) -> Agreement:
    """Foreground IoU (binary maps) or mean IoU over classes (label maps), pooled over the
    images where the reference has foreground (a class other than 0); pixel agreement over all."""
    if not reference:
        return Agreement("mask_iou", None, "not measurable: no images")
    binary = reference[0].dtype == bool
    metric = "mask_iou" if binary else "mean_iou"
    pixel = float(np.mean([np.mean(a == b) for a, b in zip(reference, candidate)]))
    with_foreground = [i for i, r in enumerate(reference) if np.any(r)]
    details = {"pixel_agreement": round(pixel, 6), "images_with_foreground": len(with_foreground)}
    if len(with_foreground) < MIN_IMAGES_WITH_OBJECTS:
        note = (f"not measurable: the reference map has foreground on {len(with_foreground)} of {len(reference)} images "
                f"(at least {MIN_IMAGES_WITH_OBJECTS} needed)")
        return Agreement(metric, None, note, details)
    ref = np.stack([reference[i] for i in with_foreground])
    cand = np.stack([candidate[i] for i in with_foreground])
    if binary:
        return Agreement(metric, mask_iou(ref, cand), None, details)
    classes = np.union1d(np.unique(ref), np.unique(cand))
    value = float(np.mean([mask_iou(ref == c, cand == c) for c in classes]))
    return Agreement(metric, value, None, {**details, "classes": len(classes)})

