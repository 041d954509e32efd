"""pose: YOLOv8-pose, output [1, 4 + C + K * D, N] (boxes, class scores, then K keypoints of
D = 3 values x, y, visibility (or D = 2: x, y) in input pixels).

Agreement: F1 of detections whose boxes match (same class, IoU >= 0.5) AND whose keypoints
agree: an OKS-like similarity >= 0.75, exp(-d^2 / (2 s^2 k^2)) averaged over the keypoints the
reference sees (visibility > 0.5), s^2 = the reference box area, k = 2 sigma with COCO's
per-keypoint sigmas for 17 keypoints, else 0.05 for every keypoint. The mean of that
similarity over box-matched pairs is recorded as `mean_oks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepack.validate import detection
from edgepack.validate.tasks.base import Agreement, HeadMismatch, Part, TaskHandler, TaskSpec, pick_output
from edgepack.validate.tasks.detect import check_rows, detection_agreement, detection_parts

OKS_AGREE = 0.75
VISIBLE = 0.5
COCO_SIGMAS = np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]) / 10


@dataclass
class PoseDetections(detection.Detections):
    keypoints: np.ndarray | None = None  # K_det x K x D

    def to_list(self) -> list[dict]:
        rows = super().to_list()
        for row, kpts in zip(rows, self.keypoints if self.keypoints is not None else []):
            row["keypoints"] = [[round(float(v), 3) for v in k] for k in kpts]
        return rows


def keypoint_layout(channels: int, num_classes: int | None) -> tuple[int, int, int] | None:
    """(classes, keypoints, values per keypoint) of a pose output with `channels` channels."""
    classes = num_classes or 1
    rest = channels - 4 - classes
    for dims in (3, 2):
        if rest >= dims and rest % dims == 0:
            return classes, rest // dims, dims
    return None


def oks(reference: np.ndarray, candidate: np.ndarray, area: float) -> float | None:
    """OKS-like similarity of two K x D keypoint sets; None when the reference sees none."""
    k = len(reference)
    visible = reference[:, 2] > VISIBLE if reference.shape[1] > 2 else np.ones(k, bool)
    if not visible.any():
        return None
    sigmas = COCO_SIGMAS if k == len(COCO_SIGMAS) else np.full(k, 0.05)
    d2 = ((reference[:, :2] - candidate[:, :2]) ** 2).sum(axis=1)
    e = d2 / (2 * max(area, 1.0) * (2 * sigmas) ** 2)
    return float(np.mean(np.exp(-e[visible])))


class PoseTask(TaskHandler):
    name = "pose"

    def bind(self, task: TaskSpec) -> TaskSpec:
        fits = [i for i, s in enumerate(task.output_shapes)
                if len(s) == 3 and s[0] == 1 and min(s) > 0 and (keypoint_layout(s[1], None) or keypoint_layout(s[2], None))]
        task = pick_output(task, fits, "head 'yolov8' (pose, [1, 4 + C + K * 3, N])")
        shape = task.output_shapes[task.main_index]
        return task.with_facts(channels_first=keypoint_layout(shape[1], None) is not None)  # Ultralytics: channels first

    def _channels(self, task: TaskSpec) -> int:
        shape = task.output_shapes[task.main_index]
        return shape[1] if task.fact("channels_first", True) else shape[2]

    def _layout(self, task: TaskSpec) -> tuple[int, int, int]:
        channels = self._channels(task)
        layout = keypoint_layout(channels, task.num_classes)
        if layout is None:
            raise HeadMismatch(f"head 'yolov8' (pose): {channels} channels minus 4 box channels and "
                               f"{task.num_classes} classes is not a whole number of keypoints (check the labels file)")
        return layout

    def looks_like(self, task: TaskSpec, reference: list[np.ndarray] | None) -> bool:
        _, k, dims = self._layout(task)
        return reference is not None and dims == 3 and k >= 5  # a detector with a few more classes fits [1, 4 + C + K * D, N] too

    def expected_classes(self, task: TaskSpec) -> int | None:
        return 1 if keypoint_layout(self._channels(task), None) else None

    def check_reference(self, task: TaskSpec, reference: list[np.ndarray]) -> TaskSpec:
        _, k, dims = self._layout(task)
        check_rows(task, reference[task.main_index], extra=k * dims)
        return task.with_facts(num_keypoints=k, keypoint_dims=dims)

    def results(self, task: TaskSpec, outputs: list[np.ndarray]) -> list[Any]:
        main = outputs[task.main_index] if len(outputs) > task.main_index else outputs[0]
        _, k, dims = self._layout(task)
        results = []
        for image in main:
            dets, extra = detection.decode_rows(image, "yolov8", task.score_threshold, task.iou_threshold,
                                                num_classes=task.num_classes, extra=k * dims, first=task.fact("channels_first"))
            results.append(PoseDetections(dets.boxes, dets.scores, dets.classes, extra.reshape(-1, k, dims)))
        return results

    def agreement(self, task: TaskSpec, reference: list[Any], candidate: list[Any]) -> Agreement:
        similarities: list[float] = []

        def accept(ref, cand, c, r) -> bool:
            x1, y1, x2, y2 = ref.boxes[r]
            value = oks(ref.keypoints[r], cand.keypoints[c], float((x2 - x1) * (y2 - y1)))
            if value is None:
                return True  # nothing visible to compare: the box match decides
            similarities.append(value)
            return value >= OKS_AGREE

        result = detection_agreement(reference, candidate, "pose_f1_iou50_oks75", accept)
        if result.measurable and similarities:
            result.details["mean_oks"] = round(float(np.mean(similarities)), 6)
        return result

    def parts(self, task: TaskSpec, index: int) -> list[Part]:
        if index != task.main_index:
            return []
        _, k, dims = self._layout(task)
        extra = [("keypoints_xy", 0, k * dims, 1)] if dims == 2 else []
        if dims == 3:
            xy = [("keypoints_x", 0, k * 3, 3), ("keypoints_y", 1, k * 3, 3), ("keypoints_visibility", 2, k * 3, 3)]
            extra = xy
        return detection_parts(task, extra)
