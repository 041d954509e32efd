import numpy as np
import pytest

from edgepack.validate import detection, metrics


def yolov8_output(rows):
    """rows: list of (cx, cy, w, h, scores...) -> [1, 4 + C, N]."""
    return np.array(rows, dtype=np.float32).T[None]


def test_decode_yolov8_thresholds_and_converts_boxes():
    out = yolov8_output([(50, 50, 20, 10, 0.9, 0.1), (10, 10, 4, 4, 0.1, 0.2), (80, 20, 10, 10, 0.2, 0.7)])
    dets = detection.decode(out, "yolov8", score_threshold=0.25, iou_threshold=0.45, num_classes=2)
    assert dets.classes.tolist() == [0, 1]
    np.testing.assert_allclose(dets.boxes[0], [40, 45, 60, 55])
    np.testing.assert_allclose(dets.scores, [0.9, 0.7], rtol=1e-6)


def test_decode_accepts_transposed_yolov8_and_yolov5():
    rows = [(50, 50, 20, 10, 0.9, 0.1), (80, 20, 10, 10, 0.2, 0.7)]
    a = detection.decode(yolov8_output(rows), "yolov8", 0.25, 0.45, num_classes=2)
    b = detection.decode(np.array(rows, np.float32)[None], "yolov8", 0.25, 0.45, num_classes=2)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    v5 = np.array([(50, 50, 20, 10, 0.5, 0.9, 0.1), (80, 20, 10, 10, 1.0, 0.2, 0.7)], np.float32)[None]
    c = detection.decode(v5, "yolov5", 0.25, 0.45)
    np.testing.assert_allclose(c.scores, [0.7, 0.45], rtol=1e-6)  # objectness times class score
    assert detection.num_classes("yolov5", v5.shape) == 2
    assert detection.num_classes("yolov8", (1, 84, 8400)) == 80


def test_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    classes = np.array([0, 0, 1])
    assert detection.nms(boxes, scores, classes, 0.5).tolist() == [0, 2]


def test_f1_agreement_counts_misses_and_extras():
    ref = detection.Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([0.9, 0.8]), np.array([0, 1]))
    same = detection.Detections(ref.boxes + 0.5, ref.scores, ref.classes)
    wrong_class = detection.Detections(ref.boxes, ref.scores, np.array([1, 0]))
    one_missing = detection.Detections(ref.boxes[:1], ref.scores[:1], ref.classes[:1])
    empty = detection.Detections(np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, int))
    assert detection.f1_agreement([ref], [same]) == 1.0
    assert detection.f1_agreement([ref], [wrong_class]) == 0.0
    assert detection.f1_agreement([ref], [one_missing]) == pytest.approx(2 / 3)
    assert detection.f1_agreement([empty], [empty]) == 1.0


def test_metrics():
    a = np.array([1.0, 2.0, 3.0])
    assert metrics.cosine(a, a) == pytest.approx(1.0)
    assert metrics.cosine(a, -a) == pytest.approx(-1.0)
    assert metrics.max_abs(a, a + [0, 0.5, 0]) == pytest.approx(0.5)
    assert metrics.psnr(a, a) == float("inf")
    assert metrics.psnr(a + 0.03, a) == pytest.approx(20 * np.log10(3 / 0.03))
