"""Statistics over the analytics rollups: percentiles, accuracy, WAPE intervals (pure).

Every function takes sums or counts as read from the hourly tables and returns plain
numbers; ``None`` means "not computable from this data" (nothing observed, a zero
denominator, too few stores), never zero.

Histograms (``inference_hourly`` b00..b12) have ``len(bounds) + 1`` buckets: bucket ``i``
holds values in ``(bounds[i-1], bounds[i]]`` (the first starts at 0), the last one holds
everything above ``bounds[-1]``.

    bucket_of_quantile(counts, q) -> int | None    bucket holding the q-quantile
    percentile_from_histogram(counts, bounds, q)   linear interpolation inside that bucket;
        a quantile in the overflow bucket is reported as ``bounds[-1]`` (the true value is
        unknown but at least that), as Prometheus' ``histogram_quantile`` does
    latency_summary(counts) -> (p50, p95, p99)     over ``LATENCY_BOUNDS_MS``, in ms
    ratio(num, den)                                num / den, None when den == 0
    accuracy(points, sum_actual, sum_q50, sum_abs_err, covered) -> AccuracyStats
        wape = sum_abs_err / sum_actual, bias = (sum_q50 - sum_actual) / sum_actual
        (None when sum_actual == 0), coverage_80 = covered / points (None when points == 0)

WAPE intervals treat stores as clusters: ``per_cluster`` is one ``(sum_abs_err,
sum_actual)`` pair per store over the window. WAPE is the ratio estimator
R = sum(e) / sum(a); its linearised (delta-method) variance over n clusters is
``n / (n - 1) * sum((e_i - R * a_i)**2) / sum(a)**2`` and the interval is
``R ± t(n - 1) * se`` with the lower end clamped at 0.

    wape_interval(per_cluster, confidence=0.95) -> (low, high) | None   (< 2 clusters: None)
    wape_difference_interval(a_clusters, b_clusters, confidence=0.95) -> WapeDifference | None
        B - A for two independent arms; se = sqrt(se_a² + se_b²), Welch-Satterthwaite
        degrees of freedom (rounded down)
    wape_bootstrap_interval(per_cluster, confidence, *, rng, resamples=2000)
        percentile bootstrap over clusters; deterministic for a seeded Generator
    t_quantile(p, df)                              Student t quantile (no scipy needed)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from storecast.common.telemetry import LATENCY_BOUNDS_MS

__all__ = [
    "AccuracyStats",
    "WapeDifference",
    "accuracy",
    "bucket_of_quantile",
    "latency_summary",
    "percentile_from_histogram",
    "ratio",
    "t_quantile",
    "wape_bootstrap_interval",
    "wape_difference_interval",
    "wape_interval",
]

_EXACT_T_MAX_DF = 100  # above this, the Cornish-Fisher expansion is exact to ~1e-9


# -- histograms ------------------------------------------------------------------------------


def bucket_of_quantile(counts: Sequence[int], q: float) -> int | None:
    """Index of the bucket holding the ``q``-quantile (0..1) of ``counts``; None when empty."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    if any(c < 0 for c in counts):
        raise ValueError("histogram counts must not be negative")
    total = sum(counts)
    if total == 0:
        return None
    target = q * total
    cumulative = 0
    for i, c in enumerate(counts):
        cumulative += c
        if c > 0 and cumulative >= target:
            return i
    return len(counts) - 1  # unreachable: the last non-empty bucket reaches the total


def percentile_from_histogram(
    counts: Sequence[int], bounds: Sequence[float], q: float
) -> float | None:
    """The ``q``-quantile (0..1) of a fixed-bucket histogram; None when it is empty."""
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"{len(counts)} counts for {len(bounds)} bounds (want bounds + 1)")
    i = bucket_of_quantile(counts, q)
    if i is None:
        return None
    if i == len(bounds):
        return float(bounds[-1])
    lower = float(bounds[i - 1]) if i > 0 else 0.0
    upper = float(bounds[i])
    before = sum(counts[:i])
    fraction = (q * sum(counts) - before) / counts[i]
    return lower + (upper - lower) * min(max(fraction, 0.0), 1.0)


def latency_summary(counts: Sequence[int]) -> tuple[float | None, float | None, float | None]:
    """(p50, p95, p99) in milliseconds from a latency histogram over ``LATENCY_BOUNDS_MS``."""
    p50, p95, p99 = (
        percentile_from_histogram(counts, LATENCY_BOUNDS_MS, q) for q in (0.5, 0.95, 0.99)
    )
    return p50, p95, p99


# -- ratios and accuracy ---------------------------------------------------------------------


def ratio(num: float, den: float) -> float | None:
    """``num / den``, or None when the denominator is zero."""
    return num / den if den != 0 else None


@dataclass(frozen=True)
class AccuracyStats:
    """Forecast accuracy from the sums (fields as in ``schemas.Accuracy``)."""

    points: int  # forecast hours with an actual
    wape: float | None  # sum |q50 - actual| / sum actual
    bias: float | None  # (sum q50 - sum actual) / sum actual; > 0 over-forecasts
    coverage_80: float | None  # share of actuals within [q10, q90]


def accuracy(
    points: int, sum_actual: float, sum_q50: float, sum_abs_err: float, covered: int
) -> AccuracyStats:
    """WAPE, bias and 80% interval coverage from the ``accuracy_hourly`` sums."""
    if points == 0:
        return AccuracyStats(points=0, wape=None, bias=None, coverage_80=None)
    return AccuracyStats(
        points=points,
        wape=ratio(sum_abs_err, sum_actual),
        bias=ratio(sum_q50 - sum_actual, sum_actual),
        coverage_80=ratio(covered, points),
    )


# -- Student t ---------------------------------------------------------------------------------


def _t_central_mass(theta: float, df: int) -> float:
    """P(|T| <= sqrt(df) * tan(theta)) for integer df (Abramowitz & Stegun 26.7.3-4)."""
    s, c = math.sin(theta), math.cos(theta)
    c2 = c * c
    term = total = 1.0
    if df % 2 == 1:
        if df == 1:
            return 2.0 * theta / math.pi
        for k in range(1, (df - 1) // 2):
            term *= 2 * k / (2 * k + 1) * c2
            total += term
        return 2.0 / math.pi * (theta + s * c * total)
    for k in range(1, df // 2):
        term *= (2 * k - 1) / (2 * k) * c2
        total += term
    return s * total


def _t_quantile_exact(p: float, df: int) -> float:
    mass = abs(2.0 * p - 1.0)  # central mass P(|T| <= t) the quantile bounds
    lo, hi = 0.0, math.pi / 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if _t_central_mass(mid, df) < mass:
            lo = mid
        else:
            hi = mid
    t = math.sqrt(df) * math.tan((lo + hi) / 2)
    return t if p >= 0.5 else -t


def _t_quantile_cornish_fisher(p: float, df: float) -> float:
    z = NormalDist().inv_cdf(p)  # Abramowitz & Stegun 26.7.5
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def t_quantile(p: float, df: int) -> float:
    """The ``p``-quantile (0 < p < 1) of Student's t with ``df >= 1`` degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be within (0, 1), got {p}")
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df > _EXACT_T_MAX_DF:
        return _t_quantile_cornish_fisher(p, df)
    return _t_quantile_exact(p, df)


# -- WAPE confidence intervals ------------------------------------------------------------------


def _ratio_and_variance(per_cluster: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(R, Var(R)) of the cluster ratio estimator; None below 2 clusters or zero actuals."""
    n = len(per_cluster)
    total_err = sum(e for e, _ in per_cluster)
    total_actual = sum(a for _, a in per_cluster)
    if n < 2 or total_actual <= 0:
        return None
    r = total_err / total_actual
    residual_ss = sum((e - r * a) ** 2 for e, a in per_cluster)
    return r, n / (n - 1) * residual_ss / total_actual**2


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")


def wape_interval(
    per_cluster: Sequence[tuple[float, float]], confidence: float = 0.95
) -> tuple[float, float] | None:
    """Confidence interval of WAPE over stores given as ``(sum_abs_err, sum_actual)`` pairs."""
    _check_confidence(confidence)
    estimate = _ratio_and_variance(per_cluster)
    if estimate is None:
        return None
    r, var = estimate
    half = t_quantile(0.5 + confidence / 2, len(per_cluster) - 1) * math.sqrt(var)
    return max(r - half, 0.0), r + half


@dataclass(frozen=True)
class WapeDifference:
    """WAPE of arm B minus arm A, with its confidence interval."""

    estimate: float  # wape_b - wape_a; < 0 means B is more accurate
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero."""
        return self.low > 0.0 or self.high < 0.0


def wape_difference_interval(
    a_clusters: Sequence[tuple[float, float]],
    b_clusters: Sequence[tuple[float, float]],
    confidence: float = 0.95,
) -> WapeDifference | None:
    """WAPE(B) - WAPE(A) with a confidence interval, for two independent sets of stores."""
    _check_confidence(confidence)
    a = _ratio_and_variance(a_clusters)
    b = _ratio_and_variance(b_clusters)
    if a is None or b is None:
        return None
    (r_a, var_a), (r_b, var_b) = a, b
    var = var_a + var_b
    diff = r_b - r_a
    if var == 0:
        return WapeDifference(estimate=diff, low=diff, high=diff)
    welch_df = var**2 / (var_a**2 / (len(a_clusters) - 1) + var_b**2 / (len(b_clusters) - 1))
    half = t_quantile(0.5 + confidence / 2, max(1, math.floor(welch_df))) * math.sqrt(var)
    return WapeDifference(estimate=diff, low=diff - half, high=diff + half)


def wape_bootstrap_interval(
    per_cluster: Sequence[tuple[float, float]],
    confidence: float = 0.95,
    *,
    rng: np.random.Generator,
    resamples: int = 2000,
) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of WAPE, resampling whole stores with ``rng``."""
    _check_confidence(confidence)
    n = len(per_cluster)
    if n < 2 or sum(a for _, a in per_cluster) <= 0:
        return None
    data = np.asarray(per_cluster, dtype=float)  # (n, 2): abs_err, actual
    ratios: list[np.ndarray] = []
    chunk = max(1, 1_000_000 // n)  # bound the (resamples, n) index array to ~8 MB
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        err, act = data[idx, 0].sum(axis=1), data[idx, 1].sum(axis=1)
        ratios.append(err[act > 0] / act[act > 0])
    values = np.concatenate(ratios)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)
