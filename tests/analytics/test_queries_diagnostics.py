"""Root cause and incidents against rates recomputed by brute force from the events fed in.

The simulated fleets carry planted faults: a bad model version (the shared fleet), one
broken store and one bad agent version; each must rank first in its case.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from storecast.analytics import diagnostics, rootcause, stats
from storecast.analytics.schemas import Window
from storecast.common.telemetry import LATENCY_BOUNDS_MS
from storecast.sim.telemetry import TelemetrySimConfig
from tests.analytics.test_queries import END, FAULT_HOURS, MODEL, Fed, fed_database, feed, last


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fed(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
) -> Iterator[Fed]:
    """The simulated fleet with a bad model version, ingested (SQLite and PostgreSQL)."""
    yield from fed_database(request.param, tmp_path_factory, postgres_available)


# -- root cause and incidents ------------------------------------------------------------------

Rates = dict[tuple[str, str], list[float]]  # (dimension, value) -> [w_num, w_den, b_num, b_den]


def _label(model: tuple[str, int]) -> str:
    return "(none)" if not model[0] else f"{model[0]}:v{model[1]}"


def brute_rates(
    fed: Fed, metric: str, window: Window, baseline: Window
) -> tuple[Rates, list[float]]:
    """Per dimension value and in total: the metric's numerator and denominator sums."""
    regions = {d.store_id: d.region for d in fed.sim.devices}
    slow_bucket = rootcause.slow_share_threshold(fed.truth.serving(baseline)[2])
    rates: Rates = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    overall = [0.0, 0.0, 0.0, 0.0]
    rows: list[tuple[Any, datetime, float, float]] = []  # (record, hour, num, den)
    if metric == "wape":
        for w in (window, baseline):
            rows += [(pt, pt.ts, abs(pt.q[1] - a), a) for pt, a in fed.truth.pairs(w)]
    else:
        for sv in fed.truth.served:
            num = sv.errors if metric == "error_rate" else sum(sv.hist[(slow_bucket or 0) + 1 :])
            rows.append((sv, sv.hour, float(num), float(sv.count)))
    for record, hour, num, den in rows:
        side = (
            0
            if window.start <= hour < window.end
            else 2
            if baseline.start <= hour < baseline.end
            else None
        )
        if side is None:
            continue
        dims = {
            "model_version": _label(record.model),
            "agent_version": record.agent,
            "hour_of_day": str(hour.hour),
            "store": record.store,
            "region": regions[record.store],
        }
        for dim_value in [*dims.items(), ("", "")]:
            target = overall if dim_value == ("", "") else rates[dim_value]
            target[side] += num
            target[side + 1] += den
    return rates, overall


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def check_root_cause(fed: Fed, metric: str, window: Window) -> list[tuple[str, str]]:
    """Compare every figure of the root-cause answer with brute force; the ranked values."""
    baseline = diagnostics.baseline_before(window)
    with fed.session() as session:
        got = diagnostics.root_cause(session, metric, window, baseline)  # type: ignore[arg-type]
    rates, overall = brute_rates(fed, metric, window, baseline)
    if metric == "latency_p95":
        assert got.window_value == pytest.approx(
            stats.latency_summary(fed.truth.serving(window)[2])[1]
        )
        assert got.baseline_value == pytest.approx(
            stats.latency_summary(fed.truth.serving(baseline)[2])[1]
        )
        bucket = rootcause.slow_share_threshold(fed.truth.serving(baseline)[2])
        assert got.slow_after_ms == LATENCY_BOUNDS_MS[bucket or 0]
    else:
        assert got.window_value == pytest.approx(_ratio(overall[0], overall[1]))
        assert got.baseline_value == pytest.approx(_ratio(overall[2], overall[3]))
        assert got.slow_after_ms is None
    assert got.excess == pytest.approx(overall[0] - overall[1] * overall[2] / overall[3])
    ranked = [f for f in got.findings if f.dimension != "error_kind"]
    kinds = [f for f in got.findings if f.dimension == "error_kind"]
    assert got.findings == ranked + kinds  # error kinds follow the ranking
    assert [f.score for f in ranked] == sorted((f.score for f in ranked), reverse=True)
    for f in ranked:
        w_num, w_den, b_num, b_den = rates[f.dimension, f.value]
        assert f.window_value == pytest.approx(_ratio(w_num, w_den))
        assert f.baseline_value == (None if not b_den else pytest.approx(b_num / b_den))
        assert f.share_of_volume == pytest.approx(w_den / overall[1])
    for f in kinds:  # error events of the kind per inference served, in each window
        for value, w in ((f.window_value, window), (f.baseline_value, baseline)):
            count = sum(
                n
                for hour, kind, n in fed.truth.errors
                if kind == f.value and w.start <= hour < w.end
            )
            assert value == pytest.approx(count / fed.truth.serving(w)[0])
    return [(f.dimension, f.value) for f in ranked]


@pytest.mark.parametrize("metric", ["error_rate", "wape", "latency_p95"])
def test_root_cause_ranks_the_bad_model_version_first(fed: Fed, metric: str) -> None:
    window = last(FAULT_HOURS)
    assert check_root_cause(fed, metric, window)[0] == ("model_version", f"{MODEL}:v3")


def test_root_cause_lists_the_window_changes(fed: Fed) -> None:
    window = last(FAULT_HOURS)
    with fed.session() as session:
        got = diagnostics.root_cause(
            session, "error_rate", window, diagnostics.baseline_before(window)
        )
    bad_stores = {
        e["store_id"] for e in fed.events if e["type"] == "model" and e["payload"]["version"] == 3
    }
    assert {(e.action, e.model_version) for e in got.model_events} == {("activated", 3)}
    assert {e.store_id for e in got.model_events} == bad_stores
    assert [(c.action, c.model_version, c.events, c.stores) for c in got.model_event_summary] == [
        ("activated", 3, len(bad_stores), len(bad_stores))
    ]
    assert [(d.model, d.alias) for d in got.deployments] == [(MODEL, "prod")]


def test_incidents_are_the_metrics_detect_flags_with_their_findings(fed: Fed) -> None:
    window = last(FAULT_HOURS)
    baseline = diagnostics.baseline_before(window)
    truth = fed.truth
    values: dict[str, tuple[float | None, float | None]] = {}
    for metric in diagnostics.METRICS:
        if metric == "latency_p95":
            values[metric] = (
                stats.latency_summary(truth.serving(window)[2])[1],
                stats.latency_summary(truth.serving(baseline)[2])[1],
            )
        else:
            _, overall = brute_rates(fed, metric, window, baseline)
            values[metric] = (_ratio(overall[0], overall[1]), _ratio(overall[2], overall[3]))
    with fed.session() as session:
        got = diagnostics.incidents(session, END, FAULT_HOURS)
    flagged = [m for m in diagnostics.METRICS if rootcause.detect(m, *values[m])]
    assert {"error_rate", "latency_p95"} <= set(flagged)
    assert [i.metric for i in got.incidents] == flagged
    for incident in got.incidents:
        now, before = values[incident.metric]
        assert (incident.window_value, incident.baseline_value) == (
            pytest.approx(now),
            pytest.approx(before),
        )
        assert incident.threshold == pytest.approx(rootcause.threshold(incident.metric, before))
        assert incident.window == window
        top = incident.findings[0]
        assert (top.dimension, top.value) == ("model_version", f"{MODEL}:v3")


@pytest.fixture(scope="module", params=["broken-store", "bad-agent"])
def faulty(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Fed:
    """A fleet with another planted fault (SQLite: the SQL is the one tested above)."""
    config = TelemetrySimConfig(
        end=END, devices=8, days=3, seed=9, fault=request.param, fault_hours=FAULT_HOURS
    )
    return feed(f"sqlite:///{tmp_path_factory.mktemp('faulty') / 'cloud.db'}", config)


def test_root_cause_ranks_the_planted_store_or_agent_first(faulty: Fed) -> None:
    window = last(FAULT_HOURS)
    if faulty.sim.config.fault == "broken-store":
        broken = ("store", faulty.sim.devices[1].store_id)
        assert check_root_cause(faulty, "error_rate", window)[0] == broken
        with faulty.session() as session:
            got = diagnostics.root_cause(
                session, "error_rate", window, diagnostics.baseline_before(window)
            )
        kinds = [f.value for f in got.findings if f.dimension == "error_kind"]
        assert kinds[0] == "sensor_offline"
    else:
        for metric in ("error_rate", "latency_p95"):
            assert check_root_cause(faulty, metric, window)[0] == ("agent_version", "1.5.0-rc1")
