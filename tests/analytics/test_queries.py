"""Analytics queries against figures recomputed by brute force from the events fed in.

A simulated fleet (with a planted bad model version) is ingested once per database
backend; every query's answer is then checked against the same figure computed straight
from the raw event list, the slow and obvious way.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from storecast.analytics import (
    queries_models,
    queries_stores,
    stats,
)
from storecast.analytics.ingest import ingest_batch
from storecast.analytics.queries import ONLINE_WITHIN, STALE_WITHIN
from storecast.analytics.schemas import Accuracy, Window
from storecast.analytics.tables import ApiUsageRow
from storecast.common.db import make_engine, make_sessionmaker, transaction, upgrade
from storecast.common.telemetry import HIST_BUCKETS, hour_floor
from storecast.registry.tables import DeploymentRow, DeviceRow
from storecast.sim.telemetry import TelemetrySim, TelemetrySimConfig
from tests.conftest import postgres_database

END = datetime(2026, 3, 10, tzinfo=UTC)  # the simulated span ends here
NOW = END + timedelta(minutes=2)  # the app clock of these tests
FAULT_HOURS = 12
MODEL = "demand-lstm"

# -- the fed database --------------------------------------------------------------------------


@dataclass
class Fed:
    """A database holding an ingested simulated fleet, and the events that went in."""

    url: str
    sessions: sessionmaker[Session]
    events: list[dict[str, Any]]
    sim: TelemetrySim
    truth: Truth

    def session(self) -> Any:
        return transaction(self.sessions)


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _registry_rows(session: Session, sim: TelemetrySim) -> None:
    enrolled = {"enrolled_at": END - timedelta(days=30), "enrolled_by": "test", "tags_json": "[]"}
    devices = [
        {"device_id": d.device_id, "store_id": d.store_id, "region": d.region, **enrolled}
        for d in sim.devices
    ]
    devices.append({"device_id": "dev-idle", "store_id": "S999", "region": "west", **enrolled})
    devices.append(
        {
            "device_id": "dev-retired",
            "store_id": sim.devices[0].store_id,
            "region": sim.devices[0].region,
            "decommissioned_at": END - timedelta(days=20),
            **enrolled,
        }
    )
    session.execute(insert(DeviceRow), devices)
    selector = json.dumps({"kind": "all", "values": []})
    common = {"model": MODEL, "selector_json": selector, "status": "active", "created_by": "t:ci"}
    session.execute(
        insert(DeploymentRow),
        [
            {**common, "version": 3, "alias": None, "created_at": END - timedelta(hours=13)},
            {**common, "version": None, "alias": "prod", "created_at": END - timedelta(hours=6)},
        ],
    )
    usage = [
        (END.date() - timedelta(days=9), "tok_a:alice", "GET", 200, 4),
        (END.date() - timedelta(days=2), "tok_a:alice", "GET", 200, 7),
        (END.date() - timedelta(days=2), "tok_b:bob", "GET", 403, 1),
        (END.date() - timedelta(days=1), "tok_b:bob", "GET", 200, 3),
        (END.date(), "tok_a:alice", "POST", 201, 2),
    ]
    keys = ("day", "actor", "method", "status", "count")
    session.execute(
        insert(ApiUsageRow),
        [
            {**dict(zip(keys, row, strict=True)), "role": "viewer", "endpoint": "/v1/x"}
            for row in usage
        ],
    )


def _shape(events: list[dict[str, Any]], sim: TelemetrySim) -> list[dict[str, Any]]:
    """Silence some heartbeats: device 0 goes stale, device 1 offline."""
    quiet = {
        sim.devices[0].device_id: END - timedelta(minutes=30),
        sim.devices[1].device_id: END - timedelta(hours=2),
    }
    return [
        e
        for e in events
        if not (
            e["type"] == "heartbeat"
            and e["device_id"] in quiet
            and parse_ts(e["ts"]) >= quiet[e["device_id"]]
        )
    ]


def feed(url: str, config: TelemetrySimConfig) -> Fed:
    """Migrate ``url``, enrol the simulated devices, ingest their events."""
    upgrade(url)
    sim = TelemetrySim(config)
    sessions = make_sessionmaker(make_engine(url))
    with transaction(sessions, write=True) as session:
        _registry_rows(session, sim)
    fed_events: list[dict[str, Any]] = []
    for device, stream in sim.streams():
        events = _shape(list(stream), sim)
        for k in range(0, len(events), 500):
            body = json.dumps({"events": events[k : k + 500]}).encode()
            with transaction(sessions, write=True) as session:
                ack = ingest_batch(session, device.device_id, body, NOW)
            assert ack.accepted == len(events[k : k + 500]), ack.rejected[:3]
        fed_events.extend(events)
    return Fed(url, sessions, fed_events, sim, Truth(fed_events))


# -- brute force -------------------------------------------------------------------------------


def model_key(model: dict[str, Any] | None) -> tuple[str, int]:
    return (model["name"], model["version"]) if model else ("", 0)


@dataclass
class Point:
    store: str
    ts: datetime
    horizon: int
    model: tuple[str, int]
    agent: str
    q: tuple[float, float, float]


@dataclass
class Served:
    store: str
    hour: datetime
    model: tuple[str, int]
    agent: str
    count: int
    errors: int
    hist: list[int]


@dataclass
class Truth:
    """The fed events, normalised the obvious way (agent = the device's last heartbeat's)."""

    events: list[dict[str, Any]]
    actuals: dict[tuple[str, datetime], float] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)
    errors: list[tuple[datetime, str, float]] = field(default_factory=list)  # hour, kind, n
    beats: dict[str, dict[str, Any]] = field(default_factory=dict)  # device -> newest

    def __post_init__(self) -> None:
        agent: dict[str, str] = defaultdict(str)
        for e in self.events:
            p, device = e["payload"], e["device_id"]
            if e["type"] == "heartbeat":
                agent[device] = p["agent_version"]
                if device not in self.beats or e["ts"] >= self.beats[device]["ts"]:
                    self.beats[device] = e
            elif e["type"] == "actual":
                self.actuals.setdefault((e["store_id"], parse_ts(p["ts"])), p["sales_units"])
            elif e["type"] == "forecast":
                for k, pt in enumerate(p["points"]):
                    q = (pt["q10"], pt["q50"], pt["q90"])
                    self.points.append(
                        Point(
                            e["store_id"],
                            parse_ts(pt["ts"]),
                            k + 1,
                            model_key(e["model"]),
                            agent[device],
                            q,
                        )
                    )
            elif e["type"] == "inference":
                self.served.append(
                    Served(
                        e["store_id"],
                        hour_floor(parse_ts(p["window_start"])),
                        model_key(e["model"]),
                        agent[device],
                        p["count"],
                        p["errors"],
                        list(p["latency_hist"]),
                    )
                )
            elif e["type"] == "error":
                self.errors.append((hour_floor(parse_ts(e["ts"])), p["kind"], float(p["count"])))

    def pairs(self, window: Window, **match: Any) -> Iterator[tuple[Point, float]]:
        for pt in self.points:
            actual = self.actuals.get((pt.store, pt.ts))
            if actual is None or not window.start <= pt.ts < window.end:
                continue
            if all(getattr(pt, k) == v for k, v in match.items()):
                yield pt, actual

    def accuracy(self, window: Window, **match: Any) -> stats.AccuracyStats:
        pairs = list(self.pairs(window, **match))
        return stats.accuracy(
            len(pairs),
            sum(a for _, a in pairs),
            sum(pt.q[1] for pt, _ in pairs),
            sum(abs(pt.q[1] - a) for pt, a in pairs),
            sum(1 for pt, a in pairs if pt.q[0] <= a <= pt.q[2]),
        )

    def serving(self, window: Window, **match: Any) -> tuple[int, int, list[int]]:
        count = errors = 0
        hist = [0] * HIST_BUCKETS
        for s in self.served:
            if window.start <= s.hour < window.end and all(
                getattr(s, k) == v for k, v in match.items()
            ):
                count, errors = count + s.count, errors + s.errors
                hist = [h + n for h, n in zip(hist, s.hist, strict=True)]
        return count, errors, hist


def assert_accuracy(got: Accuracy, want: stats.AccuracyStats) -> None:
    assert got.points == want.points
    for name in ("wape", "bias", "coverage_80"):
        expected = getattr(want, name)
        assert getattr(got, name) == (None if expected is None else pytest.approx(expected))


def status(beat: dict[str, Any] | None, at: datetime) -> str:
    if beat is None:
        return "offline"
    age = at - parse_ts(beat["ts"])
    if age <= ONLINE_WITHIN:
        return "online"
    return "stale" if age <= STALE_WITHIN else "offline"


# -- fixtures ----------------------------------------------------------------------------------

FLEET = TelemetrySimConfig(
    end=END, devices=8, days=3, seed=5, fault="bad-model", fault_hours=FAULT_HOURS
)


def fed_database(
    backend: str, tmp_path_factory: pytest.TempPathFactory, postgres_available: bool
) -> Iterator[Fed]:
    """The simulated fleet ingested into a fresh SQLite or PostgreSQL database."""
    if backend == "sqlite":
        fed = feed(f"sqlite:///{tmp_path_factory.mktemp('fed') / 'cloud.db'}", FLEET)
        yield fed
    else:
        if not postgres_available:
            pytest.skip("PostgreSQL is not reachable (set STORECAST_REQUIRE_POSTGRES=1 to fail)")
        with postgres_database() as url:
            fed = feed(url, FLEET)
            yield fed
    fed.sessions.kw["bind"].dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fed(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
) -> Iterator[Fed]:
    """The simulated fleet with a bad model version, ingested (SQLite and PostgreSQL)."""
    yield from fed_database(request.param, tmp_path_factory, postgres_available)


def last(hours: int, end: datetime = END) -> Window:
    return Window(start=end - timedelta(hours=hours), end=end)


# -- stores ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granularity", "horizon", "window"),
    [
        ("hour", 1, last(30)),
        (
            "day",
            3,
            Window(start=END - timedelta(hours=53, minutes=30), end=END - timedelta(hours=3)),
        ),
    ],
)
def test_store_summary_is_forecast_vs_actual_of_the_events(
    fed: Fed, granularity: str, horizon: int, window: Window
) -> None:
    store = fed.sim.devices[2].store_id
    truth = fed.truth
    with fed.session() as session:
        got = queries_stores.store_summary(session, store, window, granularity, horizon)  # type: ignore[arg-type]

    def bucket(ts: datetime) -> datetime:
        return ts if granularity == "hour" else ts.replace(hour=0)

    forecast: dict[datetime, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for pt in truth.points:
        if pt.store == store and pt.horizon == horizon and window.start <= pt.ts < window.end:
            sums = forecast[bucket(pt.ts)]
            forecast[bucket(pt.ts)] = [f + q for f, q in zip(sums, pt.q, strict=True)]
    actual: dict[datetime, float] = defaultdict(float)
    for (s, ts), sales in truth.actuals.items():
        if s == store and window.start <= ts < window.end:
            actual[bucket(ts)] += sales
    assert [p.ts for p in got.series] == sorted({*forecast, *actual} | {p.ts for p in got.series})
    assert got.series[0].ts <= window.start + timedelta(hours=1)
    assert got.series[-1].ts >= bucket(window.end - timedelta(hours=1))
    for point in got.series:
        q = forecast.get(point.ts)
        assert (point.q10, point.q50, point.q90) == (
            (None, None, None) if q is None else tuple(pytest.approx(v) for v in q)
        )
        assert point.actual == (None if point.ts not in actual else pytest.approx(actual[point.ts]))
    assert_accuracy(got.accuracy, truth.accuracy(window, store=store))
    count, errors, _ = truth.serving(window, store=store)
    assert got.totals == {
        "actual": pytest.approx(sum(actual.values())),
        "forecast": pytest.approx(sum(q[1] for q in forecast.values())),
        "forecasts_served": count,
        "errors": errors,
    }


def test_store_list_has_every_store_with_its_newest_state_and_kpis(fed: Fed) -> None:
    window = last(72)
    with fed.session() as session:
        got = {row.store_id: row for row in queries_stores.list_stores(session, window, NOW).stores}
    assert set(got) == {d.store_id for d in fed.sim.devices} | {"S999"}
    idle = got["S999"]
    assert (idle.region, idle.devices, idle.status, idle.last_heartbeat_at) == (
        "west",
        1,
        "offline",
        None,
    )
    assert idle.forecasts_served == 0 and idle.accuracy.points == 0
    for device in fed.sim.devices:
        row, beat = got[device.store_id], fed.truth.beats[device.device_id]
        assert row.region == device.region
        assert row.devices == 1  # the decommissioned device of the first store is not counted
        assert row.last_heartbeat_at == parse_ts(beat["ts"])
        assert row.status == status(beat, NOW)
        assert (row.model_name, row.model_version) == model_key(beat["model"])
        assert row.agent_version == beat["payload"]["agent_version"]
        assert_accuracy(row.accuracy, fed.truth.accuracy(window, store=device.store_id))
        count, errors, _ = fed.truth.serving(window, store=device.store_id)
        assert row.forecasts_served == count
        assert row.error_rate == pytest.approx(errors / count)
    assert [got[d.store_id].status for d in fed.sim.devices[:2]] == ["stale", "offline"]


def test_a_store_exists_when_enrolled_or_reporting(fed: Fed) -> None:
    with fed.session() as session:
        assert queries_stores.store_exists(session, fed.sim.devices[0].store_id)
        assert queries_stores.store_exists(session, "S999")  # enrolled, never reported
        assert not queries_stores.store_exists(session, "S404")


# -- models ------------------------------------------------------------------------------------


def test_model_performance_per_version_matches_the_events(fed: Fed) -> None:
    window = last(36)
    with fed.session() as session:
        got = queries_models.model_performance(session, window).versions
    truth = fed.truth
    versions = sorted(
        {pt.model for pt, _ in truth.pairs(window)}
        | {s.model for s in truth.served if window.start <= s.hour < window.end}
    )
    assert [(v.model_name, v.model_version) for v in got] == versions
    assert (MODEL, 3) in versions  # the planted bad version
    running = [model_key(beat["model"]) for beat in truth.beats.values()]
    for v in got:
        model = (v.model_name, v.model_version)
        assert v.arm is None
        assert_accuracy(v.accuracy, truth.accuracy(window, model=model))
        clusters: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for pt, actual in truth.pairs(window, model=model):
            clusters[pt.store][0] += abs(pt.q[1] - actual)
            clusters[pt.store][1] += actual
        want_ci = stats.wape_interval([(e, a) for e, a in clusters.values()])
        assert v.wape_ci95 == (None if want_ci is None else pytest.approx(want_ci))
        count, errors, hist = truth.serving(window, model=model)
        assert (v.forecasts_served, v.errors) == (count, errors)
        assert v.error_rate == pytest.approx(errors / count)
        p50, p95, p99 = stats.latency_summary(hist)
        assert (v.latency.p50_ms, v.latency.p95_ms, v.latency.p99_ms) == pytest.approx(
            (p50, p95, p99)
        )
        served_stores = {
            s.store
            for s in truth.served
            if s.model == model and window.start <= s.hour < window.end
        }
        assert v.stores == len(served_stores | set(clusters))
        assert v.devices == running.count(model)
    bad = next(v for v in got if v.model_version == 3)
    assert all(bad.error_rate > 5 * v.error_rate for v in got if v is not bad)  # type: ignore[operator]


def test_model_performance_filters_by_model_name(fed: Fed) -> None:
    with fed.session() as session:
        assert queries_models.model_performance(session, last(36), "no-such-model").versions == []
        named = queries_models.model_performance(session, last(36), MODEL).versions
    assert {v.model_name for v in named} == {MODEL}
