"""The Python reference the compiled decoders (Kotlin, C++) are held to: boxes as rows of
x1 y1 x2 y2 score class, parsed from the programs' output and compared within fixed tolerances."""

from __future__ import annotations

import numpy as np

from edgepack.validate.detection import decode


def python_decode(output: np.ndarray, head: str, num_classes: int) -> np.ndarray:
    d = decode(output, head, 0.25, 0.45, num_classes=num_classes)
    return np.concatenate([d.boxes, d.scores[:, None], d.classes[:, None]], axis=1) if len(d) else np.zeros((0, 6))


def parse_lines(text: str) -> np.ndarray:
    rows = [list(map(float, line.split())) for line in text.strip().splitlines() if line.strip()]
    return np.array(rows).reshape(-1, 6)


def compare(native: np.ndarray, reference: np.ndarray) -> None:
    assert native.shape == reference.shape, (native.shape, reference.shape)
    np.testing.assert_allclose(native[:, :4], reference[:, :4], atol=1e-4)
    np.testing.assert_allclose(native[:, 4], reference[:, 4], atol=1e-6)
    np.testing.assert_array_equal(native[:, 5], reference[:, 5])
