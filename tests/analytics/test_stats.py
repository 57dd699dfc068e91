"""Percentiles from histograms, accuracy from sums and WAPE confidence intervals."""

from __future__ import annotations

import numpy as np
import pytest

from storecast.analytics.stats import (
    AccuracyStats,
    accuracy,
    bucket_of_quantile,
    latency_summary,
    percentile_from_histogram,
    ratio,
    t_quantile,
    wape_bootstrap_interval,
    wape_difference_interval,
    wape_interval,
)
from storecast.common.telemetry import HIST_BUCKETS, LATENCY_BOUNDS_MS

BOUNDS = np.asarray(LATENCY_BOUNDS_MS)


def histogram(samples: np.ndarray) -> list[int]:
    """Bucket samples like a device does: upper bounds inclusive, one overflow bucket."""
    idx = np.searchsorted(BOUNDS, samples, side="left")
    return [int(c) for c in np.bincount(idx, minlength=HIST_BUCKETS)]


# -- percentiles -------------------------------------------------------------------------------


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
@pytest.mark.parametrize("median_ms", [0.8, 4.0, 40.0])
def test_percentile_lies_in_the_bucket_of_the_true_sample_percentile(q, median_ms):
    rng = np.random.default_rng(7)
    samples = rng.lognormal(np.log(median_ms), 0.8, size=20_000)
    estimate = percentile_from_histogram(histogram(samples), LATENCY_BOUNDS_MS, q)
    true = float(np.quantile(samples, q))
    assert estimate is not None
    true_bucket = int(np.searchsorted(BOUNDS, true, side="left"))
    lower = BOUNDS[true_bucket - 1] if true_bucket > 0 else 0.0
    upper = BOUNDS[true_bucket] if true_bucket < len(BOUNDS) else BOUNDS[-1]
    assert lower <= estimate <= upper


def test_percentile_interpolates_linearly_within_the_bucket():
    counts = [0] * HIST_BUCKETS
    counts[2] = 10  # (0.5, 1.0]
    assert percentile_from_histogram(counts, LATENCY_BOUNDS_MS, 0.5) == pytest.approx(0.75)
    assert percentile_from_histogram(counts, LATENCY_BOUNDS_MS, 1.0) == pytest.approx(1.0)
    assert percentile_from_histogram(counts, LATENCY_BOUNDS_MS, 0.0) == pytest.approx(0.5)


def test_first_bucket_starts_at_zero():
    counts = [4] + [0] * (HIST_BUCKETS - 1)
    assert percentile_from_histogram(counts, LATENCY_BOUNDS_MS, 0.5) == pytest.approx(0.125)


def test_percentile_in_the_overflow_bucket_reports_the_last_bound():
    counts = [1] + [0] * (HIST_BUCKETS - 2) + [99]
    assert percentile_from_histogram(counts, LATENCY_BOUNDS_MS, 0.95) == LATENCY_BOUNDS_MS[-1]


def test_percentile_skips_empty_buckets_before_the_target():
    counts = [0] * HIST_BUCKETS
    counts[1], counts[5] = 5, 5
    # rank 5 of 10 ends exactly at bucket 1's top; rank 5.5 lies in bucket 5 (3, 5].
    assert percentile_from_histogram(counts, LATENCY_BOUNDS_MS, 0.5) == pytest.approx(0.5)
    assert percentile_from_histogram(counts, LATENCY_BOUNDS_MS, 0.55) == pytest.approx(3.2)


def test_empty_histogram_has_no_percentiles():
    assert percentile_from_histogram([0] * HIST_BUCKETS, LATENCY_BOUNDS_MS, 0.5) is None
    assert bucket_of_quantile([0] * HIST_BUCKETS, 0.5) is None
    assert latency_summary([0] * HIST_BUCKETS) == (None, None, None)


def test_latency_summary_is_p50_p95_p99_in_order():
    samples = np.random.default_rng(1).lognormal(np.log(5.0), 1.0, size=5000)
    p50, p95, p99 = latency_summary(histogram(samples))
    assert p50 is not None and p95 is not None and p99 is not None
    assert p50 < p95 <= p99


@pytest.mark.parametrize(
    ("counts", "q"),
    [
        ([1] * (HIST_BUCKETS - 1), 0.5),  # one bucket short
        ([1] * HIST_BUCKETS, 1.5),
        ([1] * HIST_BUCKETS, -0.1),
        ([-1] + [1] * (HIST_BUCKETS - 1), 0.5),
    ],
)
def test_percentile_refuses_malformed_input(counts, q):
    with pytest.raises(ValueError):
        percentile_from_histogram(counts, LATENCY_BOUNDS_MS, q)


# -- ratios and accuracy -------------------------------------------------------------------------


def test_ratio_is_none_for_a_zero_denominator():
    assert ratio(3, 4) == 0.75
    assert ratio(0, 0) is None
    assert ratio(5, 0) is None


def test_accuracy_from_sums():
    got = accuracy(points=10, sum_actual=200.0, sum_q50=220.0, sum_abs_err=50.0, covered=8)
    assert got == AccuracyStats(points=10, wape=0.25, bias=0.1, coverage_80=0.8)


def test_accuracy_without_actual_sales_has_no_wape_or_bias():
    got = accuracy(points=3, sum_actual=0.0, sum_q50=5.0, sum_abs_err=5.0, covered=1)
    assert got.wape is None and got.bias is None
    assert got.coverage_80 == pytest.approx(1 / 3)


def test_accuracy_without_points_is_all_none():
    assert accuracy(0, 0.0, 0.0, 0.0, 0) == AccuracyStats(0, None, None, None)


# -- Student t ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "p", "expected"),
    [
        (1, 0.975, 12.7062),
        (2, 0.975, 4.3027),
        (3, 0.975, 3.1824),
        (5, 0.975, 2.5706),
        (10, 0.995, 3.1693),
        (30, 0.975, 2.0423),
        (100, 0.975, 1.9840),
        (101, 0.975, 1.9837),  # first degree of freedom on the Cornish-Fisher path
        (1000, 0.975, 1.9623),
        (7, 0.025, -2.3646),
    ],
)
def test_t_quantile_matches_published_tables(df, p, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(("p", "df"), [(0.0, 5), (1.0, 5), (0.5, 0)])
def test_t_quantile_refuses_out_of_range_arguments(p, df):
    with pytest.raises(ValueError):
        t_quantile(p, df)


# -- WAPE intervals ------------------------------------------------------------------------------


def stores(rng: np.random.Generator, n: int, wape: float = 0.25) -> list[tuple[float, float]]:
    """Per-store (sum_abs_err, sum_actual) with a population WAPE of ``wape``."""
    actual = rng.gamma(2.0, 500.0, size=n)
    store_wape = wape * rng.gamma(4.0, 0.25, size=n)  # mean 1 multiplier, independent of size
    return [(float(e), float(a)) for e, a in zip(actual * store_wape, actual, strict=True)]


@pytest.mark.parametrize("clusters", [[], [(10.0, 100.0)], [(1.0, 0.0), (2.0, 0.0)]])
def test_wape_interval_needs_two_stores_with_sales(clusters):
    assert wape_interval(clusters) is None
    assert wape_bootstrap_interval(clusters, rng=np.random.default_rng(0)) is None


def test_wape_interval_contains_the_point_estimate():
    data = stores(np.random.default_rng(3), 12)
    low, high = wape_interval(data) or (0.0, 0.0)
    point = sum(e for e, _ in data) / sum(a for _, a in data)
    assert 0.0 <= low < point < high


def test_wape_interval_of_identical_stores_has_no_width():
    assert wape_interval([(2.0, 10.0)] * 5) == pytest.approx((0.2, 0.2))


def test_wape_interval_widens_with_confidence():
    data = stores(np.random.default_rng(4), 15)
    low90, high90 = wape_interval(data, 0.90) or (0.0, 0.0)
    low99, high99 = wape_interval(data, 0.99) or (0.0, 0.0)
    assert low99 < low90 and high90 < high99


def test_wape_interval_covers_the_true_wape_about_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    hits = 0
    trials = 1000
    for _ in range(trials):
        low, high = wape_interval(stores(rng, 30)) or (0.0, 0.0)
        hits += low <= 0.25 <= high
    assert 0.92 <= hits / trials <= 0.975


def test_wape_interval_agrees_with_the_cluster_bootstrap():
    data = stores(np.random.default_rng(5), 40)
    delta = wape_interval(data)
    boot = wape_bootstrap_interval(data, rng=np.random.default_rng(6), resamples=4000)
    assert delta is not None and boot is not None
    width_delta, width_boot = delta[1] - delta[0], boot[1] - boot[0]
    assert 0.8 < width_boot / width_delta < 1.25
    assert abs(sum(boot) / 2 - sum(delta) / 2) < 0.15 * width_delta


def test_wape_bootstrap_is_reproducible_with_the_same_seed():
    data = stores(np.random.default_rng(5), 20)
    first = wape_bootstrap_interval(data, rng=np.random.default_rng(9))
    again = wape_bootstrap_interval(data, rng=np.random.default_rng(9))
    assert first == again


def test_wape_difference_is_b_minus_a():
    a = [(20.0, 100.0), (30.0, 100.0), (25.0, 100.0)]
    b = [(10.0, 100.0), (15.0, 100.0), (20.0, 100.0)]
    diff = wape_difference_interval(a, b)
    assert diff is not None
    assert diff.estimate == pytest.approx(0.15 - 0.25)
    assert diff.low < diff.estimate < diff.high


def test_wape_difference_needs_two_stores_in_each_arm():
    two = [(1.0, 10.0), (2.0, 10.0)]
    assert wape_difference_interval(two, two[:1]) is None
    assert wape_difference_interval([], two) is None


def test_wape_difference_detects_a_planted_improvement():
    rng = np.random.default_rng(12)
    diff = wape_difference_interval(stores(rng, 40, wape=0.30), stores(rng, 40, wape=0.20))
    assert diff is not None and diff.significant and diff.high < 0


def test_wape_difference_interval_covers_the_true_difference_about_95_percent():
    rng = np.random.default_rng(13)
    hits = 0
    trials = 600
    for _ in range(trials):
        diff = wape_difference_interval(stores(rng, 15, wape=0.3), stores(rng, 25, wape=0.2))
        assert diff is not None
        hits += diff.low <= -0.1 <= diff.high
    assert 0.91 <= hits / trials <= 0.98


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95.0])
def test_intervals_refuse_a_confidence_outside_zero_one(confidence):
    data = [(1.0, 10.0), (2.0, 10.0)]
    with pytest.raises(ValueError):
        wape_interval(data, confidence)
    with pytest.raises(ValueError):
        wape_difference_interval(data, data, confidence)
