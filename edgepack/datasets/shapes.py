"""Synthetic "shapes" scenes with box labels: the data the built-in examples are trained,
calibrated and evaluated on. Deterministic for a given seed; no files are downloaded.

Each scene has a textured background (flat, gradient, stripes or noise), one to six shapes of
five kinds in random colours, sizes and rotations (later shapes may partly cover earlier ones),
and sensor-like noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPE_NAMES = ("circle", "square", "triangle", "star", "cross")


@dataclass
class Scene:
    image: np.ndarray  # H x W x 3, uint8, RGB
    boxes: np.ndarray  # N x 4, float32, x1 y1 x2 y2 in pixels
    classes: np.ndarray  # N, int64


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "square":
        pts = [(math.cos(a), math.sin(a)) for a in (math.pi / 4 + k * math.pi / 2 for k in range(4))]
    elif kind == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in (-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))]
    elif kind == "star":
        pts = [
            ((1.0 if k % 2 == 0 else 0.45) * math.cos(a), (1.0 if k % 2 == 0 else 0.45) * math.sin(a))
            for k, a in enumerate(-math.pi / 2 + k * math.pi / 5 for k in range(10))
        ]
    elif kind == "cross":
        t = 0.33
        pts = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t)]
    else:
        raise ValueError(kind)
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def _muted(rng: np.random.Generator) -> np.ndarray:
    grey = rng.uniform(40, 170)
    return (grey + rng.uniform(-25, 25, 3)).astype(np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.integers(4)
    base = _muted(rng)
    if kind == 0:
        img = np.broadcast_to(base, (h, w, 3)).copy()
    elif kind == 1:
        other = _muted(rng)
        t = np.linspace(0, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
        ramp = base + (other - base) * t[:, None]
        img = np.broadcast_to(ramp[None, :, :], (h, w, 3)).copy() if len(t) == w else np.broadcast_to(ramp[:, None, :], (h, w, 3)).copy()
    elif kind == 2:
        other = _muted(rng)
        period = int(rng.integers(8, 40))
        stripes = ((np.arange(w) // period) % 2).astype(np.float32)
        img = base + (other - base) * stripes[None, :, None] * 0.25
        img = np.broadcast_to(img, (h, w, 3)).copy()
    else:
        small = np.clip(rng.normal(128, 40, (h // 16 + 1, w // 16 + 1, 3)), 0, 255).astype(np.uint8)
        img = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR), dtype=np.float32) * 0.3 + base * 0.7
    return img


def _object_colour(rng: np.random.Generator) -> tuple[int, ...]:
    """A saturated, bright colour: objects stand out from the muted backgrounds."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.55, 1.0), rng.uniform(0.75, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def render_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = (320, 320),
    max_objects: int = 6,
    min_radius: float | None = None,
    max_radius: float | None = None,
) -> Scene:
    """Radii default to 3 %..19 % of the shorter side (10..60 px at 320)."""
    h, w = size
    min_radius = min(h, w) * 0.03 if min_radius is None else min_radius
    max_radius = min(h, w) * 0.19 if max_radius is None else max_radius
    image = Image.fromarray(np.clip(_background(rng, h, w), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    boxes, classes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(len(SHAPE_NAMES)))
        r = float(rng.uniform(min_radius, max_radius))
        cx, cy = float(rng.uniform(r * 0.6, w - r * 0.6)), float(rng.uniform(r * 0.6, h - r * 0.6))
        colour = _object_colour(rng)
        if SHAPE_NAMES[cls] == "circle":
            pts = [(cx - r, cy - r), (cx + r, cy + r)]
            draw.ellipse(pts, fill=colour)
        else:
            pts = _polygon(SHAPE_NAMES[cls], cx, cy, r, float(rng.uniform(0, 2 * math.pi)))
            draw.polygon(pts, fill=colour)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        box = [max(0.0, min(xs)), max(0.0, min(ys)), min(float(w), max(xs)), min(float(h), max(ys))]
        if box[2] - box[0] >= 4 and box[3] - box[1] >= 4:
            boxes.append(box)
            classes.append(cls)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5))))
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0, rng.uniform(0, 10), pixels.shape).astype(np.float32)
    return Scene(
        image=np.clip(pixels, 0, 255).astype(np.uint8),
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        classes=np.array(classes, dtype=np.int64),
    )


def render_crop(rng: np.random.Generator, size: int = 96) -> tuple[np.ndarray, int]:
    """One shape filling most of a small image: classifier data."""
    while True:
        scene = render_scene(rng, (size, size), max_objects=1, min_radius=size * 0.22, max_radius=size * 0.45)
        if len(scene.classes):
            return scene.image, int(scene.classes[0])


def write_detection_set(folder: Path, count: int, seed: int, size: tuple[int, int] = (320, 320)) -> Path:
    """Images plus YOLO-format txt labels (class cx cy w h, normalized) and labels.txt."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    for i in range(count):
        scene = render_scene(rng, size)
        Image.fromarray(scene.image).save(folder / "images" / f"{i:05d}.png")
        lines = []
        for (x1, y1, x2, y2), c in zip(scene.boxes, scene.classes):
            lines.append(f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
        (folder / "labels" / f"{i:05d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    (folder / "labels.txt").write_text("\n".join(SHAPE_NAMES) + "\n")
    return folder


def write_classification_set(folder: Path, count: int, seed: int, size: int = 96) -> Path:
    """Images in one sub-folder per class (the ImageFolder layout) plus labels.txt."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for i in range(count):
        image, cls = render_crop(rng, size)
        target = folder / SHAPE_NAMES[cls]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target / f"{i:05d}.png")
    (folder / "labels.txt").write_text("\n".join(SHAPE_NAMES) + "\n")
    return folder
