"""Tiny seeded test models, defined in code (the pnnx / optimum habit of tiny random models).

Their init is scaled so the outputs depend on the input (see edgepack.builtin.scale_init), and
the detector's class bias is 0 so random weights produce plenty of boxes to compare.
"""

from __future__ import annotations

import torch
from torch import nn

from edgepack.builtin import scale_init
from edgepack.builtin.models import ShapesClassifier, ShapesDetector


def tiny_detector(image_size: int = 128, num_classes: int = 3) -> ShapesDetector:
    torch.manual_seed(1)
    model = ShapesDetector(num_classes=num_classes, width=8, image_size=image_size)
    scale_init(model, seed=1)
    for head in model.cls_heads:
        nn.init.constant_(head[-1].bias, 0.0)
    return model.eval()


def tiny_classifier(num_classes: int = 4) -> ShapesClassifier:
    torch.manual_seed(2)
    model = ShapesClassifier(num_classes=num_classes, width=8)
    scale_init(model, seed=2)
    return model.eval()


def tiny_classifier_factory() -> ShapesClassifier:
    """For `package.module:factory` sources."""
    model = tiny_classifier()
    model.input_shape = (1, 3, 64, 64)
    return model


def export_onnx(model: nn.Module, path, shape, dynamic: bool = False) -> None:
    kwargs = {}
    if dynamic:
        kwargs["dynamic_axes"] = {"images": {0: "batch", 2: "height", 3: "width"}}
    torch.onnx.export(
        model, (torch.rand(*shape),), str(path), opset_version=17, dynamo=False,
        input_names=["images"], output_names=["output0"], **kwargs,
    )
