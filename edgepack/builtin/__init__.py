"""Built-in examples: small models defined in code, with weights trained here and shipped in
the package (see examples/shapes/ for the training script). Nothing is downloaded."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgepack.errors import SpecError

log = logging.getLogger(__name__)
WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class BuiltinExample:
    name: str
    task: str
    input_shape: tuple[int, int, int, int]
    labels: tuple[str, ...]
    build: Callable[[], Any]

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.pt"

    def load(self) -> Any:
        """The model with its trained weights; a seeded, well-scaled init when none are shipped."""
        import torch

        torch.manual_seed(0)
        model = self.build()
        if self.weights_path.is_file():
            model.load_state_dict(torch.load(self.weights_path, map_location="cpu", weights_only=True))
        else:
            log.warning("no trained weights at %s: using a seeded random init", self.weights_path)
            scale_init(model)
        return model.eval()


def scale_init(model: Any, seed: int = 0) -> None:
    """A random init whose outputs depend on the input (PyTorch's default init plus identity
    BatchNorm statistics shrinks activations layer by layer until the output is a constant)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            fan_in = m.weight[0].numel()
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
        elif isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _detector() -> Any:
    from edgepack.builtin.models import ShapesDetector

    return ShapesDetector()


def _classifier() -> Any:
    from edgepack.builtin.models import ShapesClassifier

    return ShapesClassifier()


def _labels() -> tuple[str, ...]:
    from edgepack.datasets.shapes import SHAPE_NAMES

    return SHAPE_NAMES


EXAMPLES = {
    "shapes-detector": BuiltinExample("shapes-detector", "detect", (1, 3, 320, 320), _labels(), _detector),
    "shapes-classifier": BuiltinExample("shapes-classifier", "classify", (1, 3, 96, 96), _labels(), _classifier),
}


def get_example(name: str) -> BuiltinExample:
    if name not in EXAMPLES:
        raise SpecError(f"unknown built-in model {name!r} (choose from: {', '.join(EXAMPLES)})")
    return EXAMPLES[name]
