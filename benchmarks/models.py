"""Benchmark models defined in code (no weights are downloaded): a YOLOv8n-sized detector
(~3.3 M parameters, 80 classes, 640x640, v8-style head) with a seeded, well-scaled init."""

from __future__ import annotations


def yolov8n_sized():
    import torch

    from edgepack.builtin import scale_init
    from edgepack.builtin.models import ShapesDetector

    torch.manual_seed(0)
    model = ShapesDetector(num_classes=80, width=36, image_size=640)
    scale_init(model, seed=0)
    model.input_shape = (1, 3, 640, 640)
    return model.eval()
