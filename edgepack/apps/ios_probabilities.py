"""Python mirror of Core/Probabilities.swift (iOS) and core/Probabilities.kt (Android): classifier
scores as probabilities. The Kotlin file is compiled and run against this in the tests; the Swift
one cannot be compiled on Linux, so its constant and decision rule are checked against this text."""

from __future__ import annotations

import math

SUM_TOLERANCE = 0.01  # how far from 1 the sum of real probabilities may be (fp16 models round)


def looks_like_probabilities(scores: list[float]) -> bool:
    if not scores or any(not (0.0 <= s <= 1.0) for s in scores):  # NaN fails both comparisons
        return False
    return abs(math.fsum(scores) - 1.0) <= SUM_TOLERANCE


def softmax(logits: list[float]) -> list[float]:
    if not logits:
        return []
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


def probabilities(scores: list[float], kind: str) -> list[float]:
    """kind: "logits", "probabilities" or "auto" (the manifest's model.classifier_output, or none)."""
    if kind == "logits":
        return softmax(scores)
    if kind == "probabilities":
        return list(scores)
    return list(scores) if looks_like_probabilities(scores) else softmax(scores)
