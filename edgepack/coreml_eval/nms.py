"""Core ML's NonMaximumSuppression model (NonMaximumSuppression.proto), in numpy.

The spec's PickTop algorithm: boxes whose confidence is below the confidence threshold are
dropped first; the rest are visited in descending confidence, each kept box suppresses the
remaining boxes that overlap it by more than the IoU threshold (only boxes with the same label,
the argmax of the confidence row, when `pickTop.perClass` is set). The confidence of a box is the
confidence of its label (the row's maximum), which is what Vision reports for a
`VNRecognizedObjectObservation`. Outputs keep the full confidence row of each kept box, in
descending confidence; a declared output shape range caps the count (upper bound) and pads with
zero rows (lower bound).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class NMSModel:
    confidence_input: str
    coordinates_input: str
    confidence_output: str
    coordinates_output: str
    iou_threshold: float
    confidence_threshold: float
    per_class: bool
    labels: tuple[str, ...]
    iou_threshold_input: str = ""
    confidence_threshold_input: str = ""
    min_boxes: int = 0
    max_boxes: int | None = None  # None: unbounded

    @classmethod
    def from_spec(cls, model_spec: Any) -> "NMSModel":
        nms = model_spec.nonMaximumSuppression
        method = nms.WhichOneof("SuppressionMethod")
        if method != "pickTop":
            raise ValueError(f"NonMaximumSuppression method {method!r} is not PickTop")
        labels = tuple(nms.stringClassLabels.vector) or tuple(str(v) for v in nms.int64ClassLabels.vector)
        low, high = 0, None
        for feature in model_spec.description.output:
            if feature.name != nms.confidenceOutputFeatureName:
                continue
            array = feature.type.multiArrayType
            if array.WhichOneof("ShapeFlexibility") == "shapeRange" and array.shapeRange.sizeRanges:
                first = array.shapeRange.sizeRanges[0]
                low, high = int(first.lowerBound), (None if first.upperBound < 0 else int(first.upperBound))
            elif len(array.shape) == 2:
                low = high = int(array.shape[0])
        return cls(
            nms.confidenceInputFeatureName, nms.coordinatesInputFeatureName,
            nms.confidenceOutputFeatureName, nms.coordinatesOutputFeatureName,
            float(nms.iouThreshold), float(nms.confidenceThreshold), bool(nms.pickTop.perClass), labels,
            nms.iouThresholdInputFeatureName, nms.confidenceThresholdInputFeatureName, low, high,
        )

    def __call__(
        self, confidence: np.ndarray, coordinates: np.ndarray, iou_threshold: float | None = None,
        confidence_threshold: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """confidence [N, C], coordinates [N, 4] (cx, cy, w, h) -> the kept rows of both (float64,
        as the model's DOUBLE outputs)."""
        conf = np.asarray(confidence, np.float64).reshape(-1, len(self.labels) or np.shape(confidence)[-1])
        coords = np.asarray(coordinates, np.float64).reshape(-1, 4)
        iou_t = self.iou_threshold if iou_threshold is None else float(iou_threshold)
        conf_t = self.confidence_threshold if confidence_threshold is None else float(confidence_threshold)
        labels = conf.argmax(axis=1)
        scores = conf.max(axis=1)
        candidates = np.flatnonzero(scores >= conf_t)
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
        corners = np.concatenate([coords[:, :2] - coords[:, 2:] / 2, coords[:, :2] + coords[:, 2:] / 2], axis=1)
        kept: list[int] = []
        suppressed = np.zeros(len(conf), bool)
        for i in candidates:
            if suppressed[i]:
                continue
            kept.append(int(i))
            if self.max_boxes is not None and len(kept) >= self.max_boxes:
                break
            overlap = _iou(corners[i], corners) > iou_t
            suppressed |= overlap & (labels == labels[i]) if self.per_class else overlap
        out_conf, out_coords = conf[kept], coords[kept]
        if len(kept) < self.min_boxes:  # zero padding up to a fixed/minimum output size
            pad = self.min_boxes - len(kept)
            out_conf = np.concatenate([out_conf, np.zeros((pad, conf.shape[1]))])
            out_coords = np.concatenate([out_coords, np.zeros((pad, 4))])
        return out_conf, out_coords


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)
