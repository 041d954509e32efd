"""Calibration statistics and thresholds: one-pass histograms against two-pass ones, the
vectorised KL search against a line-by-line transliteration of ncnn2table's loops, minmax and
percentile."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgepack.quantize.calibration import KL_EPS, NUM_BINS, BlobStats, kl_divergences, kl_threshold_bin


def reference_kl(histogram: np.ndarray, target_bin: int) -> tuple[int, list[float]]:
    """ncnn2table's quantize_KL threshold search, loop for loop (tools/quantize/ncnn2table.cpp):
    the best threshold bin and the KL divergence of every threshold tried."""
    n = len(histogram)
    h = [float(v) / float(sum(histogram)) for v in histogram]
    best, best_kl, divergences = target_bin, math.inf, []
    for threshold in range(target_bin, n):
        clip = [KL_EPS] * threshold
        for j in range(threshold):
            clip[j] += h[j]
        for j in range(threshold, n):
            clip[threshold - 1] += h[j]
        per_bin = threshold / target_bin
        q = [0.0] * target_bin
        end = per_bin
        right_lower = math.floor(end)
        right_scale = end - right_lower
        if right_scale > 0:
            q[0] += right_scale * h[right_lower]
        for k in range(right_lower):
            q[0] += h[k]
        q[0] /= right_lower + right_scale
        for j in range(1, target_bin - 1):
            start, end = j * per_bin, (j + 1) * per_bin
            left_upper = math.ceil(start)
            left_scale = left_upper - start
            right_lower = math.floor(end)
            right_scale = end - right_lower
            if left_scale > 0:
                q[j] += left_scale * h[left_upper - 1]
            if right_scale > 0:
                q[j] += right_scale * h[right_lower]
            for k in range(left_upper, right_lower):
                q[j] += h[k]
            q[j] /= right_lower - left_upper + left_scale + right_scale
        start = threshold - per_bin
        left_upper = math.ceil(start)
        left_scale = left_upper - start
        if left_scale > 0:
            q[-1] += left_scale * h[left_upper - 1]
        for k in range(left_upper, threshold):
            q[-1] += h[k]
        q[-1] /= threshold - left_upper + left_scale
        expand = [KL_EPS] * threshold
        end = per_bin
        right_lower = math.floor(end)
        right_scale = end - right_lower
        if right_scale > 0:
            expand[right_lower] += right_scale * q[0]
        for k in range(right_lower):
            expand[k] += q[0]
        for j in range(1, target_bin - 1):
            start, end = j * per_bin, (j + 1) * per_bin
            left_upper = math.ceil(start)
            left_scale = left_upper - start
            right_lower = math.floor(end)
            right_scale = end - right_lower
            if left_scale > 0:
                expand[left_upper - 1] += left_scale * q[j]
            if right_scale > 0:
                expand[right_lower] += right_scale * q[j]
            for k in range(left_upper, right_lower):
                expand[k] += q[j]
        start = threshold - per_bin
        left_upper = math.ceil(start)
        left_scale = left_upper - start
        if left_scale > 0:
            expand[left_upper - 1] += left_scale * q[-1]
        for k in range(left_upper, threshold):
            expand[k] += q[-1]
        kl = sum(a * math.log(a / b) for a, b in zip(clip, expand))
        divergences.append(kl)
        if kl < best_kl:
            best_kl, best = kl, threshold
    return best, divergences


def activation_histogram(bins: int, seed: int) -> np.ndarray:
    """|x| of a SiLU-like activation with a long tail, counted on `bins` bins up to its absmax."""
    rng = np.random.default_rng(seed)
    x = np.abs(np.concatenate([rng.normal(0, 1, 300_000), rng.standard_t(4, 3_000) * 1.5]))
    return np.histogram(x, bins=bins, range=(0, x.max()))[0].astype(np.float64)


@pytest.mark.parametrize("bins, target, seed", [(512, 32, 0), (640, 128, 1), (384, 128, 2)])
def test_vectorised_kl_equals_ncnn_loops(bins, target, seed):
    histogram = activation_histogram(bins, seed)
    expected, divergences = reference_kl(histogram, target)
    np.testing.assert_allclose(kl_divergences(histogram, target), divergences, rtol=1e-9, atol=1e-12)
    assert kl_threshold_bin(histogram, target) == expected
    assert target < expected < bins - 1  # a real optimum, not an end of the search range


def per_threshold_kl_bin(histogram: np.ndarray, target_bin: int = 128) -> int:
    """The same search one threshold at a time with numpy (fractional edges by integrating the
    histogram's step function): fast enough for ncnn's full 2048-bin size."""

    def cdf(values, x):
        cum = np.concatenate([[0.0], np.cumsum(values)])
        k = np.minimum(np.floor(x).astype(np.int64), len(values) - 1)
        return cum[k] + values[k] * (x - k)

    h = histogram / histogram.sum()
    best, best_kl = target_bin, np.inf
    for threshold in range(target_bin, len(h)):
        p = h[:threshold] + KL_EPS
        p[-1] += h[threshold:].sum()
        per_bin = threshold / target_bin
        q = np.diff(cdf(h[:threshold], np.arange(target_bin + 1) * per_bin)) / per_bin
        expanded = np.diff(cdf(q, np.arange(threshold + 1) / per_bin)) * per_bin + KL_EPS
        kl = float(np.sum(p * np.log(p / expanded)))
        if kl < best_kl:
            best_kl, best = kl, threshold
    return best


@pytest.mark.parametrize("seed", [3, 6])
def test_vectorised_kl_on_ncnn_sized_histogram(seed):
    """The full 2048-bin / 128-level search, against the per-threshold formulation."""
    histogram = activation_histogram(NUM_BINS, seed)
    best = kl_threshold_bin(histogram)
    assert best == per_threshold_kl_bin(histogram)
    assert 128 < best < NUM_BINS - 1


def test_one_pass_histogram_matches_two_passes():
    rng = np.random.default_rng(4)
    batches = [rng.normal(0, scale, 50_000).astype(np.float32) for scale in (0.5, 1.0, 3.0, 2.0)]
    one = BlobStats()
    for b in batches:
        one.add(b)
    absmax = max(float(np.abs(b).max()) for b in batches)
    assert one.absmax == absmax
    everything = np.abs(np.concatenate(batches))
    two_pass = np.histogram(everything[everything > 0], bins=NUM_BINS, range=(0, absmax))[0]
    rebinned = one.histogram()
    assert rebinned.sum() == pytest.approx(two_pass.sum())
    # re-binning from the fine histogram moves mass by at most a fraction of a bin
    assert np.abs(np.cumsum(rebinned) - np.cumsum(two_pass)).max() <= 0.002 * two_pass.sum()
    exact = (kl_threshold_bin(two_pass) + 0.5) * absmax / NUM_BINS
    assert one.threshold("kl") == pytest.approx(exact, rel=0.02)


def test_statistics_of_parallel_workers_merge_into_the_one_pass_result():
    """ncnn calibration runs one net per core on a share of the images and merges their BlobStats:
    the merged histogram must equal one pass over all batches (tops are powers of two)."""
    rng = np.random.default_rng(6)
    # first, an image whose activations are all tiny next to the others' (1e-8): counted whether
    # it comes before the others (one pass) or after them (backwards, and in its worker's share)
    batches = [rng.normal(0, scale, 40_000).astype(np.float32) for scale in (1e-8, 0.3, 4.0, 1.0, 9.0, 0.7, 2.5)]
    backwards = BlobStats()
    for b in reversed(batches):
        backwards.add(b)
    one = BlobStats()
    for b in batches:
        one.add(b)
    parts = [BlobStats(), BlobStats()]
    for i, b in enumerate(batches):
        parts[(i + 1) % 2].add(b)  # the tiny image comes after a large one in its share
    merged, other = parts
    merged.merge(other)
    assert merged.absmax == one.absmax and merged.top == one.top
    # exactly: which worker saw which batch, and in what order, must not change the table
    np.testing.assert_array_equal(merged.fine, one.fine)
    np.testing.assert_array_equal(backwards.fine, one.fine)
    assert one.fine.sum() == sum(np.count_nonzero(b) for b in batches)  # nothing of the tiny image was cut
    for method in ("minmax", "percentile", "kl"):
        assert merged.threshold(method) == one.threshold(method) == backwards.threshold(method), method
    nothing = BlobStats()
    nothing.merge(one)  # an empty worker share: the other's numbers as they are
    assert nothing.absmax == one.absmax and nothing.threshold("kl") == pytest.approx(one.threshold("kl"))


def test_a_worker_that_saw_only_a_near_black_image_merges_into_bin_zero():
    """With each net taking the next image, one net may see only a near-black image: its whole
    range then lies inside the other's first bin (this failed with a reshape error)."""
    rng = np.random.default_rng(7)
    tiny, large = (rng.normal(0, 1e-9, 3_000).astype(np.float32), rng.normal(0, 5.0, 40_000).astype(np.float32))
    one = BlobStats()
    one.add(tiny)
    one.add(large)
    for first, second in ((large, tiny), (tiny, large)):  # either net's statistics merged into the other's
        merged, other = BlobStats(), BlobStats()
        merged.add(first)
        other.add(second)
        merged.merge(other)
        np.testing.assert_array_equal(merged.fine, one.fine)
        assert merged.threshold("kl") == one.threshold("kl") and merged.absmax == one.absmax


def test_minmax_percentile_and_clipping():
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, 400_000).astype(np.float32)
    stats = BlobStats()
    stats.add(values)
    absmax = float(np.abs(values).max())
    assert stats.threshold("minmax") == absmax and stats.clipped_fraction(absmax) == 0
    expected = float(np.percentile(np.abs(values), 99.99))
    assert stats.threshold("percentile") == pytest.approx(expected, rel=0.01)
    assert stats.clipped_fraction(stats.threshold("percentile")) == pytest.approx(1e-4, rel=0.2)
    assert stats.threshold("kl") < absmax and stats.clipped_fraction(stats.threshold("kl")) > 0
    assert stats.scale("minmax") == pytest.approx(127 / absmax)
    without_histogram = BlobStats(histogram=False)
    without_histogram.add(values)
    assert without_histogram.threshold("minmax") == absmax
    with pytest.raises(ValueError, match="histogram"):
        without_histogram.threshold("kl")


def test_kl_stable_when_tiny_values_appear():
    """Denormal-sized activations must not move the KL threshold (they count as zero)."""
    rng = np.random.default_rng(1)
    values = np.abs(rng.normal(0, 1, 200_000)).astype(np.float32)
    values[::3] = 0.0
    a, b = BlobStats(), BlobStats()
    a.add(values)
    b.add(np.where(values == 0, 1e-30, values).astype(np.float32))
    assert a.scale("kl") == b.scale("kl")
    assert a.scale("minmax") < a.scale("percentile") and a.scale("minmax") < a.scale("kl")
