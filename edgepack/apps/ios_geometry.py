"""Python mirror of templates/ios/<App>/Core/Geometry.swift, kept under test because Swift
cannot be compiled on Linux (tests/apps/test_ios.py checks the Swift tables against these and
simulates the whole camera -> Vision -> preview chain with them). Change both together."""

from __future__ import annotations

INTERFACE_ORIENTATIONS = ("portrait", "portraitUpsideDown", "landscapeLeft", "landscapeRight")

# (interface orientation, front camera) -> degrees to turn the camera buffer clockwise so it is
# upright on screen. Used both for Vision's EXIF orientation and (iOS 17+) the preview's
# videoRotationAngle. landscapeRight: the bottom edge (home button) on the right.
FRAME_ROTATION = {
    ("portrait", False): 90, ("portrait", True): 90,
    ("portraitUpsideDown", False): 270, ("portraitUpsideDown", True): 270,
    ("landscapeRight", False): 0, ("landscapeRight", True): 180,
    ("landscapeLeft", False): 180, ("landscapeLeft", True): 0,
}

# clockwise rotation -> EXIF orientation given to Vision (never a mirrored one)
EXIF_FOR_ROTATION = {0: "up", 90: "right", 180: "down", 270: "left"}

Rect = tuple[float, float, float, float]  # x, y, width, height


def frame_orientation(interface: str, front_camera: bool) -> str:
    return EXIF_FOR_ROTATION[FRAME_ROTATION[(interface, front_camera)]]


def upright_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    return (width, height) if rotation % 180 == 0 else (height, width)


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
