"""The agent's telemetry events: valid by construction, and inference stats that add up."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from storecast.common.clock import FixedClock
from storecast.common.telemetry import (
    HIST_BUCKETS,
    LATENCY_BOUNDS_MS,
    EventRejection,
    validate_event,
)
from storecast.edge.events import EventFactory, InferenceStats, InvalidEvent, iso

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
MODEL = ("demand-lstm", 3)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0 + timedelta(minutes=17, seconds=5))


@pytest.fixture
def factory(clock: FixedClock) -> EventFactory:
    return EventFactory("dev-1", "S0001", clock)


def _one_of_each(factory: EventFactory) -> list[dict[str, Any]]:
    points = [(T0 + timedelta(hours=k), 8.0, 10.0 + k, 13.0 + k) for k in range(24)]
    return [
        factory.heartbeat(
            cpu_pct=3.0,
            rss_mb=80.5,
            disk_free_mb=1200,
            uptime_s=61,
            agent_version="0.1.0",
            outbox_depth=4,
            dropped_events=0,
            last_poll_ok=True,
            last_upload_ok=False,
            model=MODEL,
        ),
        factory.forecast(origin=T0, points=points, model=MODEL),
        factory.actual(hour=T0, sales_units=12, footfall=None, model=MODEL),
        factory.model_event(
            action="activated", name="demand-lstm", version=3, digest="ab" * 32, model=MODEL
        ),
        factory.error(component="updater", kind="timeout", message="poll timed out", model=None),
        factory.inference(
            window_start=T0,
            window_end=T0 + timedelta(minutes=1),
            count=3,
            errors=1,
            latency_hist=[1, 2] + [0] * (HIST_BUCKETS - 2),
            model=MODEL,
        ),
    ]


def test_every_event_type_passes_the_cloud_schema(factory: EventFactory) -> None:
    events = _one_of_each(factory)
    assert [e["type"] for e in events] == [
        "heartbeat", "forecast", "actual", "model", "error", "inference"
    ]  # fmt: skip
    for event in events:
        assert not isinstance(validate_event(0, event), EventRejection)
        assert uuid.UUID(event["event_id"]).version == 4
        assert event["ts"].endswith("Z")
        assert (event["device_id"], event["store_id"]) == ("dev-1", "S0001")
    assert len({e["event_id"] for e in events}) == len(events)
    assert events[0]["model"] == {"name": "demand-lstm", "version": 3}
    assert events[4]["model"] is None


def test_event_times_are_event_times(factory: EventFactory, clock: FixedClock) -> None:
    heartbeat, forecast, actual, model, error, inference = _one_of_each(factory)
    assert heartbeat["ts"] == model["ts"] == error["ts"] == "2026-11-20T09:17:05Z"
    assert forecast["ts"] == forecast["payload"]["origin"] == "2026-11-20T09:00:00Z"
    assert actual["payload"]["ts"] == "2026-11-20T09:00:00Z"
    assert actual["ts"] == "2026-11-20T10:00:00Z"  # when the hour completed
    assert inference["ts"] == inference["payload"]["window_end"] == "2026-11-20T09:01:00Z"


def test_an_event_the_cloud_would_refuse_is_never_created(factory: EventFactory) -> None:
    with pytest.raises(InvalidEvent, match="origin"):  # not on the hour
        factory.forecast(origin=T0 + timedelta(minutes=5), points=[(T0, 1, 2, 3)], model=None)
    with pytest.raises(InvalidEvent, match="quantiles"):
        factory.forecast(origin=T0, points=[(T0, 5, 2, 3)], model=None)
    with pytest.raises(InvalidEvent, match="action"):
        factory.model_event(action="exploded", name="m", version=1, model=None)
    with pytest.raises(InvalidEvent, match="latency_hist"):
        factory.inference(
            window_start=T0,
            window_end=T0,
            count=2,
            errors=0,
            latency_hist=[1] + [0] * (HIST_BUCKETS - 1),
            model=None,
        )
    with pytest.raises(InvalidEvent, match="zone"):
        iso(datetime(2026, 1, 1))


def test_iso_writes_utc_with_z() -> None:
    cet = datetime(2026, 11, 20, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    assert iso(cet) == "2026-11-20T10:00:00Z"
    assert iso(datetime(2026, 11, 20, 10, 0, 0, 1500, tzinfo=UTC)) == "2026-11-20T10:00:00.001500Z"


def test_inference_stats_histogram_adds_up_per_model() -> None:
    stats = InferenceStats(T0)
    latencies = [0.1, 0.25, 0.26, 1.0, 7.0, 999.0, 1000.0, 1000.1, 5e6]
    for ms in latencies:
        stats.record(ms, ok=True, model=MODEL)
    stats.record(3.0, ok=False, model=("demand-lstm", 4))
    stats.record(2.0, ok=False, model=None)
    drained = {kw["model"]: kw for kw in stats.drain(T0 + timedelta(minutes=1))}
    assert set(drained) == {MODEL, ("demand-lstm", 4), None}
    main = drained[MODEL]
    assert main["count"] == len(latencies) == sum(main["latency_hist"])
    assert main["errors"] == 0
    assert len(main["latency_hist"]) == len(LATENCY_BOUNDS_MS) + 1
    # Bounds are inclusive: 0.25 is in the first bucket, 1000.0 in the last bounded one.
    assert main["latency_hist"][0] == 2
    assert main["latency_hist"][1] == 1
    assert main["latency_hist"][-2] == 2  # 999.0, 1000.0
    assert main["latency_hist"][-1] == 2  # 1000.1, 5e6: overflow
    assert drained[("demand-lstm", 4)]["errors"] == drained[("demand-lstm", 4)]["count"] == 1


def test_inference_stats_windows_follow_each_other_and_validate(
    factory: EventFactory,
) -> None:
    stats = InferenceStats(T0)
    assert stats.drain(T0 + timedelta(minutes=1)) == []  # no requests, no event
    stats.record(4.0, ok=True, model=MODEL)
    (window,) = stats.drain(T0 + timedelta(minutes=2))
    assert (window["window_start"], window["window_end"]) == (
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=2),
    )
    event = factory.inference(**window)
    assert event["payload"]["count"] == 1
    stats.record(4.0, ok=True, model=MODEL)
    (later,) = stats.drain(T0 + timedelta(minutes=3))
    assert later["window_start"] == T0 + timedelta(minutes=2)


def test_inference_stats_count_every_request_from_many_threads() -> None:
    stats = InferenceStats(T0)
    start = threading.Barrier(8)

    def serve(n: int) -> None:
        start.wait()
        for i in range(1000):
            stats.record(float(i % 300), ok=i % 7 != 0, model=MODEL if n % 2 else None)

    threads = [threading.Thread(target=serve, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    drained = stats.drain(T0 + timedelta(minutes=1))
    assert sum(kw["count"] for kw in drained) == 8000
    assert sum(sum(kw["latency_hist"]) for kw in drained) == 8000
    assert sum(kw["errors"] for kw in drained) == 8 * 143
