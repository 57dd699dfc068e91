"""Root-cause ranking: which dimension values explain a metric's change (pure).

A metric is a ratio num / den compared between a window and a baseline window:

    error_rate    num = errors, den = inferences (``inference_hourly`` errors / count)
    wape          num = sum_abs_err, den = sum_actual (``accuracy_hourly``)
    latency_p95   num = slow inferences, den = inferences, where "slow" means slower than
                  the baseline's p95: ``t = slow_share_threshold(baseline_hist)`` over the
                  whole baseline histogram, then for each cell and window
                  ``num = slow_count(hist, t)`` (in SQL: the sum of bucket columns
                  ``b{t+1:02d}`` .. ``b12``) and ``den`` = the sum of all buckets (= count)

The caller sends one ``Cell`` per combination of dimension values (e.g. ``{"model_version":
"demand-lstm:v3", "store": "S0002", "region": "north", "agent_version": "1.4.0",
"hour_of_day": "13"}``) with both windows' sums; a cell missing a dimension counts under
``""`` for it. ``explain`` then works as follows:

    rates         r_w = sum num_w / sum den_w,  r_b = sum num_b / sum den_b
    excess        E = sum num_w - r_b * sum den_w  (what went wrong beyond the baseline rate)
    per value v   e(v) = num_w(v) - r_b(v) * den_w(v), where r_b(v) is v's own baseline rate
                  when v had baseline volume, else r_b (a new version is held to the overall
                  rate); share_of_excess = e(v) / E; share_of_volume = den_w(v) / den_w;
                  score = share_of_excess - share_of_volume (a value carrying all traffic
                  explains nothing specific)
    findings      values with score > min_score, by score descending (ties: share of excess
                  descending, then the order of ``dimensions``, then value); at most ``top``
    no findings   when E <= 0 (within float rounding), or either window has no volume; an
                  evenly spread regression also yields none: nothing specific explains it

Shares within one dimension need not sum to 1: values held to their own baseline rates
differ from the overall rate by the traffic mix.

``explain_counts`` ranks error kinds, which have no denominator of their own: with
``scale = window_total_den / baseline_total_den`` (e.g. inferences served),
e(k) = count_w(k) - count_b(k) * scale, E = sum e(k), share_of_volume = k's share of the
baseline's errors (a kind that grows in step with all others scores 0), window_value =
count_w(k) / window_total_den, baseline_value = count_b(k) / baseline_total_den. Findings of
both functions can be merged with ``rank_findings``.

``detect(metric, window_value, baseline_value)`` raises an incident when the window value
reaches ``threshold(metric, baseline_value)`` = max(factor * baseline, min_value, baseline +
min_increase) and exceeds the baseline; no baseline (None) never detects. Defaults
(``DEFAULT_THRESHOLDS``): error_rate 2x and >= 0.01; wape 1.25x and +0.05; latency_p95 2x
and +1 ms (p95 read from the histogram, so it never exceeds the last bound, 1000 ms).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from storecast.analytics.stats import bucket_of_quantile, ratio

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Cell",
    "Explanation",
    "Finding",
    "Threshold",
    "detect",
    "explain",
    "explain_counts",
    "rank_findings",
    "slow_count",
    "slow_share_threshold",
    "threshold",
]

_REL_EPS = 1e-9  # excess below this fraction of the window numerator is float rounding
_Rates = tuple[float | None, float | None]  # (window, baseline) rate of one value


@dataclass(frozen=True)
class Cell:
    """Sums of one combination of dimension values, in the window and in the baseline."""

    dims: Mapping[str, str]
    window_num: float
    window_den: float
    baseline_num: float
    baseline_den: float

    def __post_init__(self) -> None:
        for name in ("window_num", "window_den", "baseline_num", "baseline_den"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")


@dataclass(frozen=True)
class Finding:
    """One dimension value and how much of the change it explains (as ``schemas.Finding``)."""

    dimension: str
    value: str
    share_of_excess: float  # this value's excess / the total excess
    share_of_volume: float  # this value's share of the window's volume
    score: float  # share_of_excess - share_of_volume
    window_value: float | None  # the value's rate in the window
    baseline_value: float | None  # its own baseline rate (None: absent from the baseline)


@dataclass(frozen=True)
class Explanation:
    """Overall rates, the excess and the ranked findings."""

    window_value: float | None
    baseline_value: float | None
    excess: float  # window numerator minus what the baseline rate predicts
    findings: tuple[Finding, ...] = field(default=())


@dataclass
class _Sums:
    window_num: float = 0.0
    window_den: float = 0.0
    baseline_num: float = 0.0
    baseline_den: float = 0.0

    def add(self, cell: Cell) -> None:
        self.window_num += cell.window_num
        self.window_den += cell.window_den
        self.baseline_num += cell.baseline_num
        self.baseline_den += cell.baseline_den


def _has_excess(excess: float, window_num: float) -> bool:
    return excess > _REL_EPS * max(window_num, 1.0)


def _finding(
    dimension: str, value: str, excess_share: float, volume_share: float, rates: _Rates
) -> Finding:
    score = excess_share - volume_share
    return Finding(dimension, value, excess_share, volume_share, score, *rates)


def rank_findings(
    findings: Iterable[Finding],
    *,
    top: int = 10,
    dimensions: Sequence[str] = (),
    min_score: float = 0.0,
) -> tuple[Finding, ...]:
    """Findings scoring above ``min_score``, best first, at most ``top`` (deterministic)."""
    order = {d: i for i, d in enumerate(dimensions)}

    def key(f: Finding) -> tuple[float, float, int, str, str]:
        return (
            -f.score,
            -f.share_of_excess,
            order.get(f.dimension, len(order)),
            f.dimension,
            f.value,
        )

    return tuple(sorted((f for f in findings if f.score > min_score), key=key)[: max(top, 0)])


def explain(
    cells: Iterable[Cell],
    dimensions: Sequence[str],
    *,
    top: int = 10,
    min_score: float = 0.0,
) -> Explanation:
    """Rank the values of ``dimensions`` by how much more of the excess they hold than volume."""
    total = _Sums()
    by_value: dict[tuple[str, str], _Sums] = defaultdict(_Sums)
    for cell in cells:
        total.add(cell)
        for d in dimensions:
            by_value[d, cell.dims.get(d, "")].add(cell)
    window_rate = ratio(total.window_num, total.window_den)
    baseline_rate = ratio(total.baseline_num, total.baseline_den)
    if baseline_rate is None or window_rate is None:
        return Explanation(window_rate, baseline_rate, 0.0)
    excess = total.window_num - baseline_rate * total.window_den
    if not _has_excess(excess, total.window_num):
        return Explanation(window_rate, baseline_rate, excess)
    findings = []
    for (d, v), s in by_value.items():
        own_baseline = ratio(s.baseline_num, s.baseline_den)
        expected_rate = own_baseline if own_baseline is not None else baseline_rate
        excess_share = (s.window_num - expected_rate * s.window_den) / excess
        rates = (ratio(s.window_num, s.window_den), own_baseline)
        findings.append(_finding(d, v, excess_share, s.window_den / total.window_den, rates))
    ranked = rank_findings(findings, top=top, dimensions=dimensions, min_score=min_score)
    return Explanation(window_rate, baseline_rate, excess, ranked)


def explain_counts(
    window: Mapping[str, float],
    baseline: Mapping[str, float],
    window_total_den: float,
    baseline_total_den: float,
    *,
    dimension: str = "error_kind",
    top: int = 10,
    min_score: float = 0.0,
) -> Explanation:
    """Rank error kinds (counts without a denominator of their own) by their excess."""
    for counts in (window, baseline):
        if any(not math.isfinite(c) or c < 0 for c in counts.values()):
            raise ValueError("counts must be finite numbers >= 0")
    if window_total_den < 0 or baseline_total_den < 0:
        raise ValueError("denominators must be >= 0")
    window_count, baseline_count = sum(window.values()), sum(baseline.values())
    window_rate = ratio(window_count, window_total_den)
    baseline_rate = ratio(baseline_count, baseline_total_den)
    if baseline_rate is None:
        return Explanation(window_rate, baseline_rate, 0.0)
    scale = window_total_den / baseline_total_den
    excess = window_count - baseline_count * scale
    if not _has_excess(excess, window_count):
        return Explanation(window_rate, baseline_rate, excess)
    findings = []
    for kind in sorted(set(window) | set(baseline)):
        count_w, count_b = window.get(kind, 0.0), baseline.get(kind, 0.0)
        excess_share = (count_w - count_b * scale) / excess
        volume_share = count_b / baseline_count if baseline_count > 0 else 0.0
        rates = (ratio(count_w, window_total_den), ratio(count_b, baseline_total_den))
        findings.append(_finding(dimension, kind, excess_share, volume_share, rates))
    ranked = rank_findings(findings, top=top, min_score=min_score)
    return Explanation(window_rate, baseline_rate, excess, ranked)


# -- latency as a ratio --------------------------------------------------------------------------


def slow_share_threshold(baseline_hist: Sequence[int], q: float = 0.95) -> int | None:
    """Bucket index holding the baseline's ``q``-quantile; buckets above it count as slow.

    None when the baseline is empty or its quantile already sits in the overflow bucket
    (nothing can be measured as slower).
    """
    i = bucket_of_quantile(baseline_hist, q)
    return None if i is None or i == len(baseline_hist) - 1 else i


def slow_count(hist: Sequence[int], threshold_bucket: int) -> int:
    """Inferences in the buckets above ``threshold_bucket`` (the latency ratio's numerator)."""
    return sum(hist[threshold_bucket + 1 :])


# -- incident detection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """When a window value is an incident: all three conditions must hold."""

    factor: float  # window >= factor * baseline
    min_value: float = 0.0  # window >= this, whatever the baseline
    min_increase: float = 0.0  # window >= baseline + this


DEFAULT_THRESHOLDS: Mapping[str, Threshold] = MappingProxyType(
    {
        "error_rate": Threshold(factor=2.0, min_value=0.01),  # errors / inferences
        "wape": Threshold(factor=1.25, min_increase=0.05),
        "latency_p95": Threshold(factor=2.0, min_increase=1.0),  # ms
    }
)


def threshold(
    metric: str,
    baseline_value: float | None,
    thresholds: Mapping[str, Threshold] = DEFAULT_THRESHOLDS,
) -> float | None:
    """The value ``metric`` must reach in the window to be an incident; None without baseline."""
    if metric not in thresholds:
        raise ValueError(f"no threshold for metric {metric!r}")
    if baseline_value is None:
        return None
    t = thresholds[metric]
    return max(t.factor * baseline_value, t.min_value, baseline_value + t.min_increase)


def detect(
    metric: str,
    window_value: float | None,
    baseline_value: float | None,
    *,
    thresholds: Mapping[str, Threshold] = DEFAULT_THRESHOLDS,
) -> bool:
    """Whether the window value is an incident against the baseline."""
    limit = threshold(metric, baseline_value, thresholds)
    if limit is None or window_value is None or baseline_value is None:
        return False
    return window_value >= limit and window_value > baseline_value
