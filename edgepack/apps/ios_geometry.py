"""Python mirror of templates/ios/<App>/Core/Geometry.swift, kept under test because Swift
cannot be compiled on Linux. Change both together."""

from __future__ import annotations

# (device orientation, front camera) -> EXIF orientation of the camera frame for Vision
FRAME_ORIENTATION = {
    ("portrait", False): "right", ("portrait", True): "leftMirrored",
    ("portraitUpsideDown", False): "left", ("portraitUpsideDown", True): "rightMirrored",
    ("landscapeLeft", False): "up", ("landscapeLeft", True): "downMirrored",
    ("landscapeRight", False): "down", ("landscapeRight", True): "upMirrored",
}

Rect = tuple[float, float, float, float]  # x, y, width, height


def top_left_rect(vision: Rect) -> Rect:
    x, y, w, h = vision
    return (x, 1 - (y + h), w, h)


def view_rect(rect: Rect, image: tuple[float, float], view: tuple[float, float], mirrored: bool) -> Rect:
    scale = max(view[0] / image[0], view[1] / image[1])
    shown = (image[0] * scale, image[1] * scale)
    offset = ((view[0] - shown[0]) / 2, (view[1] - shown[1]) / 2)
    x, y, w, h = rect
    if mirrored:
        x = 1 - (x + w)
    return (offset[0] + x * shown[0], offset[1] + y * shown[1], w * shown[0], h * shown[1])


def iou(a: Rect, b: Rect) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return 0.0 if inter <= 0 else inter / (a[2] * a[3] + b[2] * b[3] - inter)


def f1(expected: list[tuple[str, Rect]], actual: list[tuple[str, Rect]], iou_threshold: float) -> float:
    if not expected and not actual:
        return 1.0
    used: set[int] = set()
    matched = 0
    for label, box in expected:
        best, best_iou = -1, iou_threshold
        for j, (other_label, other) in enumerate(actual):
            if j in used or other_label != label:
                continue
            value = iou(box, other)
            if value >= best_iou:
                best, best_iou = j, value
        if best >= 0:
            used.add(best)
            matched += 1
    return 2.0 * matched / (len(expected) + len(actual))
