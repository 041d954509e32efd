"""The one image preprocessing implementation: calibration, validation and the apps'
documentation all follow it (resize or letterbox, colour order, mean/std, layout)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.errors import SpecError
from edgepack.spec import ModelSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
LETTERBOX_PAD = 114  # the grey YOLO letterboxes with


@dataclass(frozen=True)
class Letterbox:
    """How an original image maps into the model input: input = original * scale + pad."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        out = boxes.astype(np.float32).copy()
        out[..., [0, 2]] = (out[..., [0, 2]] - self.pad_x) / self.scale_x
        out[..., [1, 3]] = (out[..., [1, 3]] - self.pad_y) / self.scale_y
        return out


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise SpecError(f"image folder {folder} does not exist", "pass a folder of .jpg/.png/.webp images")
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise SpecError(f"image folder {folder} has no images", f"add {'/'.join(IMAGE_SUFFIXES)} files")
    return images


def seeded_subset(items: list, count: int, seed: int) -> list:
    """A deterministic sample of at most `count` items, in their original order."""
    if len(items) <= count:
        return list(items)
    picked = np.random.default_rng(seed).choice(len(items), size=count, replace=False)
    return [items[i] for i in sorted(picked)]


def sample_images(folder: str | Path, count: int, seed: int) -> list[Path]:
    """A deterministic, seeded sample of at most `count` images of a folder."""
    return seeded_subset(list_images(folder), count, seed)


def load_image(path: str | Path) -> np.ndarray:
    """H x W x 3 uint8 RGB; a clear error naming the file when it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise SpecError(f"cannot read image {path}: {type(e).__name__}", "remove or replace that file") from None


def resize(image: np.ndarray, height: int, width: int, mode: str) -> tuple[np.ndarray, Letterbox]:
    from PIL import Image

    h, w = image.shape[:2]
    if mode == "stretch":
        out = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
        return out, Letterbox(width / w, height / h, 0.0, 0.0)
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    out = np.full((height, width, 3), LETTERBOX_PAD, dtype=np.uint8)
    px, py = (width - nw) // 2, (height - nh) // 2
    out[py : py + nh, px : px + nw] = resized
    return out, Letterbox(nw / w, nh / h, float(px), float(py))


def normalize(image: np.ndarray, spec: ModelSpec, channels: int = 3) -> np.ndarray:
    """uint8 RGB H x W x 3 -> float32 1 x C x H x W with the spec's colour order and mean/std."""
    pixels = image.astype(np.float32)
    if spec.color_order == "bgr":
        pixels = pixels[..., ::-1]
    pixels = (pixels - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if channels == 1:
        pixels = pixels.mean(axis=2, keepdims=True)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])


def preprocess(image: np.ndarray, spec: ModelSpec, input_shape: tuple[int, ...]) -> tuple[np.ndarray, Letterbox]:
    _, c, h, w = input_shape
    resized, box = resize(image, h, w, spec.resize)
    return normalize(resized, spec, c), box


def generated_images(count: int, seed: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Realistic-looking generated scenes for models that come without images."""
    from edgepack.datasets.shapes import render_scene

    rng = np.random.default_rng(seed)
    return [render_scene(rng, size).image for _ in range(count)]
