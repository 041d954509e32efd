"""Activation-range statistics and threshold selection (KL as ncnn2table does it, min-max,
percentile), shared by every format that calibrates with our own code."""

from __future__ import annotations

import numpy as np

NUM_BINS = 2048
TARGET_BINS = 128
KL_EPS = 1e-4
# Activations this much smaller than the blob's absmax count as zero: one CPU's SiLU gives exact
# zeros (skipped by ncnn's histogram), another gives denormals that land in bin 0 and can move
# the KL optimum by 2x. Treating both as zero keeps tables stable across machines.
TINY_RELATIVE = 1e-7
PERCENTILE = 99.99


class BlobStats:
    """Two passes over the calibration set: absmax first, then a histogram of |x| on [0, absmax]."""

    def __init__(self) -> None:
        self.absmax = 0.0
        self.histogram = np.zeros(NUM_BINS, np.float64)
        self.samples: list[np.ndarray] = []  # a bounded sample of |x| for the percentile method

    def add_absmax(self, x: np.ndarray) -> None:
        self.absmax = max(self.absmax, float(np.max(np.abs(x))) if x.size else 0.0)

    def add_histogram(self, x: np.ndarray, rng: np.random.Generator) -> None:
        if self.absmax == 0:
            return
        a = np.abs(x.ravel()).astype(np.float64)
        a = a[a > self.absmax * TINY_RELATIVE]
        index = np.minimum((a / self.absmax * NUM_BINS).astype(np.int64), NUM_BINS - 1)
        self.histogram += np.bincount(index, minlength=NUM_BINS)
        if a.size:
            self.samples.append(a[rng.integers(0, a.size, size=min(a.size, 4096))])

    def scale(self, method: str) -> float:
        """The int8 scale (127 / threshold) for this blob."""
        if self.absmax == 0:
            return 1.0
        if method == "minmax":
            threshold = self.absmax
        elif method == "percentile":
            threshold = float(np.percentile(np.concatenate(self.samples), PERCENTILE)) if self.samples else self.absmax
        elif method == "kl":
            threshold = (kl_threshold_bin(self.histogram) + 0.5) * self.absmax / NUM_BINS
        else:
            raise ValueError(method)
        return 127.0 / max(threshold, 1e-12)


def _piecewise_cdf(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Integral of the step function values[k] on [k, k+1) from 0 to each x (fractional bins)."""
    cum = np.concatenate([[0.0], np.cumsum(values)])
    k = np.minimum(np.floor(x).astype(np.int64), len(values) - 1)
    return cum[k] + values[k] * (x - k)


def kl_threshold_bin(histogram: np.ndarray) -> int:
    """The histogram bin where clipping minimises KL(P || Q), P the clipped distribution and Q its
    128-level quantization expanded back, with ncnn2table's fractional bin edges and epsilons."""
    total = histogram.sum()
    if total == 0:
        return NUM_BINS - 1
    h = histogram / total
    best_bin, best_kl = TARGET_BINS, np.inf
    j = np.arange(TARGET_BINS + 1, dtype=np.float64)
    for threshold in range(TARGET_BINS, NUM_BINS):
        p = h[:threshold] + KL_EPS
        p[-1] += h[threshold:].sum()
        per_bin = threshold / TARGET_BINS
        edges = j * per_bin
        mass = _piecewise_cdf(h[:threshold], edges)
        q = np.diff(mass) / per_bin  # mean density of each quantized level
        expanded = np.diff(_piecewise_cdf(q, np.arange(threshold + 1) / per_bin)) * per_bin + KL_EPS
        kl = float(np.sum(p * np.log(p / expanded)))
        if kl < best_kl:
            best_kl, best_bin = kl, threshold
    return best_bin
