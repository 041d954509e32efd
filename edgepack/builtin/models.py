"""The built-in example models, defined in code (no weights are ever downloaded).

`ShapesDetector` is a small anchor-free, YOLOv8-style detector: a CSP-ish backbone, a light
FPN, and a decoupled head whose output follows the Ultralytics export layout
`[1, 4 + num_classes, anchors]` (cx, cy, w, h in input pixels, then sigmoid class scores).
`ShapesClassifier` is a small CNN for crops of the same data, ending in softmax.
"""

from __future__ import annotations

import torch
from torch import nn

from edgepack.datasets.shapes import SHAPE_NAMES as SHAPES_LABELS


def conv_bn_act(c_in: int, c_out: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.SiLU(),
    )


class CSPBlock(nn.Module):
    """Split, run a bottleneck on one half, concatenate (the C2f idea, one bottleneck)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.split = conv_bn_act(channels, channels, 1)
        self.bottleneck = nn.Sequential(conv_bn_act(half, half, 3), conv_bn_act(half, half, 3))
        self.merge = conv_bn_act(channels + half, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.split(x).chunk(2, dim=1)
        return self.merge(torch.cat([a, b, self.bottleneck(b) + b], dim=1))


class ShapesDetector(nn.Module):
    strides = (8, 16, 32)

    def __init__(self, num_classes: int = len(SHAPES_LABELS), width: int = 16, image_size: int = 320) -> None:
        super().__init__()
        w = width
        self.num_classes = num_classes
        self.image_size = image_size
        self.stem = nn.Sequential(conv_bn_act(3, w, 3, 2), conv_bn_act(w, 2 * w, 3, 2), CSPBlock(2 * w))
        self.stage3 = nn.Sequential(conv_bn_act(2 * w, 4 * w, 3, 2), CSPBlock(4 * w))  # stride 8
        self.stage4 = nn.Sequential(conv_bn_act(4 * w, 8 * w, 3, 2), CSPBlock(8 * w))  # stride 16
        self.stage5 = nn.Sequential(conv_bn_act(8 * w, 8 * w, 3, 2), CSPBlock(8 * w))  # stride 32
        self.lateral5 = conv_bn_act(8 * w, 4 * w, 1)
        self.lateral4 = conv_bn_act(8 * w + 4 * w, 4 * w, 1)
        self.lateral3 = conv_bn_act(4 * w + 4 * w, 4 * w, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.box_heads = nn.ModuleList(
            nn.Sequential(conv_bn_act(4 * w, 2 * w), nn.Conv2d(2 * w, 4, 1)) for _ in self.strides
        )
        self.cls_heads = nn.ModuleList(
            nn.Sequential(conv_bn_act(4 * w, 2 * w), nn.Conv2d(2 * w, num_classes, 1)) for _ in self.strides
        )
        for head in self.cls_heads:  # start with low scores, as YOLO heads do
            nn.init.constant_(head[-1].bias, -4.0)
        self._grids = {s: self._grid(image_size // s, s) for s in self.strides}

    @staticmethod
    def _grid(n: int, stride: int) -> torch.Tensor:
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        return (torch.stack([xs, ys], 0).reshape(2, -1).float() + 0.5) * stride

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage3(self.stem(x))
        c4 = self.stage4(c3)
        c5 = self.stage5(c4)
        p5 = self.lateral5(c5)
        p4 = self.lateral4(torch.cat([c4, self.up(p5)], 1))
        p3 = self.lateral3(torch.cat([c3, self.up(p4)], 1))
        return [p3, p4, p5]

    def raw_head(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per level: (ltrb distances in stride units before activation, class logits)."""
        return [(bh(f), ch(f)) for f, bh, ch in zip(self.features(x), self.box_heads, self.cls_heads)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        boxes, scores = [], []
        for (box, cls), stride in zip(self.raw_head(x), self.strides):
            n = box.shape[-1] * box.shape[-2]
            ltrb = torch.nn.functional.softplus(box.reshape(1, 4, n)) * stride
            centers = self._grids[stride]
            x1y1 = centers - ltrb[:, :2]
            x2y2 = centers + ltrb[:, 2:]
            boxes.append(torch.cat([(x1y1 + x2y2) / 2, x2y2 - x1y1], 1))
            scores.append(torch.sigmoid(cls.reshape(1, self.num_classes, n)))
        return torch.cat([torch.cat(boxes, 2), torch.cat(scores, 2)], 1)


class ShapesClassifier(nn.Module):
    def __init__(self, num_classes: int = len(SHAPES_LABELS), width: int = 16) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            conv_bn_act(3, w, 3, 2),
            conv_bn_act(w, 2 * w, 3, 2),
            CSPBlock(2 * w),
            conv_bn_act(2 * w, 4 * w, 3, 2),
            CSPBlock(4 * w),
            conv_bn_act(4 * w, 8 * w, 3, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc(self.body(x)), dim=1)
