"""The outbox: on disk, in order, bounded with a drop order, safe across restarts."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storecast.common.clock import FixedClock
from storecast.edge.events import EventFactory, InvalidEvent
from storecast.edge.localdb import LocalDB
from storecast.edge.outbox import PRIORITY, Outbox

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
MODEL = ("demand-lstm", 1)


@pytest.fixture
def factory() -> EventFactory:
    return EventFactory("dev-1", "S0001", FixedClock(T0))


def make(factory: EventFactory, kind: str) -> dict[str, Any]:
    """One valid event of ``kind``."""
    if kind == "heartbeat":
        return factory.heartbeat(
            cpu_pct=1.0,
            rss_mb=50.0,
            disk_free_mb=900.0,
            uptime_s=10.0,
            agent_version="0.1.0",
            outbox_depth=0,
            dropped_events=0,
            last_poll_ok=True,
            last_upload_ok=True,
            model=MODEL,
        )
    if kind == "inference":
        hist = [1] + [0] * 12
        end = T0 + timedelta(minutes=1)
        return factory.inference(
            window_start=T0, window_end=end, count=1, errors=0, latency_hist=hist, model=MODEL
        )
    if kind == "forecast":
        return factory.forecast(origin=T0, points=[(T0, 1.0, 2.0, 3.0)], model=MODEL)
    if kind == "actual":
        return factory.actual(hour=T0, sales_units=4.0, footfall=9.0, model=MODEL)
    if kind == "model":
        return factory.model_event(action="activated", name="demand-lstm", version=1, model=MODEL)
    return factory.error(component="updater", kind="timeout", message="slow", model=MODEL)


def queued_ids(outbox: Outbox) -> list[str]:
    return [item.event_id for item in outbox.peek(10**6)]


def test_priority_classes_cover_every_event_type() -> None:
    assert PRIORITY == {
        "heartbeat": 0, "inference": 0, "forecast": 1, "actual": 1, "model": 2, "error": 2
    }  # fmt: skip


def test_peek_returns_the_oldest_events_first_as_their_stored_json(
    agent_db: LocalDB, factory: EventFactory
) -> None:
    outbox = Outbox(agent_db)
    events = [make(factory, kind) for kind in ("error", "heartbeat", "forecast", "actual")]
    assert outbox.put(events[:2]) == 0
    assert outbox.put(events[2:]) == 0
    items = outbox.peek(3)
    assert [item.event_id for item in items] == [e["event_id"] for e in events[:3]]
    assert [json.loads(item.body) for item in items] == events[:3]
    assert items[0].seq < items[1].seq < items[2].seq
    assert outbox.depth() == 4


def test_ack_removes_only_the_acknowledged_events(agent_db: LocalDB, factory: EventFactory) -> None:
    outbox = Outbox(agent_db)
    events = [make(factory, "heartbeat") for _ in range(5)]
    outbox.put(events)
    items = outbox.peek()
    outbox.ack([items[0].seq, items[3].seq, 10**9])  # an unknown seq is ignored
    assert queued_ids(outbox) == [events[i]["event_id"] for i in (1, 2, 4)]
    assert outbox.depth() == 3
    outbox.ack([item.seq for item in outbox.peek()])
    assert outbox.depth() == 0
    assert outbox.peek() == []


def test_put_joins_the_callers_transaction(agent_db: LocalDB, factory: EventFactory) -> None:
    outbox = Outbox(agent_db)
    with agent_db.transaction() as conn:
        conn.execute("CREATE TABLE hours (hour TEXT PRIMARY KEY)")
    with pytest.raises(RuntimeError), agent_db.transaction() as conn:
        conn.execute("INSERT INTO hours VALUES ('09:00')")
        outbox.put([make(factory, "actual")])
        raise RuntimeError("power cut before commit")
    assert outbox.depth() == 0
    assert outbox.peek() == []
    with agent_db.transaction() as conn:
        conn.execute("INSERT INTO hours VALUES ('09:00')")
        outbox.put([make(factory, "actual")])
    assert outbox.depth() == 1


def test_full_outbox_drops_the_oldest_stats_first_then_forecasts_then_lifecycle(
    agent_db: LocalDB, factory: EventFactory
) -> None:
    outbox = Outbox(agent_db, capacity=6)
    kinds = ["model", "heartbeat", "forecast", "inference", "actual", "error"]
    named = {kind: make(factory, kind) for kind in kinds}
    assert outbox.put(list(named.values())) == 0

    assert outbox.put([make(factory, "error")]) == 1  # the oldest stat: the heartbeat
    assert outbox.put([make(factory, "heartbeat")]) == 1  # then the inference, older than it
    assert outbox.dropped() == 2
    ids = set(queued_ids(outbox))
    assert named["heartbeat"]["event_id"] not in ids
    assert named["inference"]["event_id"] not in ids

    # No stats left but the newest heartbeat: it goes, then forecasts and actuals, oldest first.
    assert outbox.put([make(factory, "model") for _ in range(3)]) == 3
    remaining = [json.loads(item.body)["type"] for item in outbox.peek()]
    assert remaining == ["model", "error", "error", "model", "model", "model"]
    assert outbox.dropped() == 5
    assert outbox.depth() == 6

    # Only lifecycle and error events left: the oldest of those go last of all.
    first = queued_ids(outbox)[0]
    assert outbox.put([make(factory, "error")]) == 1
    assert first not in queued_ids(outbox)


def test_a_heartbeat_arriving_at_a_full_outbox_of_lifecycle_events_is_dropped(
    agent_db: LocalDB, factory: EventFactory
) -> None:
    outbox = Outbox(agent_db, capacity=2)
    keep = [make(factory, "model"), make(factory, "error")]
    outbox.put(keep)
    assert outbox.put([make(factory, "heartbeat")]) == 1
    assert queued_ids(outbox) == [e["event_id"] for e in keep]


def test_a_put_larger_than_the_capacity_keeps_the_most_important(
    agent_db: LocalDB, factory: EventFactory
) -> None:
    outbox = Outbox(agent_db, capacity=3)
    events = [make(factory, k) for k in ("model", "heartbeat", "inference", "forecast", "error")]
    assert outbox.put(events) == 2
    assert queued_ids(outbox) == [events[i]["event_id"] for i in (0, 3, 4)]


def test_pending_events_and_drop_counter_survive_a_reopen_byte_identical(
    agent_db: LocalDB, factory: EventFactory
) -> None:
    outbox = Outbox(agent_db, capacity=4)
    outbox.put([make(factory, "heartbeat") for _ in range(6)])
    before = outbox.peek()
    agent_db.close()

    reopened = LocalDB(agent_db.path)
    try:
        again = Outbox(reopened, capacity=4)
        assert again.peek() == before  # same seqs, ids and bytes
        assert (again.depth(), again.dropped()) == (4, 2)
        again.put([make(factory, "error")])
        assert again.dropped() == 3
        assert again.peek()[-1].seq > before[-1].seq  # seqs are never reused
    finally:
        reopened.close()


def test_set_aside_moves_events_out_and_keeps_them_for_inspection(
    agent_db: LocalDB, factory: EventFactory
) -> None:
    outbox = Outbox(agent_db)
    events = [make(factory, k) for k in ("forecast", "actual", "error")]
    outbox.put(events)
    first, second, third = outbox.peek()
    outbox.set_aside([(second.seq, "store_id: wrong store"), (10**9, "gone already")])
    assert queued_ids(outbox) == [first.event_id, third.event_id]
    assert (outbox.depth(), outbox.moved_aside(), outbox.dropped()) == (2, 1, 0)
    (rejected,) = outbox.rejected()
    assert (rejected.seq, rejected.event_id, rejected.type) == (
        second.seq,
        second.event_id,
        "actual",
    )
    assert rejected.reason == "store_id: wrong store"
    assert rejected.body == second.body


def test_rejected_events_kept_for_inspection_are_bounded(
    agent_db: LocalDB, factory: EventFactory
) -> None:
    outbox = Outbox(agent_db, rejected_capacity=3)
    outbox.put([make(factory, "heartbeat") for _ in range(5)])
    items = outbox.peek()
    outbox.set_aside([(item.seq, f"bad {n}") for n, item in enumerate(items)])
    assert [r.reason for r in outbox.rejected()] == ["bad 4", "bad 3", "bad 2"]  # newest first
    assert outbox.moved_aside() == 5
    assert outbox.depth() == 0


def test_put_refuses_an_event_of_unknown_type(agent_db: LocalDB, factory: EventFactory) -> None:
    outbox = Outbox(agent_db)
    with pytest.raises(InvalidEvent, match="type"):
        outbox.put([make(factory, "heartbeat"), {**make(factory, "error"), "type": "gossip"}])
    with pytest.raises(InvalidEvent, match="event_id"):
        outbox.put([{"type": "error"}])
    assert outbox.depth() == 0


def test_dropping_for_room_walks_the_priority_index(agent_db: LocalDB) -> None:
    # put() stays O(events) at any depth: the depth is a counter, the drop order an index.
    Outbox(agent_db)
    with sqlite3.connect(agent_db.path) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM outbox ORDER BY priority, seq LIMIT 3"
        ).fetchall()
    assert "outbox_by_priority" in " ".join(str(row) for row in plan)
    assert "TEMP B-TREE" not in " ".join(str(row) for row in plan)


def test_the_depth_counter_is_recounted_on_open(agent_db: LocalDB, factory: EventFactory) -> None:
    outbox = Outbox(agent_db)
    outbox.put([make(factory, "heartbeat") for _ in range(3)])
    with agent_db.transaction() as conn:  # a counter out of step, however it happened
        conn.execute("UPDATE outbox_meta SET value = 99 WHERE key = 'depth'")
    assert Outbox(agent_db).depth() == 3
