"""Activation-range statistics and threshold selection (min-max, percentile, KL as ncnn2table
does it), shared by every format that calibrates with our own code.

Statistics are collected in ONE pass over the calibration images: a running absmax, and (for
`percentile`/`kl`) a fine histogram of |x| whose range doubles whenever a larger value arrives.
The range is a power of two, so doubling merges bin pairs exactly; at the end the range is below
2 x absmax, i.e. at least FINE_PER_BIN / 2 fine bins per final bin. ncnn2table's KL histogram
(2048 bins on [0, absmax]) is re-binned from it (uniform density inside a fine bin), which moves
a KL threshold by at most about one fine bin compared with a second pass over the images.
"""

from __future__ import annotations

import math

import numpy as np

NUM_BINS = 2048
TARGET_BINS = 128
KL_EPS = 1e-4
FINE_PER_BIN = 16
# Activations this much smaller than the largest in the same tensor count as zero: one CPU's SiLU
# gives exact zeros (skipped by ncnn's histogram), another gives denormals that land in bin 0 and
# can move the KL optimum by 2x. Treating both as zero keeps tables stable across machines; taking
# the tensor's own peak (not the running absmax) keeps them independent of the image order.
TINY_RELATIVE = 1e-7
PERCENTILE = 99.99
METHODS = ("minmax", "percentile", "kl")


class BlobStats:
    """Range statistics of one activation tensor over the calibration set, in one pass."""

    def __init__(self, histogram: bool = True, fine_bins: int = NUM_BINS * FINE_PER_BIN) -> None:
        self.absmax = 0.0
        self.top = 0.0  # the fine histogram covers [0, top); top is a power of two
        self.fine = np.zeros(fine_bins, np.float64) if histogram else None

    def add(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        peak = float(max(np.max(x), -np.min(x)))
        self.absmax = max(self.absmax, peak)
        if self.fine is None or peak == 0.0:
            return
        if peak >= self.top:
            self._grow(peak)
        a = np.abs(x.ravel())
        a = a[a > peak * TINY_RELATIVE]  # exact zeros and denormal-sized values are not counted
        n = len(self.fine)
        index = np.minimum((a * (n / self.top)).astype(np.int64), n - 1)
        self.fine += np.bincount(index, minlength=n)

    def _grow(self, peak: float) -> None:
        top = 2.0 ** (math.floor(math.log2(peak)) + 1)  # > peak
        if self.top > 0:
            merged = _coarsened(self.fine, int(round(top / self.top)))
            self.fine = np.zeros(len(self.fine), np.float64)
            self.fine[: len(merged)] = merged
        self.top = top

    def merge(self, other: "BlobStats") -> None:
        """Add the statistics another worker collected on other images (same result as one pass:
        the fine histograms' tops are powers of two, so regridding sums whole bins)."""
        if other.absmax == 0.0:
            return
        if self.fine is not None and other.fine is not None:
            if other.top > self.top:
                self._grow(other.top * 0.75)  # -> exactly other.top
            coarse = _coarsened(other.fine, int(round(self.top / other.top)))
            self.fine[: len(coarse)] += coarse
        self.absmax = max(self.absmax, other.absmax)

    def histogram(self, bins: int = NUM_BINS) -> np.ndarray:
        """`bins` bins of |x| on [0, absmax], as ncnn2table's second pass counts them."""
        if self.fine is None or self.absmax == 0:
            return np.zeros(bins)
        n = len(self.fine)
        cum = np.concatenate([[0.0], np.cumsum(self.fine)])
        positions = np.arange(bins + 1) * (self.absmax / bins) * (n / self.top)  # final edges in fine-bin units
        mass = _piecewise_cdf(self.fine, positions, cum)
        mass[-1] = cum[-1]  # everything counted is <= absmax
        return np.diff(mass)

    def threshold(self, method: str) -> float:
        """The clipping threshold: values beyond it saturate at +-127."""
        if self.absmax == 0:
            return 0.0
        if method == "minmax":
            return self.absmax
        if self.fine is None:
            raise ValueError(f"{method} needs the histogram (BlobStats(histogram=True))")
        if method == "percentile":
            return min(self.absmax, self._quantile(PERCENTILE / 100))
        if method == "kl":
            return (kl_threshold_bin(self.histogram()) + 0.5) * self.absmax / NUM_BINS
        raise ValueError(f"unknown calibration method {method!r} (choose from: {', '.join(METHODS)})")

    def _quantile(self, q: float) -> float:
        total = self.fine.sum()
        if total == 0:
            return self.absmax
        cum = np.cumsum(self.fine)
        k = int(np.searchsorted(cum, q * total))
        below = cum[k - 1] if k else 0.0
        fraction = (q * total - below) / self.fine[k] if self.fine[k] else 0.0
        return (k + fraction) * self.top / len(self.fine)

    def clipped_fraction(self, threshold: float) -> float:
        """Share of the counted (non-zero) values above `threshold`: what clipping saturates."""
        if self.fine is None or self.top == 0 or threshold >= self.absmax:
            return 0.0
        total = self.fine.sum()
        n = len(self.fine)
        cum = np.concatenate([[0.0], np.cumsum(self.fine)])
        below = _piecewise_cdf(self.fine, np.array([threshold * n / self.top]), cum)[0]
        return float(max(0.0, 1.0 - below / total)) if total else 0.0

    def scale(self, method: str) -> float:
        """The int8 scale (127 / threshold) for this blob."""
        threshold = self.threshold(method)
        return 1.0 if threshold == 0 else 127.0 / max(threshold, 1e-12)


def _coarsened(fine: np.ndarray, factor: int) -> np.ndarray:
    """A fine histogram on a range `factor` (a power of two) times wider: its bins summed `factor`
    at a time, the first len(fine) / factor bins of the wider one; when the whole old range lies
    inside the first new bin (factor >= len(fine), e.g. one worker saw only a near-black image),
    all of it lands in bin 0."""
    n = len(fine)
    return fine.reshape(n // factor, factor).sum(axis=1) if factor < n else fine.sum(keepdims=True)


def _piecewise_cdf(values: np.ndarray, x: np.ndarray, cum: np.ndarray | None = None) -> np.ndarray:
    """Integral of the step function values[k] on [k, k+1) from 0 to each x (fractional bins)."""
    if cum is None:
        cum = np.concatenate([[0.0], np.cumsum(values)])
    k = np.clip(np.floor(x).astype(np.int64), 0, len(values) - 1)
    return cum[k] + values[k] * (x - k)


def kl_threshold_bin(histogram: np.ndarray, target_bins: int = TARGET_BINS) -> int:
    """The histogram bin where clipping minimises KL(P || Q), P the clipped distribution and Q its
    `target_bins`-level quantization expanded back, with ncnn2table's fractional bin edges and
    epsilons (bins target_bins .. len - 1 are tried, as ncnn2table does)."""
    n = len(histogram)
    if n <= target_bins or float(np.sum(histogram)) == 0:
        return n - 1
    return target_bins + int(np.argmin(kl_divergences(histogram, target_bins)))


def kl_divergences(histogram: np.ndarray, target_bins: int = TARGET_BINS) -> np.ndarray:
    """KL(P || Q) for every threshold bin T = target_bins .. len - 1, all at once.

    KL = sum p log p - sum p log e. The first sum is a prefix sum. In the second, e (the expanded
    Q) is q_j + eps on every original bin lying wholly inside quantized bin j, so those bins
    contribute (their p mass) x log(q_j + eps), again from prefix sums; only the bins cut by an
    edge j * T / target (at most one edge each, as T >= target) mix two levels. That makes the
    search O(thresholds x target) instead of O(thresholds x bins)."""
    h = np.asarray(histogram, np.float64)
    n = len(h)
    h = h / h.sum()
    cum = np.concatenate([[0.0], np.cumsum(h)])
    p_log_p = (h + KL_EPS) * np.log(h + KL_EPS)
    cum_plogp = np.concatenate([[0.0], np.cumsum(p_log_p)])
    t = np.arange(target_bins, n)[:, None]  # thresholds, one row each
    j = np.arange(target_bins + 1)[None, :]
    # edges x_j = j * t / target as integer part and fraction (exact integer arithmetic)
    numerator = j * t
    floor_x = numerator // target_bins
    frac = (numerator % target_bins) / target_bins
    ceil_x = floor_x + (frac > 0)
    per_bin = t / target_bins
    # Q: mean density of h over each [x_j, x_j+1)
    fx = np.minimum(floor_x, n - 1)
    mass_at = cum[floor_x] + h[fx] * frac
    q = np.diff(mass_at, axis=1) / per_bin
    log_e = np.log(q + KL_EPS)
    # P mass of the whole bins inside each quantized bin: [ceil(x_j), floor(x_j+1))
    lo, hi = ceil_x[:, :-1], floor_x[:, 1:]
    whole = cum[hi] - cum[lo] + KL_EPS * (hi - lo)
    tail = cum[n] - cum[t[:, 0]]
    last = t[:, 0] - 1  # the last kept bin also holds the clipped tail
    kl = cum_plogp[last] + _plogp(h[last] + KL_EPS + tail)  # sum of p log p
    kl = kl - (whole * log_e).sum(axis=1) - tail * log_e[:, -1]
    # bins cut by an inner edge: e = frac * q_{j-1} + (1 - frac) * q_j
    cut = frac[:, 1:-1] > 0
    b = floor_x[:, 1:-1]
    e_cut = frac[:, 1:-1] * q[:, :-1] + (1 - frac[:, 1:-1]) * q[:, 1:] + KL_EPS
    p_cut = h[b] + KL_EPS
    return kl - np.where(cut, p_cut * np.log(e_cut), 0.0).sum(axis=1)


def _plogp(p: np.ndarray) -> np.ndarray:
    return p * np.log(p)
