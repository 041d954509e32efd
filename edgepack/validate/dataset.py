"""Task metrics on a labelled dataset: mAP50-95 / mAP50 for detectors (COCO evaluation by
faster-coco-eval), top-1 accuracy for classifiers, for the reference and every host-runnable
artifact, with the shared preprocessing and decoder.

Layouts: detectors `DIR/images/*` + `DIR/labels/<stem>.txt` (YOLO: `class cx cy w h`,
normalized), or COCO json (`DIR/annotations.json`, or the .json file itself, with images under
`DIR/images/` or `DIR/`; categories matched to labels.txt by name, else in category-id order);
classifiers one sub-folder per class named as in labels.txt (ImageFolder).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import SpecError
from edgepack.preprocess import list_images, load_image, preprocess
from edgepack.spec import ModelSpec
from edgepack.validate import detection

EVAL_SCORE_THRESHOLD = 0.001  # mAP needs the low-score tail, as YOLO's val does
EVAL_MAX_DET = 300


@dataclass
class Sample:
    tensor: np.ndarray  # 1 x C x H x W
    letterbox: Any
    size: tuple[int, int]  # original height, width
    boxes: np.ndarray  # ground truth, original pixels, x1 y1 x2 y2
    classes: np.ndarray


def load_dataset(folder: str | Path, manifest: dict[str, Any]) -> list[Sample]:
    folder = Path(folder)
    pre, model = manifest["preprocessing"], manifest["model"]
    spec = ModelSpec(
        task=model["task"], color_order=pre["color_order"], mean=tuple(pre["mean"]), std=tuple(pre["std"]), resize=pre["resize"]
    )
    shape = tuple(pre["input_shape"])
    samples = []
    if model["task"] not in ("classify", "detect"):
        raise SpecError(f"validate --dataset: not measurable for task {model['task']!r} (dataset metrics: mAP for detect, top-1 for classify)")
    if model["task"] == "classify":
        labels = model["labels"]
        for image_path in list_images(folder):
            name = image_path.parent.name
            if name not in labels:
                raise SpecError(f"dataset image {image_path} is in folder {name!r}, which is not a label", "name class folders as in labels.txt")
            image = load_image(image_path)
            tensor, box = preprocess(image, spec, shape)
            samples.append(Sample(tensor, box, image.shape[:2], np.zeros((0, 4)), np.array([labels.index(name)])))
        return samples
    coco = _coco_file(folder)
    if coco is not None:
        return _load_coco(coco, spec, shape, model["labels"])
    images_dir = folder / "images" if (folder / "images").is_dir() else folder
    labels_dir = folder / "labels" if (folder / "labels").is_dir() else folder
    for image_path in list_images(images_dir):
        image = load_image(image_path)
        h, w = image.shape[:2]
        label_file = labels_dir / f"{image_path.stem}.txt"
        rows = np.loadtxt(label_file, ndmin=2) if label_file.is_file() and label_file.read_text().strip() else np.zeros((0, 5))
        if rows.shape[1] != 5:
            raise SpecError(f"{label_file}: expected 5 columns (class cx cy w h, normalized)")
        cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        tensor, box = preprocess(image, spec, shape)
        samples.append(Sample(tensor, box, (h, w), boxes, rows[:, 0].astype(np.int64)))
    return samples


def _coco_file(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".json":
        return path
    candidates = [path / "annotations.json", *sorted((path / "annotations").glob("*.json"))] if path.is_dir() else []
    return next((c for c in candidates if c.is_file()), None)


def _load_coco(json_path: Path, spec: ModelSpec, shape: tuple[int, ...], labels: list[str]) -> list[Sample]:
    import json

    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
        images, annotations, categories = doc["images"], doc.get("annotations", []), doc["categories"]
    except (ValueError, KeyError) as e:
        raise SpecError(f"{json_path} is not a COCO detection file ({type(e).__name__}: {e})", "it needs images, annotations and categories") from None
    if all(c.get("name") in labels for c in categories):
        class_of = {c["id"]: labels.index(c["name"]) for c in categories}
    else:
        class_of = {c["id"]: i for i, c in enumerate(sorted(categories, key=lambda c: c["id"]))}
    root = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    by_image: dict[int, list[dict]] = {}
    for a in annotations:
        by_image.setdefault(a["image_id"], []).append(a)
    samples = []
    for record in images:
        candidates = [root / "images" / record["file_name"], root / record["file_name"]]
        image_path = next((c for c in candidates if c.is_file()), None)
        if image_path is None:
            raise SpecError(f"{json_path}: image {record['file_name']} not found under {root}/images or {root}")
        image = load_image(image_path)
        anns = [a for a in by_image.get(record["id"], []) if not a.get("iscrowd")]
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]).reshape(-1, 4)
        tensor, box = preprocess(image, spec, shape)
        samples.append(Sample(tensor, box, image.shape[:2], boxes, np.array([class_of[a["category_id"]] for a in anns], dtype=np.int64)))
    return samples


def evaluate(runner, samples: list[Sample], manifest: dict[str, Any]) -> dict[str, float]:
    """The dataset metric of one runner; the task's own output is picked by name."""
    from edgepack.validate.reference import ordered_outputs
    from edgepack.validate.tasks import TaskSpec, dataset_support

    model = manifest["model"]
    task = TaskSpec.for_manifest(manifest)
    not_measurable = dataset_support(task)
    if not_measurable:
        raise SpecError(not_measurable)
    runner_names = getattr(runner, "output_names", None)
    names = list(task.output_names) or None
    outputs = [ordered_outputs(runner.run(s.tensor), names, runner_names)[task.main_index] for s in samples]
    if task.task == "classify":
        correct = [int(np.argmax(o)) == int(s.classes[0]) for o, s in zip(outputs, samples)]
        return {"top1": round(float(np.mean(correct)), 4)}
    predictions = []
    for o, s in zip(outputs, samples):
        dets = detection.decode(o, task.head, EVAL_SCORE_THRESHOLD, manifest["postprocessing"]["iou_threshold"],
                                max_det=EVAL_MAX_DET, num_classes=model["num_classes"] or None)
        predictions.append((s.letterbox.to_original(dets.boxes), dets.scores, dets.classes))
    return coco_map(samples, predictions, model["num_classes"])


def coco_map(samples: list[Sample], predictions: list[tuple], num_classes: int) -> dict[str, float]:
    from faster_coco_eval import COCO, COCOeval_faster

    images, annotations, results = [], [], []
    for i, (s, (boxes, scores, classes)) in enumerate(zip(samples, predictions)):
        images.append({"id": i, "height": s.size[0], "width": s.size[1]})
        for box, cls in zip(s.boxes, s.classes):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(cls), "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for box, score, cls in zip(boxes, scores, classes):
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append({"image_id": i, "category_id": int(cls), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    if not results:
        return {"map50_95": 0.0, "map50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in range(num_classes)]}
        gt.createIndex()
        evaluator = COCOeval_faster(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {"map50_95": round(float(evaluator.stats[0]), 4), "map50": round(float(evaluator.stats[1]), 4)}
