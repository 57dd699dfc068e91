"""The uploader against a live analytics service: delivered once, never lost, never stuck."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from storecast.analytics.schemas import MAX_BATCH_BYTES
from storecast.analytics.tables import TelemetryEventRow
from storecast.common.clock import FixedClock
from storecast.edge.backoff import Backoff
from storecast.edge.events import EventFactory, InferenceStats
from storecast.edge.localdb import LocalDB
from storecast.edge.outbox import Outbox
from storecast.edge.uploader import Uploader
from tests.registry.conftest import LiveRegistry

DAY0 = datetime(2026, 11, 20, tzinfo=UTC)  # in the past: the service refuses future events
MODEL = ("demand-lstm", 1)
DEVICE, STORE = "edge-1", "S0001"

# Heavy scenarios run on SQLite alone; one test covers PostgreSQL.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def token(cloud: LiveRegistry) -> str:
    """The device token of DEVICE, enrolled in STORE."""
    return cloud.enrol(DEVICE, STORE)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(DAY0)


@pytest.fixture
def factory(clock: FixedClock) -> EventFactory:
    return EventFactory(DEVICE, STORE, clock)


@pytest.fixture
def outbox(agent_db: LocalDB) -> Outbox:
    return Outbox(agent_db)


def quick_backoff() -> Backoff:
    return Backoff(0.01, 0.05, random.Random(0))


@pytest.fixture
def uploader_to(outbox: Outbox, clock: FixedClock) -> Iterator[Callable[..., Uploader]]:
    """Uploaders from ``outbox`` to a URL with a token (closed after the test)."""
    made: list[Uploader] = []

    def make(url: str, token: str, **options: Any) -> Uploader:
        options.setdefault("backoff", quick_backoff())
        uploader = Uploader(outbox, url, token, clock, **options)
        made.append(uploader)
        return uploader

    yield make
    for uploader in made:
        uploader.close()


def ingested(cloud: LiveRegistry) -> list[str]:
    """Every event id the service stored (one row per event: a resend adds none)."""
    with cloud.database.transaction() as session:
        return [str(e) for e in session.execute(select(TelemetryEventRow.event_id)).scalars()]


def heartbeat(factory: EventFactory, outbox: Outbox, upload_ok: bool = True) -> dict[str, Any]:
    return factory.heartbeat(
        cpu_pct=2.0,
        rss_mb=70.0,
        disk_free_mb=5000.0,
        uptime_s=100.0,
        agent_version="0.1.0",
        outbox_depth=outbox.depth(),
        dropped_events=outbox.dropped(),
        last_poll_ok=True,
        last_upload_ok=upload_ok,
        model=MODEL,
    )


def forecast(factory: EventFactory, origin: datetime, horizon: int = 24) -> dict[str, Any]:
    points = [(origin + timedelta(hours=k), 5.0, 7.0 + k % 3, 9.5) for k in range(horizon)]
    return factory.forecast(origin=origin, points=points, model=MODEL)


def a_mix(factory: EventFactory, outbox: Outbox, hours: int = 3) -> list[dict[str, Any]]:
    events = [factory.model_event(action="activated", name="demand-lstm", version=1, model=MODEL)]
    for h in range(hours):
        hour = DAY0 + timedelta(hours=h)
        events += [forecast(factory, hour), heartbeat(factory, outbox)]
        events.append(factory.actual(hour=hour, sales_units=6.0, footfall=30.0, model=MODEL))
    events.append(factory.error(component="sensors", kind="invalid", message="x", model=MODEL))
    return events


def wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Poll ``predicate`` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        threading.Event().wait(0.01)


class LoseAnswers(httpx.BaseTransport):
    """Delivers requests to the real service, then loses its first ``lose`` answers."""

    def __init__(self, lose: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.lose = lose
        self.bodies: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.bodies.append(request.read())
        if self.lose:
            self.lose -= 1
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_drain_delivers_every_event_and_deletes_the_acknowledged(
    cloud: LiveRegistry, token: str, factory: EventFactory, outbox: Outbox, uploader_to: Any
) -> None:
    events = a_mix(factory, outbox)
    outbox.put(events)
    uploader = uploader_to(cloud.url, token, batch_size=4)
    assert uploader.last_ok is None

    result = uploader.drain()

    assert (result.ok, result.sent, result.accepted, result.duplicates) == (
        True, len(events), len(events), 0
    )  # fmt: skip
    assert outbox.depth() == 0
    assert uploader.last_ok is True
    assert sorted(ingested(cloud)) == sorted(e["event_id"] for e in events)


@sqlite_only
def test_a_batch_whose_answer_was_lost_is_resent_identically_and_counted_as_duplicates(
    cloud: LiveRegistry, token: str, factory: EventFactory, outbox: Outbox, uploader_to: Any
) -> None:
    events = a_mix(factory, outbox)
    outbox.put(events)
    transport = LoseAnswers(lose=1)
    uploader = uploader_to(cloud.url, token, client=httpx.Client(transport=transport))

    lost = uploader.drain()
    assert not lost.ok and "network" in (lost.error or "")
    assert outbox.depth() == len(events)  # no answer, nothing deleted
    again = uploader.drain()

    assert (again.ok, again.accepted, again.duplicates) == (True, 0, len(events))
    assert transport.bodies[0] == transport.bodies[1]  # byte-identical resend
    assert outbox.depth() == 0
    assert sorted(ingested(cloud)) == sorted(e["event_id"] for e in events)


@sqlite_only
def test_events_the_service_rejects_are_set_aside_and_never_resent(
    cloud: LiveRegistry, token: str, factory: EventFactory, outbox: Outbox, uploader_to: Any
) -> None:
    good = a_mix(factory, outbox, hours=1)
    elsewhere = EventFactory(DEVICE, "S0999", factory.clock)  # not the enrolled store
    future = EventFactory(DEVICE, STORE, FixedClock(datetime.now(UTC) + timedelta(days=3)))
    bad = [
        elsewhere.error(component="x", kind="y", message="z", model=None),
        future.error(component="x", kind="y", message="z", model=None),
    ]
    outbox.put([good[0], bad[0], *good[1:], bad[1]])
    uploader = uploader_to(cloud.url, token)

    result = uploader.drain()

    assert (result.ok, result.accepted, result.rejected) == (True, len(good), 2)
    assert outbox.depth() == 0
    assert outbox.moved_aside() == 2
    reasons = {r.event_id: r.reason for r in outbox.rejected()}
    assert reasons[bad[0]["event_id"]].startswith("store_id:")
    assert reasons[bad[1]["event_id"]].startswith("ts:")
    assert uploader.drain().sent == 0  # nothing left to retry
    assert sorted(ingested(cloud)) == sorted(e["event_id"] for e in good)


@sqlite_only
def test_a_corrupt_event_that_refuses_the_whole_batch_is_isolated_and_set_aside(
    cloud: LiveRegistry,
    token: str,
    factory: EventFactory,
    outbox: Outbox,
    agent_db: LocalDB,
    uploader_to: Any,
) -> None:
    before = [heartbeat(factory, outbox) for _ in range(6)]
    after = [heartbeat(factory, outbox) for _ in range(5)]
    outbox.put(before)
    with agent_db.transaction() as conn:  # a body damaged on disk: not even JSON
        conn.execute(
            "INSERT INTO outbox (event_id, type, priority, body) VALUES (?, ?, ?, ?)",
            ("broken", "heartbeat", 0, b'{"event_id": "broken", "ty'),
        )
    Outbox(agent_db)  # as after a restart: the queue is recounted
    outbox.put(after)
    uploader = uploader_to(cloud.url, token)

    result = uploader.drain()

    assert (result.ok, result.accepted, result.rejected) == (True, 11, 1)
    assert outbox.depth() == 0
    (rejected,) = outbox.rejected()
    assert rejected.event_id == "broken" and rejected.reason.startswith("HTTP 400")
    assert sorted(ingested(cloud)) == sorted(e["event_id"] for e in before + after)


@sqlite_only
def test_a_batch_too_large_for_the_service_is_split(
    cloud: LiveRegistry, token: str, factory: EventFactory, outbox: Outbox, uploader_to: Any
) -> None:
    events = [forecast(factory, DAY0 + timedelta(hours=h), horizon=168) for h in range(220)]
    outbox.put(events)
    assert sum(len(item.body) for item in outbox.peek()) > MAX_BATCH_BYTES
    uploader = uploader_to(cloud.url, token, max_batch_bytes=10**9)  # let the service say 413

    result = uploader.drain()

    assert (result.ok, result.accepted, result.rejected) == (True, 220, 0)
    assert result.sent > 220  # the refused whole batch, then its halves
    assert outbox.depth() == 0


def test_an_unreachable_service_keeps_every_event_and_backs_off(
    closed_url: str, factory: EventFactory, outbox: Outbox, uploader_to: Any
) -> None:
    outbox.put(a_mix(factory, outbox))
    before = outbox.peek()
    backoff = quick_backoff()
    uploader = uploader_to(closed_url, "device-token", backoff=backoff)

    result = uploader.upload_once()
    assert not result.ok and (result.error or "").startswith("network: ConnectError")
    assert uploader.last_ok is False

    stop = threading.Event()
    runner = threading.Thread(target=uploader.run, args=(stop,))
    runner.start()
    try:
        wait_until(lambda: backoff.failures >= 3)
    finally:
        stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
    assert outbox.peek() == before  # same events, same bytes, same order


@sqlite_only
def test_a_refused_token_keeps_the_events_and_reports_the_error(
    cloud: LiveRegistry, factory: EventFactory, outbox: Outbox, uploader_to: Any
) -> None:
    outbox.put(a_mix(factory, outbox, hours=1))
    depth = outbox.depth()

    result = uploader_to(cloud.url, "not-a-device-token").drain()

    assert not result.ok and (result.error or "").startswith("HTTP 401")
    assert outbox.depth() == depth
    assert outbox.moved_aside() == 0


@sqlite_only
def test_run_drains_when_woken_and_ends_when_stopped(
    cloud: LiveRegistry, token: str, factory: EventFactory, outbox: Outbox, uploader_to: Any
) -> None:
    uploader = uploader_to(cloud.url, token, poll_interval_s=600.0)
    stop, wake = threading.Event(), threading.Event()
    runner = threading.Thread(target=uploader.run, args=(stop, wake))
    runner.start()
    try:
        events = a_mix(factory, outbox, hours=1)
        outbox.put(events)
        wake.set()
        wait_until(lambda: outbox.depth() == 0)
    finally:
        stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
    assert sorted(ingested(cloud)) == sorted(e["event_id"] for e in events)


@sqlite_only
def test_analytics_down_for_a_simulated_day_then_up_delivers_every_event_exactly_once(
    cloud: LiveRegistry,
    token: str,
    closed_url: str,
    clock: FixedClock,
    factory: EventFactory,
    outbox: Outbox,
    uploader_to: Any,
) -> None:
    down = uploader_to(closed_url, token)
    stats = InferenceStats(clock.now())
    created: list[str] = []
    depths: list[int] = []

    def queue(*events: dict[str, Any]) -> None:
        assert outbox.put(events) == 0
        created.extend(e["event_id"] for e in events)

    queue(factory.model_event(action="activated", name="demand-lstm", version=1, model=MODEL))
    for minute in range(24 * 60):
        now = clock.now()
        if minute % 60 == 0:
            queue(forecast(factory, now))
            if minute:
                hour = now - timedelta(hours=1)
                queue(factory.actual(hour=hour, sales_units=minute % 7, footfall=20, model=MODEL))
        for n in range(minute % 5):  # a few forecast requests a minute
            stats.record(0.4 * n + 1.0, ok=n != 3, model=MODEL)
        clock.advance(60)
        for window in stats.drain(clock.now()):
            queue(factory.inference(**window))
        queue(heartbeat(factory, outbox, upload_ok=bool(down.last_ok)))
        if minute % 15 == 14:  # the agent keeps trying, and keeps failing
            assert not down.upload_once().ok
            if minute % 60 == 59:
                error = factory.error(
                    component="uploader",
                    kind="unreachable",
                    message="refused",
                    count=4,
                    model=MODEL,
                )
                queue(error)
            depths.append(outbox.depth())

    # heartbeats, inference windows (4 minutes in 5 see requests), forecasts, actuals,
    # uploader errors, the model activation: all queued, none dropped
    assert len(created) == 1440 + 1152 + 24 + 23 + 24 + 1
    assert depths == sorted(depths) and depths[-1] == len(created)
    assert outbox.dropped() == 0

    result = uploader_to(cloud.url, token).drain()

    assert (result.ok, result.accepted, result.duplicates, result.rejected) == (
        True, len(created), 0, 0
    )  # fmt: skip
    assert outbox.depth() == 0
    stored = ingested(cloud)
    assert len(stored) == len(created) == len(set(created))
    assert set(stored) == set(created)
