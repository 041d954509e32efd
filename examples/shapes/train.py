"""Train the built-in shapes detector and classifier on generated data, on the CPU.

Reproduce the committed weights exactly with:

    python examples/shapes/train.py --seed 0

(writes edgepack/builtin/weights/shapes-detector.pt and shapes-classifier.pt). The data is
rendered by edgepack.datasets.shapes from the seed; nothing is downloaded.

Detector training is FCOS/YOLOv8-like and anchor-free: each ground-truth box is assigned to
the grid cells of one pyramid level (chosen by its size) whose centres lie inside the box and
near its centre; classification uses a focal loss, boxes a GIoU loss on the decoded distances.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgepack.builtin import WEIGHTS_DIR
from edgepack.builtin.models import ShapesClassifier, ShapesDetector
from edgepack.datasets.shapes import render_crop, render_scene

LEVEL_RANGES = ((0.0, 32.0), (32.0, 64.0), (64.0, 1e9))  # max box-edge distance per level (pixels)
CENTER_RADIUS = 2.0  # in strides


def make_scenes(count: int, seed: int, size: int) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    images, boxes, classes = [], [], []
    for _ in range(count):
        scene = render_scene(rng, (size, size))
        images.append(scene.image)
        boxes.append(scene.boxes)
        classes.append(scene.classes)
    return np.stack(images), boxes, classes


def build_points(model: ShapesDetector) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """All grid-cell centres across levels with their stride and level size range."""
    centers, strides, lo, hi = [], [], [], []
    for stride, (a, b) in zip(model.strides, LEVEL_RANGES):
        grid = model._grids[stride].T  # N x 2
        centers.append(grid)
        strides.append(torch.full((len(grid),), float(stride)))
        lo.append(torch.full((len(grid),), a))
        hi.append(torch.full((len(grid),), b))
    return torch.cat(centers), torch.cat(strides), torch.cat(lo), torch.cat(hi)


def assign(points, strides, lo, hi, boxes: torch.Tensor) -> torch.Tensor:
    """Index of the assigned box per point, -1 for background."""
    if len(boxes) == 0:
        return torch.full((len(points),), -1, dtype=torch.long)
    px, py = points[:, 0:1], points[:, 1:2]
    ltrb = torch.stack([px - boxes[:, 0], py - boxes[:, 1], boxes[:, 2] - px, boxes[:, 3] - py], dim=2)  # N x M x 4
    inside = ltrb.min(dim=2).values > 0
    bcx, bcy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    radius = CENTER_RADIUS * strides[:, None]
    near = ((px - bcx).abs() < radius) & ((py - bcy).abs() < radius)
    reach = ltrb.max(dim=2).values
    in_level = (reach >= lo[:, None]) & (reach < hi[:, None])
    valid = inside & near & in_level
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand_as(valid)
    area = torch.where(valid, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(dim=1)
    return torch.where(torch.isfinite(best_area), best, torch.full_like(best, -1))


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    x1 = torch.max(pred[:, 0], target[:, 0])
    y1 = torch.max(pred[:, 1], target[:, 1])
    x2 = torch.min(pred[:, 2], target[:, 2])
    y2 = torch.min(pred[:, 3], target[:, 3])
    inter = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    area_p = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = area_p + area_t - inter
    iou = inter / union.clamp(min=1e-6)
    cx1 = torch.min(pred[:, 0], target[:, 0])
    cy1 = torch.min(pred[:, 1], target[:, 1])
    cx2 = torch.max(pred[:, 2], target[:, 2])
    cy2 = torch.max(pred[:, 3], target[:, 3])
    hull = ((cx2 - cx1) * (cy2 - cy1)).clamp(min=1e-6)
    return (1 - iou + (hull - union) / hull).mean()


def detector_loss(model: ShapesDetector, images: torch.Tensor, boxes, classes, points, strides, lo, hi) -> torch.Tensor:
    raw = model.raw_head(images)
    batch = images.shape[0]
    box_raw = torch.cat([b.reshape(batch, 4, -1) for b, _ in raw], dim=2).permute(0, 2, 1)  # B x N x 4
    cls_raw = torch.cat([c.reshape(batch, model.num_classes, -1) for _, c in raw], dim=2).permute(0, 2, 1)
    ltrb = F.softplus(box_raw) * strides[None, :, None]
    pred_boxes = torch.cat([points[None] - ltrb[..., :2], points[None] + ltrb[..., 2:]], dim=2)
    cls_target = torch.zeros_like(cls_raw)
    pos_pred, pos_target = [], []
    for i in range(batch):
        gt = torch.from_numpy(boxes[i])
        idx = assign(points, strides, lo, hi, gt)
        pos = idx >= 0
        if pos.any():
            cls_target[i, pos, torch.from_numpy(classes[i])[idx[pos]]] = 1.0
            pos_pred.append(pred_boxes[i, pos])
            pos_target.append(gt[idx[pos]])
    num_pos = max(1.0, float(sum(len(p) for p in pos_pred)))
    p = torch.sigmoid(cls_raw)
    ce = F.binary_cross_entropy_with_logits(cls_raw, cls_target, reduction="none")
    pt = p * cls_target + (1 - p) * (1 - cls_target)
    alpha = 0.25 * cls_target + 0.75 * (1 - cls_target)
    focal = (alpha * (1 - pt) ** 2 * ce).sum() / num_pos
    box = giou_loss(torch.cat(pos_pred), torch.cat(pos_target)) if pos_pred else cls_raw.sum() * 0
    return focal + 2.0 * box


def augment(images: np.ndarray, boxes: list[np.ndarray], rng: np.random.Generator, size: int):
    out_boxes = []
    images = images.copy()
    for i in range(len(images)):
        b = boxes[i].copy()
        if rng.random() < 0.5:
            images[i] = images[i, :, ::-1]
            b[:, [0, 2]] = size - b[:, [2, 0]]
        out_boxes.append(b)
    return images, out_boxes


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def train_detector(seed: int, steps: int, batch: int, scenes: int) -> ShapesDetector:
    torch.manual_seed(seed)
    model = ShapesDetector()
    size = model.image_size
    t0 = time.time()
    images, boxes, classes = make_scenes(scenes, seed + 1, size)
    print(f"detector: rendered {scenes} scenes in {time.time() - t0:.0f} s", flush=True)
    points, strides, lo, hi = build_points(model)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed + 2)
    model.train()
    for step in range(steps):
        pick = rng.choice(scenes, size=batch, replace=False)
        imgs, bxs = augment(images[pick], [boxes[i] for i in pick], rng, size)
        loss = detector_loss(model, to_tensor(imgs), bxs, [classes[i] for i in pick], points, strides, lo, hi)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"detector step {step:5d}/{steps} loss {loss.item():.4f} {time.time() - t0:.0f} s", flush=True)
    return model.eval()


def train_classifier(seed: int, steps: int, batch: int, count: int) -> ShapesClassifier:
    torch.manual_seed(seed)
    model = ShapesClassifier()
    rng = np.random.default_rng(seed + 3)
    crops = [render_crop(rng) for _ in range(count)]
    images = np.stack([c[0] for c in crops])
    labels = torch.tensor([c[1] for c in crops])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    pick_rng = np.random.default_rng(seed + 4)
    model.train()
    for step in range(steps):
        pick = pick_rng.choice(count, size=batch, replace=False)
        probs = model(to_tensor(images[pick]))
        loss = F.nll_loss(torch.log(probs.clamp(min=1e-7)), labels[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"classifier step {step:4d}/{steps} loss {loss.item():.4f}", flush=True)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detector-steps", type=int, default=1500)
    parser.add_argument("--classifier-steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--scenes", type=int, default=3000)
    parser.add_argument("--only", choices=["detector", "classifier"])
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "classifier"):
        classifier = train_classifier(args.seed, args.classifier_steps, 64, 4000)
        torch.save(classifier.state_dict(), args.out / "shapes-classifier.pt")
    if args.only in (None, "detector"):
        detector = train_detector(args.seed, args.detector_steps, args.batch, args.scenes)
        torch.save(detector.state_dict(), args.out / "shapes-detector.pt")
    print(f"wrote weights to {args.out}")


if __name__ == "__main__":
    main()
