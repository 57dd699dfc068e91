"""Ingestion's work done before the write lock: one-pass batch validation, rollup plans,
and statements that write many rows at once; each must change nothing that is stored."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select

from storecast.analytics import ingest
from storecast.analytics.ingest import ingest_batch, screen_batch
from storecast.analytics.rollups import dialect_insert, plan_rollups
from storecast.analytics.tables import InferenceHourlyRow
from storecast.common.clock import FixedClock
from storecast.common.cloud import Database
from storecast.common.db import make_engine, make_sessionmaker, transaction, upgrade
from storecast.common.rawsql import RawStatement, _RowsInsert
from storecast.common.telemetry import TelemetryEvent, validate_batch, validate_event
from tests.analytics.conftest import HOUR0, EventMaker

NOW = HOUR0 + timedelta(days=1)


def _body(events: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"events": events, **extra}).encode()


def _typed(events: list[dict[str, Any]]) -> list[TelemetryEvent]:
    checked = [validate_event(i, raw) for i, raw in enumerate(events)]
    assert all(not hasattr(event, "reason") for event in checked)
    return checked  # type: ignore[return-value]


def _mixed(maker: EventMaker) -> list[dict[str, Any]]:
    return [
        maker.inference(HOUR0, [3, 1], errors=1),
        maker.heartbeat(HOUR0 + timedelta(minutes=5), agent="B"),
        maker.forecast(HOUR0, [10.0, 12.0]),
        maker.actual(HOUR0, 11.0),
        maker.model_event(HOUR0, "activated", 1),
        maker.error(HOUR0, count=2),
        maker.inference(HOUR0 + timedelta(hours=1), [2]),
    ]


def test_a_valid_batch_validates_in_one_pass_as_event_by_event() -> None:
    events = _mixed(EventMaker("dev-1", "S0001"))
    assert validate_batch(_body(events)) == _typed(events)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"events": {}}',
        _body([], more=1),
        _body([EventMaker("dev-1", "S0001").heartbeat(HOUR0, cpu_pct=-1.0)]),
        _body([{**EventMaker("dev-1", "S0001").error(HOUR0), "extra": 1}]),
    ],
)
def test_a_batch_with_anything_amiss_is_left_to_event_by_event_checks(body: bytes) -> None:
    assert validate_batch(body) is None


@pytest.mark.parametrize(
    "case", ["valid", "future", "other_store", "upper_case_id", "invalid", "other_device"]
)
def test_screening_answers_alike_with_or_without_the_one_pass_check(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    maker = EventMaker("dev-1", "S0001")
    events = _mixed(maker)
    if case == "future":
        events.append(maker.heartbeat(NOW + timedelta(days=2)))
    elif case == "other_store":
        events.append(EventMaker("dev-1", "S0002").heartbeat(HOUR0))
    elif case == "upper_case_id":
        events[0]["event_id"] = str(uuid.uuid4()).upper()
        late = maker.heartbeat(NOW + timedelta(days=2))
        events.append({**late, "event_id": late["event_id"].upper()})
    elif case == "invalid":
        events.insert(1, maker.error(HOUR0, count=0))
    elif case == "other_device":
        events.append(EventMaker("dev-2", "S0001").heartbeat(HOUR0))

    def screen() -> Any:
        try:
            screened = screen_batch(_body(events), "dev-1", "S0001", NOW)
        except ingest.BatchRefused as exc:
            return (exc.status, exc.code, exc.message)
        return (screened.events, screened.rejected, screened.packed, screened.rollups)

    fast = screen()
    monkeypatch.setattr(ingest, "validate_batch", lambda body: None)
    assert fast == screen()


def test_events_before_the_first_heartbeat_are_credited_to_the_stored_agent() -> None:
    maker = EventMaker("dev-1", "S0001", {"name": "m", "version": 2})
    plan = plan_rollups(_typed(_mixed(maker)))
    assert plan.events == 7
    assert plan.stored_agent
    assert sorted(plan.inference, key=str) == [
        (HOUR0, "S0001", "m", 2, None),
        (HOUR0 + timedelta(hours=1), "S0001", "m", 2, "B"),
    ]
    assert plan.inference[(HOUR0, "S0001", "m", 2, None)][:4] == [4, 1, 3, 1]
    assert [agent for _, agent in plan.forecasts] == [agent for _, agent in plan.models] == ["B"]
    assert list(plan.errors.values()) == [2]
    assert [a.payload.sales_units for a in plan.actuals] == [11.0]


def test_a_batch_opening_with_a_heartbeat_needs_no_stored_agent() -> None:
    maker = EventMaker("dev-1", "S0001")
    plan = plan_rollups(_typed([maker.heartbeat(HOUR0), maker.inference(HOUR0, [1])]))
    assert not plan.stored_agent
    assert plan.newest is not None
    assert list(plan.inference) == [(HOUR0, "S0001", "demand-lstm", 1, "1.4.0")]


def test_a_resent_heartbeat_leaves_new_events_on_the_stored_agent(database_url: str) -> None:
    """Only new events count: a stored heartbeat sent again does not say which agent the
    events after it ran on (the device's newest heartbeat does)."""
    upgrade(database_url)
    database = Database.connect(database_url, FixedClock(NOW))
    maker = EventMaker("dev-1", "S0001")
    old_b = maker.heartbeat(HOUR0 + timedelta(minutes=1), agent="B")
    newer_a = maker.heartbeat(HOUR0 + timedelta(minutes=2), agent="A")
    try:
        for events in ([old_b], [newer_a], [old_b, maker.inference(HOUR0, [1, 2])]):
            with database.transaction(write=True) as session:
                ack = ingest_batch(session, "dev-1", _body(events), NOW)
        assert (ack.accepted, ack.duplicates) == (1, 1)
        row = InferenceHourlyRow
        with database.transaction() as session:
            found = [tuple(r) for r in session.execute(select(row.agent_version, row.count))]
    finally:
        database.engine.dispose()
    assert found == [("A", 3)]


def test_multi_row_inserts_come_in_a_few_shapes_within_the_parameter_limit() -> None:
    rows = _RowsInsert.of("INSERT INTO t (a, b, c) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
    assert rows is not None
    for total in (1, 7, 96, 1000):
        sizes = rows.sizes(total)
        assert sum(sizes) == total
        assert all(size & (size - 1) == 0 and size * 3 <= 999 for size in sizes)
    assert rows.sql(2) == (
        "INSERT INTO t (a, b, c) VALUES (?, ?, ?), (?, ?, ?) ON CONFLICT DO NOTHING"
    )
    assert _RowsInsert.of("UPDATE t SET a = ?") is None
    assert _RowsInsert.of("INSERT INTO t (a, b) VALUES (?, 1)") is None


def test_many_rows_upsert_as_they_would_one_by_one(tmp_path: Path) -> None:
    table = Table("sums", MetaData(), Column("k", String, primary_key=True), Column("n", Integer))
    engine = make_engine(f"sqlite:///{tmp_path / 'sums.db'}")
    table.create(engine)
    ins = dialect_insert(engine.dialect, table)
    upsert = RawStatement(
        ins.on_conflict_do_update(index_elements=["k"], set_={"n": table.c.n + ins.excluded.n}),
        engine.dialect,
    )
    rows = [{"k": f"key{i % 13}", "n": i} for i in range(700)]  # keys repeat in a statement
    try:
        with transaction(make_sessionmaker(engine), write=True) as session:
            upsert.executemany(session, rows)
        with engine.connect() as conn:
            stored = {k: n for k, n in conn.execute(select(table.c.k, table.c.n))}
    finally:
        engine.dispose()
    assert stored == {f"key{k}": sum(range(k, 700, 13)) for k in range(13)}
