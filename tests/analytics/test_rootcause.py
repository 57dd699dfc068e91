"""Root-cause ranking on planted faults, edge cases and incident thresholds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pytest

from storecast.analytics.rootcause import (
    DEFAULT_THRESHOLDS,
    Cell,
    Explanation,
    Finding,
    Threshold,
    detect,
    explain,
    explain_counts,
    rank_findings,
    slow_count,
    slow_share_threshold,
    threshold,
)
from storecast.common.telemetry import HIST_BUCKETS, LATENCY_BOUNDS_MS

DIMENSIONS = ("model_version", "store", "region", "agent_version", "hour_of_day")
REGIONS = ("north", "south", "east", "west")
OLD_MODEL, NEW_MODEL = "demand-lstm:v2", "demand-lstm:v3"
OLD_AGENT, NEW_AGENT = "1.3.0", "1.4.0"


@dataclass(frozen=True)
class Device:
    """One store's device in one window: what it runs."""

    store: str
    region: str
    model: str
    agent: str

    def dims(self, hour: int) -> dict[str, str]:
        return {
            "model_version": self.model,
            "store": self.store,
            "region": self.region,
            "agent_version": self.agent,
            "hour_of_day": str(hour),
        }


def fleet(rng: np.random.Generator, *, model: str = OLD_MODEL) -> list[Device]:
    """20 stores in 4 regions, one device each, all on ``model`` and the old agent."""
    return [Device(f"S{i:04d}", REGIONS[i % 4], model, OLD_AGENT) for i in range(20)]


def upgrade(
    devices: list[Device], share: float, rng: np.random.Generator, **change: str
) -> list[Device]:
    """The fleet with a random ``share`` of devices changed (e.g. ``model=NEW_MODEL``)."""
    chosen = set(rng.choice(len(devices), size=round(share * len(devices)), replace=False))
    return [replace(d, **change) if i in chosen else d for i, d in enumerate(devices)]


Rate = Callable[[Device, int], float]


def healthy(device: Device, hour: int) -> float:
    return 0.002


def error_cells(
    rng: np.random.Generator,
    baseline: list[Device],
    window: list[Device],
    window_rate: Rate,
    baseline_rate: Rate = healthy,
) -> list[Cell]:
    """Inference errors/count per store-hour (a day each), both windows on the same keys."""
    cells: dict[tuple[tuple[str, str], ...], list[float]] = {}
    for devices, rate, offset in ((baseline, baseline_rate, 2), (window, window_rate, 0)):
        for d in devices:
            for hour in range(24):
                count = int(rng.poisson(40 + 40 * (8 <= hour <= 20)))
                errors = int(rng.binomial(count, rate(d, hour)))
                sums = cells.setdefault(tuple(sorted(d.dims(hour).items())), [0.0] * 4)
                sums[offset] += errors
                sums[offset + 1] += count
    return [Cell(dict(k), *v) for k, v in cells.items()]


def top(explanation: Explanation) -> tuple[str, str]:
    assert explanation.findings, "expected findings"
    first = explanation.findings[0]
    return first.dimension, first.value


# -- planted faults: error rate --------------------------------------------------------------------


def test_a_bad_model_version_on_30_percent_of_stores_ranks_first():
    rng = np.random.default_rng(1)
    before = fleet(rng)
    after = upgrade(before, 0.3, rng, model=NEW_MODEL)
    cells = error_cells(rng, before, after, lambda d, h: 0.10 if d.model == NEW_MODEL else 0.002)
    result = explain(cells, DIMENSIONS)
    assert top(result) == ("model_version", NEW_MODEL)
    finding = result.findings[0]
    assert finding.share_of_excess == pytest.approx(1.0, abs=0.05)
    assert finding.share_of_volume == pytest.approx(0.3, abs=0.05)
    assert finding.baseline_value is None  # new in the window: held to the overall rate
    assert result.window_value is not None and result.baseline_value is not None
    assert result.window_value > 10 * result.baseline_value


def test_one_broken_store_ranks_first_ahead_of_its_region():
    rng = np.random.default_rng(2)
    devices = upgrade(fleet(rng), 0.5, rng, model=NEW_MODEL)  # both versions, both windows
    cells = error_cells(rng, devices, devices, lambda d, h: 0.2 if d.store == "S0007" else 0.002)
    result = explain(cells, DIMENSIONS)
    assert top(result) == ("store", "S0007")
    assert result.findings[1] == next(f for f in result.findings if f.dimension == "region")
    assert result.findings[1].value == "west"


def test_a_bad_agent_version_on_40_percent_of_devices_ranks_first():
    rng = np.random.default_rng(3)
    before = upgrade(fleet(rng), 0.5, rng, model=NEW_MODEL)
    after = upgrade(before, 0.4, rng, agent=NEW_AGENT)
    cells = error_cells(rng, before, after, lambda d, h: 0.05 if d.agent == NEW_AGENT else 0.002)
    assert top(explain(cells, DIMENSIONS)) == ("agent_version", NEW_AGENT)


def test_a_fault_in_one_hour_of_day_ranks_that_hour_first():
    rng = np.random.default_rng(4)
    devices = fleet(rng)
    cells = error_cells(rng, devices, devices, lambda d, h: 0.3 if h == 13 else 0.002)
    assert top(explain(cells, DIMENSIONS)) == ("hour_of_day", "13")


def test_a_version_already_bad_in_the_baseline_explains_no_change():
    rng = np.random.default_rng(5)
    devices = upgrade(fleet(rng), 0.3, rng, model=NEW_MODEL)
    bad_v3: Rate = lambda d, h: 0.05 if d.model == NEW_MODEL else 0.002  # noqa: E731
    store_fault: Rate = lambda d, h: 0.2 if d.store == "S0003" else bad_v3(d, h)  # noqa: E731
    cells = error_cells(rng, devices, devices, store_fault, baseline_rate=bad_v3)
    assert top(explain(cells, DIMENSIONS)) == ("store", "S0003")


# -- planted faults: WAPE and latency -----------------------------------------------------------


def test_a_biased_model_version_ranks_first_for_wape():
    rng = np.random.default_rng(6)
    before = fleet(rng)
    after = upgrade(before, 0.3, rng, model=NEW_MODEL)
    cells: dict[tuple[tuple[str, str], ...], list[float]] = {}
    for devices, offset in ((before, 2), (after, 0)):
        for d in devices:
            for hour in range(24):
                actual = float(rng.gamma(4.0, 10.0 + 20 * (8 <= hour <= 20)))
                wape = 0.45 if d.model == NEW_MODEL else 0.2
                abs_err = actual * wape * float(rng.gamma(8.0, 1 / 8))
                sums = cells.setdefault(tuple(sorted(d.dims(hour).items())), [0.0] * 4)
                sums[offset] += abs_err
                sums[offset + 1] += actual
    result = explain([Cell(dict(k), *v) for k, v in cells.items()], DIMENSIONS)
    assert top(result) == ("model_version", NEW_MODEL)
    assert detect("wape", result.window_value, result.baseline_value)


def test_a_slow_model_version_ranks_first_for_latency_via_the_histogram_threshold():
    rng = np.random.default_rng(7)
    before = fleet(rng)
    after = upgrade(before, 0.3, rng, model=NEW_MODEL)
    bounds = np.asarray(LATENCY_BOUNDS_MS)
    hists: dict[tuple[tuple[str, str], ...], list[np.ndarray]] = {}
    for devices, offset in ((before, 1), (after, 0)):
        for d in devices:
            for hour in range(24):
                median = 30.0 if d.model == NEW_MODEL else 3.0
                samples = rng.lognormal(np.log(median), 0.5, size=int(rng.poisson(60)))
                hist = np.bincount(np.searchsorted(bounds, samples), minlength=HIST_BUCKETS)
                key = tuple(sorted(d.dims(hour).items()))
                hists.setdefault(key, [np.zeros(HIST_BUCKETS, int), np.zeros(HIST_BUCKETS, int)])
                hists[key][offset] += hist
    baseline_total = [int(c) for c in sum(h[1] for h in hists.values())]
    t = slow_share_threshold(baseline_total)
    assert t is not None
    cells = [
        Cell(
            dict(k),
            slow_count(w.tolist(), t),
            int(w.sum()),
            slow_count(b.tolist(), t),
            int(b.sum()),
        )
        for k, (w, b) in hists.items()
    ]
    result = explain(cells, DIMENSIONS)
    assert result.baseline_value is not None and result.baseline_value <= 0.05
    assert top(result) == ("model_version", NEW_MODEL)


def test_slow_share_threshold_is_the_bucket_of_the_baseline_p95():
    hist = [0] * HIST_BUCKETS
    hist[4], hist[6] = 94, 6  # p95 in bucket 6, nothing above it is slow yet
    assert slow_share_threshold(hist) == 6
    assert slow_count(hist, 4) == 6
    assert slow_count(hist, 6) == 0


def test_slow_share_threshold_is_none_when_the_p95_overflows_or_nothing_was_served():
    assert slow_share_threshold([0] * HIST_BUCKETS) is None
    assert slow_share_threshold([1] + [0] * (HIST_BUCKETS - 2) + [99]) is None


# -- no excess and edge cases ---------------------------------------------------------------------


def test_an_unchanged_window_has_no_findings():
    rng = np.random.default_rng(8)
    devices = upgrade(fleet(rng), 0.5, rng, model=NEW_MODEL)
    cells = [
        Cell(c.dims, c.baseline_num, c.baseline_den, c.baseline_num, c.baseline_den)
        for c in error_cells(rng, devices, devices, healthy)
    ]
    assert explain(cells, DIMENSIONS).findings == ()


def test_an_improved_window_has_no_findings():
    rng = np.random.default_rng(9)
    devices = fleet(rng)
    cells = error_cells(rng, devices, devices, lambda d, h: 0.0, baseline_rate=lambda d, h: 0.05)
    result = explain(cells, DIMENSIONS)
    assert result.excess < 0
    assert result.findings == ()


def test_an_evenly_spread_regression_names_no_specific_value():
    cells = [
        Cell({"store": s}, window_num=20, window_den=1000, baseline_num=2, baseline_den=1000)
        for s in ("S1", "S2", "S3", "S4")
    ]
    result = explain(cells, ["store"])
    assert result.excess == pytest.approx(72.0)
    assert result.findings == ()


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        pytest.param([], Explanation(None, None, 0.0), id="empty input"),
        pytest.param(
            [Cell({"store": "S1"}, 0, 0, 0, 0)], Explanation(None, None, 0.0), id="zero volume"
        ),
        pytest.param(
            [Cell({"store": "S1"}, 5, 100, 0, 0)],
            Explanation(0.05, None, 0.0),
            id="no baseline volume",
        ),
        pytest.param(
            [Cell({"store": "S1"}, 0, 0, 5, 100)],
            Explanation(None, 0.05, 0.0),
            id="no window volume",
        ),
    ],
)
def test_without_volume_in_both_windows_there_is_nothing_to_explain(cells, expected):
    assert explain(cells, ["store"]) == expected


def test_a_value_new_in_the_window_is_held_to_the_overall_baseline_rate():
    cells = [
        Cell(
            {"model_version": "v2"}, window_num=1, window_den=500, baseline_num=1, baseline_den=1000
        ),
        Cell(
            {"model_version": "v3"}, window_num=51, window_den=500, baseline_num=0, baseline_den=0
        ),
    ]
    result = explain(cells, ["model_version"])
    assert result.excess == pytest.approx(52 - 0.001 * 1000)
    v3 = result.findings[0]
    assert (v3.value, v3.baseline_value, v3.window_value) == ("v3", None, pytest.approx(0.102))
    assert v3.share_of_excess == pytest.approx((51 - 0.5) / 51)
    assert v3.share_of_volume == 0.5


def test_a_value_only_in_the_baseline_explains_nothing():
    cells = [
        Cell(
            {"model_version": "v1"}, window_num=0, window_den=0, baseline_num=1, baseline_den=1000
        ),
        Cell(
            {"model_version": "v2"}, window_num=40, window_den=1000, baseline_num=0, baseline_den=0
        ),
    ]
    result = explain(cells, ["model_version"])
    assert [f.value for f in result.findings] == []  # v2 carries all traffic: score 0


def test_errors_without_volume_count_as_excess():
    # WAPE: forecasting sales in hours that sold nothing is all error, no denominator.
    cells = [
        Cell({"store": "S1"}, window_num=30, window_den=0, baseline_num=10, baseline_den=100),
        Cell({"store": "S2"}, window_num=10, window_den=100, baseline_num=10, baseline_den=100),
    ]
    result = explain(cells, ["store"])
    s1 = result.findings[0]
    assert (s1.value, s1.window_value, s1.share_of_volume) == ("S1", None, 0.0)
    assert s1.share_of_excess == pytest.approx(1.0)


def test_a_cell_missing_a_dimension_counts_under_the_empty_value():
    cells = [
        Cell({"agent_version": "1.4.0"}, 10, 100, 1, 100),
        Cell({}, 50, 100, 1, 100),
    ]
    assert top(explain(cells, ["agent_version"])) == ("agent_version", "")


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_cell_refuses_negative_or_non_finite_sums(bad):
    with pytest.raises(ValueError):
        Cell({}, window_num=bad, window_den=1, baseline_num=0, baseline_den=1)


def test_findings_are_ranked_deterministically_and_cut_at_top():
    cells = [Cell({"a": v, "b": v}, 10, 10, 0, 10) for v in "xyz"] + [
        Cell({"a": "w", "b": "w"}, 0, 70, 0, 70)
    ]
    result = explain(cells, ["b", "a"], top=4)
    assert [(f.dimension, f.value) for f in result.findings] == [
        ("b", "x"),
        ("b", "y"),
        ("b", "z"),
        ("a", "x"),
    ]
    assert explain(cells, ["b", "a"], top=0).findings == ()


def test_rank_findings_merges_explanations_by_score():
    f = Finding("store", "S1", 0.5, 0.1, 0.4, None, None)
    g = Finding("error_kind", "oom", 0.9, 0.1, 0.8, None, None)
    assert rank_findings([f, g]) == (g, f)
    assert rank_findings([f, g], min_score=0.5) == (g,)


# -- error kinds ---------------------------------------------------------------------------------


def test_a_new_error_kind_ranks_first():
    result = explain_counts(
        window={"timeout": 11, "oom": 5, "model_load": 200},
        baseline={"timeout": 10, "oom": 5},
        window_total_den=10_000,
        baseline_total_den=10_000,
    )
    assert result.excess == pytest.approx(201)
    assert top(result) == ("error_kind", "model_load")
    assert result.findings[0].share_of_volume == 0.0
    assert result.findings[0].window_value == pytest.approx(0.02)


def test_error_kinds_growing_with_traffic_are_no_excess():
    result = explain_counts({"timeout": 20, "oom": 10}, {"timeout": 10, "oom": 5}, 2000, 1000)
    assert result.excess == pytest.approx(0.0)
    assert result.findings == ()


def test_an_error_kind_rising_in_share_ranks_above_one_growing_in_step():
    result = explain_counts({"timeout": 90, "oom": 10}, {"timeout": 5, "oom": 5}, 1000, 1000)
    assert top(result) == ("error_kind", "timeout")
    assert [f.value for f in result.findings] == ["timeout"]


def test_error_kinds_without_baseline_volume_have_nothing_to_explain():
    assert explain_counts({"oom": 3}, {}, 100, 0) == Explanation(0.03, None, 0.0)


# -- incident detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "window", "baseline", "incident"),
    [
        ("error_rate", 0.05, 0.002, True),
        ("error_rate", 0.008, 0.002, False),  # 4x but below 1% absolute
        ("error_rate", 0.015, 0.01, False),  # above 1% but not 2x
        ("error_rate", 0.02, 0.01, True),
        ("error_rate", 0.02, 0.0, True),
        ("error_rate", 0.0, 0.0, False),
        ("wape", 0.30, 0.20, True),
        ("wape", 0.24, 0.20, False),  # +0.04 is within noise
        ("wape", 0.70, 0.60, False),  # +0.10 but not 1.25x
        ("latency_p95", 20.0, 5.0, True),
        ("latency_p95", 9.0, 5.0, False),
        ("latency_p95", 1.0, 0.25, False),  # 4x but under 1 ms more
        ("latency_p95", 0.0, 0.0, False),
        ("error_rate", None, 0.01, False),
        ("error_rate", 0.5, None, False),  # no baseline: nothing to compare with
    ],
)
def test_detect_applies_the_default_thresholds(metric, window, baseline, incident):
    assert detect(metric, window, baseline) is incident


def test_threshold_is_the_strictest_of_factor_floor_and_increase():
    assert threshold("error_rate", 0.002) == pytest.approx(0.01)
    assert threshold("error_rate", 0.02) == pytest.approx(0.04)
    assert threshold("wape", 0.1) == pytest.approx(0.15)
    assert threshold("wape", 0.4) == pytest.approx(0.5)
    assert threshold("latency_p95", None) is None


def test_detect_takes_custom_thresholds_and_refuses_unknown_metrics():
    custom = {**DEFAULT_THRESHOLDS, "error_rate": Threshold(factor=1.1)}
    assert detect("error_rate", 0.012, 0.01, thresholds=custom)
    with pytest.raises(ValueError):
        detect("throughput", 1.0, 0.5)
