"""Fleet KPIs, the fleet series and the usage logs against brute force from the events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest

from storecast.analytics import fleet, queries_usage, stats
from storecast.analytics.schemas import Window
from tests.analytics.test_queries import (
    END,
    FAULT_HOURS,
    Fed,
    assert_accuracy,
    fed_database,
    last,
    model_key,
    parse_ts,
    status,
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fed(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
) -> Iterator[Fed]:
    """The simulated fleet with a bad model version, ingested (SQLite and PostgreSQL)."""
    yield from fed_database(request.param, tmp_path_factory, postgres_available)


# -- fleet -------------------------------------------------------------------------------------


@pytest.mark.parametrize("at", [END, END - timedelta(minutes=40)])
def test_fleet_kpis_match_the_events(fed: Fed, at: datetime) -> None:
    window = last(24, at)
    with fed.session() as session:
        got = fleet.fleet_kpis(session, at, window)
    truth = fed.truth
    beats = [truth.beats.get(d.device_id) for d in fed.sim.devices] + [None]  # + dev-idle
    statuses = [status(b, at) for b in beats]
    assert got.devices.model_dump() == {
        "total": 9,
        "online": statuses.count("online"),
        "stale": statuses.count("stale"),
        "offline": statuses.count("offline"),
    }
    shares: dict[tuple[str | None, int | None], int] = defaultdict(int)
    for b in beats:
        shares[(None, None) if b is None else model_key(b["model"])] += 1
    assert {(v.model_name, v.model_version): v.devices for v in got.versions} == shares
    actions = [
        e["payload"]["action"]
        for e in truth.events
        if e["type"] == "model" and window.start <= parse_ts(e["ts"]) < window.end
    ]
    assert got.updates.activated == actions.count("activated") > 0
    assert got.updates.rejected == actions.count("rejected")
    assert got.updates.success_rate == 1.0
    count, errors, hist = truth.serving(window)
    assert (got.forecasts_served, got.errors) == (count, errors)
    assert got.latency.p95_ms == pytest.approx(stats.latency_summary(hist)[1])
    per_hour: dict[tuple[str, datetime], list[float]] = defaultdict(list)
    abs_err = actual_sum = 0.0
    for pt, actual in truth.pairs(window):
        per_hour[pt.store, pt.ts].append(pt.q[1])
        abs_err += abs(pt.q[1] - actual)
        actual_sum += actual
    assert got.sales == {
        "actual": pytest.approx(sum(truth.actuals[key] for key in per_hour)),
        "forecast": pytest.approx(sum(sum(q) / len(q) for q in per_hour.values())),
        "wape": pytest.approx(abs_err / actual_sum),
    }
    assert got.telemetry == {
        "backlog": sum(b["payload"]["outbox_depth"] for b in beats if b),
        "dropped": sum(b["payload"]["dropped_events"] for b in beats if b),
    }
    assert got.thresholds_s == {"online": 600, "stale": 3600}


def test_fleet_series_has_every_hour_of_the_window(fed: Fed) -> None:
    window = Window(start=END - timedelta(hours=30, minutes=30), end=END + timedelta(hours=2))
    with fed.session() as session:
        got = fleet.fleet_series(session, window).hours
    assert [h.hour for h in got] == [END - timedelta(hours=30 - k) for k in range(32)]
    for h in got:
        one = Window(start=h.hour, end=h.hour + timedelta(hours=1))
        count, errors, hist = fed.truth.serving(one)
        assert (h.forecasts_served, h.errors) == (count, errors)
        assert h.latency.p99_ms == (
            pytest.approx(stats.latency_summary(hist)[2]) if count else None
        )
        assert_accuracy(h.accuracy, fed.truth.accuracy(one))
    assert got[-1].forecasts_served == 0 and got[-1].error_rate is None


# -- events and usage --------------------------------------------------------------------------


def test_model_events_are_filtered_and_newest_first(fed: Fed) -> None:
    window = last(72)
    store = next(
        e["store_id"] for e in fed.events if e["type"] == "model" and e["payload"]["version"] == 3
    )
    with fed.session() as session:
        everything = queries_usage.model_events(session, window, limit=10000).events
        activated = queries_usage.model_events(
            session, window, actions=("activated",), store_id=store, limit=10000
        ).events
        newest = queries_usage.model_events(session, window, limit=2).events
    want = sorted(
        (e for e in fed.events if e["type"] == "model"),
        key=lambda e: (-parse_ts(e["ts"]).timestamp(), e["event_id"]),
    )
    assert [e.event_id for e in everything] == [e["event_id"] for e in want]
    assert [e.event_id for e in newest] == [e["event_id"] for e in want[:2]]
    assert [e.event_id for e in activated] == [
        e["event_id"]
        for e in want
        if e["store_id"] == store and e["payload"]["action"] == "activated"
    ]
    assert {e.model_version for e in activated} >= {1, 3}


def test_forecast_usage_counts_per_store_and_day(fed: Fed) -> None:
    window = Window(start=END - timedelta(days=2, hours=5), end=END)
    store = fed.sim.devices[3].store_id
    with fed.session() as session:
        rows = queries_usage.forecast_usage(session, window).rows
        one = queries_usage.forecast_usage(session, window, store).rows
    want: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for s in fed.truth.served:
        if window.start <= s.hour < window.end:
            want[s.hour.date(), s.store][0] += s.count
            want[s.hour.date(), s.store][1] += s.errors
    assert [(r.day, r.store_id, r.forecasts_served, r.errors) for r in rows] == [
        (*key, *want[key]) for key in sorted(want)
    ]
    assert [r for r in rows if r.store_id == store] == one


def test_api_usage_covers_the_days_the_window_touches(fed: Fed) -> None:
    window = Window(start=END - timedelta(days=2, hours=1), end=END - timedelta(hours=20))
    with fed.session() as session:
        rows = queries_usage.api_usage(session, window).rows
        bob = queries_usage.api_usage(session, last(24 * 30), "bob").rows
    assert [(r.day, r.actor, r.status, r.count) for r in rows] == [
        (END.date() - timedelta(days=2), "tok_a:alice", 200, 7),
        (END.date() - timedelta(days=2), "tok_b:bob", 403, 1),
        (END.date() - timedelta(days=1), "tok_b:bob", 200, 3),
    ]
    assert {r.actor for r in bob} == {"tok_b:bob"} and len(bob) == 2


def test_deployments_in_a_window_newest_first(fed: Fed) -> None:
    with fed.session() as session:
        both = queries_usage.deployments_in(session, last(FAULT_HOURS + 2))
        one = queries_usage.deployments_in(session, last(FAULT_HOURS))
    assert [(d.version, d.alias) for d in both] == [(None, "prod"), (3, None)]
    assert [(d.version, d.alias) for d in one] == [(None, "prod")]
    assert both[0].selector == {"kind": "all", "values": []}
