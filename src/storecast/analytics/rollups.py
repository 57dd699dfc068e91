"""Rollups kept current at ingest: one batch's new events added to the hourly tables.

Sums are grouped in memory first (``plan_rollups``, which needs no database and so runs
before the write lock), then written with one upsert per table
(``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``) on SQLite and PostgreSQL.
Statements are compiled once per dialect and run on the DBAPI cursor of the ingest
transaction (``storecast.common.rawsql``): this is the cloud's hottest write path.

Forecast points and actuals meet whichever arrives second: a new actual fills the points
already stored for its hour; a new forecast is stored already paired with the actuals
known for its hours. Each pairing adds its sums to ``accuracy_hourly`` exactly once. The
first report wins: one actual per store-hour, one forecast per store, origin and model.
The caller serialises ingestion per store (SQLite's write lock; an advisory lock on
PostgreSQL), which is what makes the read-then-insert steps here race-free.
"""

from __future__ import annotations

import functools
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from storecast.analytics.tables import (
    BUCKET_COLUMNS,
    NO_AGENT,
    NO_MODEL,
    AccuracyHourlyRow,
    DeviceStateRow,
    ErrorHourlyRow,
    ForecastPointRow,
    InferenceHourlyRow,
    ModelEventRow,
    StoreActualRow,
)
from storecast.common.rawsql import RawStatement, dbapi_cursor, timestamp_binder, utc
from storecast.common.telemetry import (
    ActualEvent,
    ErrorEvent,
    ForecastEvent,
    HeartbeatEvent,
    InferenceEvent,
    ModelEvent,
    TelemetryEvent,
    hour_floor,
)

__all__ = ["Rollup", "RollupPlan", "dialect_insert", "plan_rollups", "statements"]

_INFERENCE_SUMS = ("count", "errors", *BUCKET_COLUMNS)
_ACCURACY_SUMS = ("points", "sum_actual", "sum_q50", "sum_abs_err", "covered")
_HOURLY_KEY = ("hour", "store_id", "model_name", "model_version", "agent_version")
_ERROR_KEY = ("hour", "store_id", "component", "kind", "model_name", "model_version")
_STATE_COLUMNS = tuple(c.name for c in DeviceStateRow.__table__.columns)
_V = TypeVar("_V")


def dialect_insert(dialect: Dialect, target: Any) -> Any:
    """The dialect's INSERT for ``target`` (it has ON CONFLICT clauses)."""
    return (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(target)


def _increment(dialect: Dialect, target: Any, keys: Sequence[str], sums: Sequence[str]) -> Any:
    ins = dialect_insert(dialect, target)
    return ins.on_conflict_do_update(
        index_elements=list(keys), set_={name: target.c[name] + ins.excluded[name] for name in sums}
    )


# Forecast points on PostgreSQL: one statement over binary arrays, not one per point.
_POINT_COLUMNS = (
    ("store_id", "varchar"),
    ("ts", "timestamp"),
    ("horizon", "integer"),
    ("model_name", "varchar"),
    ("model_version", "integer"),
    ("origin", "timestamp"),
    ("device_id", "varchar"),
    ("agent_version", "varchar"),
    ("q10", "float8"),
    ("q50", "float8"),
    ("q90", "float8"),
    ("actual", "float8"),
)
_PG_POINTS_INSERT = (
    f"INSERT INTO forecast_points ({', '.join(name for name, _ in _POINT_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'%b::{kind}[]' for _, kind in _POINT_COLUMNS)}) "
    "ON CONFLICT DO NOTHING"
)


def _pg_insert_points(session: Session, rows: list[dict[str, Any]]) -> None:
    cursor = dbapi_cursor(session)
    try:
        cursor.execute(
            _PG_POINTS_INSERT, [[row[name] for row in rows] for name, _ in _POINT_COLUMNS]
        )
    finally:
        cursor.close()


class Statements:
    """Every statement ingestion runs, compiled for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.ts: Callable[[datetime], Any] = timestamp_binder(dialect)
        fp, actual, state = ForecastPointRow, StoreActualRow, DeviceStateRow
        self.agent = RawStatement(
            select(state.agent_version).where(state.device_id == bindparam("device_id")), dialect
        )
        ins = dialect_insert(dialect, state.__table__)
        self.state = RawStatement(
            ins.on_conflict_do_update(
                index_elements=["device_id"],
                set_={k: ins.excluded[k] for k in _STATE_COLUMNS if k != "device_id"},
                where=state.last_heartbeat_at <= ins.excluded.last_heartbeat_at,
            ),
            dialect,
        )
        self.model_event = RawStatement(
            dialect_insert(dialect, ModelEventRow.__table__).on_conflict_do_nothing(), dialect
        )
        self.known_actuals = RawStatement(
            select(actual.ts, actual.sales_units).where(
                actual.store_id == bindparam("store_id"),
                actual.ts >= bindparam("first"),
                actual.ts <= bindparam("last"),
            ),
            dialect,
        )
        self.actual = RawStatement(dialect_insert(dialect, actual.__table__), dialect)
        self.pair = RawStatement(
            update(fp)
            .where(fp.store_id == bindparam("s"), fp.ts == bindparam("t"), fp.actual.is_(None))
            .values(actual=bindparam("a"))
            .returning(fp.model_name, fp.model_version, fp.agent_version, fp.q10, fp.q50, fp.q90),
            dialect,
        )
        self.known_origins = RawStatement(
            select(fp.ts, fp.model_name, fp.model_version).where(
                fp.store_id == bindparam("store_id"),
                fp.horizon == 1,
                fp.ts >= bindparam("first"),
                fp.ts <= bindparam("last"),
            ),
            dialect,
        )
        self.point = RawStatement(
            dialect_insert(dialect, fp.__table__).on_conflict_do_nothing(), dialect
        )
        self.inference = RawStatement(
            _increment(
                dialect,
                InferenceHourlyRow.__table__,
                _HOURLY_KEY,
                ("count", "errors", *BUCKET_COLUMNS),
            ),
            dialect,
        )
        self.errors = RawStatement(
            _increment(
                dialect, ErrorHourlyRow.__table__, (*_ERROR_KEY, "agent_version"), ("count",)
            ),
            dialect,
        )
        self.accuracy = RawStatement(
            _increment(dialect, AccuracyHourlyRow.__table__, _HOURLY_KEY, _ACCURACY_SUMS), dialect
        )


@functools.cache
def _statements(dialect_name: str, dialect: Dialect) -> Statements:
    return Statements(dialect)


def statements(session: Session) -> Statements:
    """The compiled statements for the session's database."""
    dialect = session.get_bind().dialect
    return _statements(dialect.name, dialect)


def _model_key(event: TelemetryEvent) -> tuple[str, int]:
    return (event.model.name, event.model.version) if event.model else (NO_MODEL, 0)


@dataclass
class RollupPlan:
    """What a batch's events add to the rollups, as far as it can be known without the
    database (``plan_rollups``); ``Rollup.apply`` does the rest in the write transaction.

    An agent version of ``None`` stands for the device's stored one: events before the
    batch's first heartbeat ran on the agent of the newest heartbeat stored before it.
    """

    events: int = 0
    inference: dict[tuple[Any, ...], list[int]] = field(default_factory=dict)
    errors: dict[tuple[Any, ...], int] = field(default_factory=dict)
    newest: HeartbeatEvent | None = None  # the batch's newest heartbeat
    actuals: list[ActualEvent] = field(default_factory=list)
    forecasts: list[tuple[ForecastEvent, str | None]] = field(default_factory=list)
    models: list[tuple[ModelEvent, str | None]] = field(default_factory=list)
    stored_agent: bool = False  # whether any sum is credited to the stored agent


def plan_rollups(events: Iterable[TelemetryEvent]) -> RollupPlan:
    """Group ``events`` (new ones, in batch order) into rollup sums; pure, so it can run
    before the write lock is taken."""
    plan = RollupPlan()
    inference: dict[tuple[Any, ...], list[int]] = {}
    agent: str | None = None  # later events ran on the agent of the heartbeat before them
    for event in events:
        plan.events += 1
        if isinstance(event, InferenceEvent):
            name, version = _model_key(event)
            p = event.payload
            key = (hour_floor(p.window_start), event.store_id, name, version, agent)
            found = inference.get(key)
            if found is None:
                inference[key] = [p.count, p.errors, *p.latency_hist]
            else:
                found[0] += p.count
                found[1] += p.errors
                found[2:] = map(operator.add, found[2:], p.latency_hist)
        elif isinstance(event, HeartbeatEvent):
            agent = event.payload.agent_version
            if plan.newest is None or event.ts >= plan.newest.ts:
                plan.newest = event
            continue
        elif isinstance(event, ErrorEvent):
            name, version = _model_key(event)
            e = event.payload
            where = (hour_floor(event.ts), event.store_id, e.component, e.kind, name, version)
            plan.errors[(*where, agent)] = plan.errors.get((*where, agent), 0) + e.count
        elif isinstance(event, ActualEvent):
            plan.actuals.append(event)
            continue
        elif isinstance(event, ForecastEvent):
            plan.forecasts.append((event, agent))
        elif isinstance(event, ModelEvent):
            plan.models.append((event, agent))
        plan.stored_agent = plan.stored_agent or agent is None
    plan.inference = inference
    return plan


def _credit(
    groups: dict[tuple[Any, ...], _V], agent: str, add: Callable[[_V, _V], _V]
) -> dict[tuple[Any, ...], _V]:
    """``groups`` with the stored agent (``None``, last in each key) named ``agent``."""
    credited: dict[tuple[Any, ...], _V] = {}
    for key, value in groups.items():
        if key[-1] is None:
            key = (*key[:-1], agent)
        found = credited.get(key)
        credited[key] = value if found is None else add(found, value)
    return credited


class Rollup:
    """Adds one batch's new events (one device's, in one store) to the rollup tables."""

    def __init__(self, session: Session, device_id: str) -> None:
        self.session = session
        self.sql = statements(session)
        self.device_id = device_id
        self.accuracy: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0.0] * 5)

    def apply(self, plan: RollupPlan) -> None:
        """Write ``plan`` (made from new events only: already deduplicated by event id)."""
        if not plan.events:
            return
        agent = self._stored_agent() if plan.stored_agent else NO_AGENT
        if plan.newest is not None:
            self.sql.state.executemany(self.session, [self._state_row(plan.newest)])
        models = [
            self._model_row(e, agent if ran_on is None else ran_on) for e, ran_on in plan.models
        ]
        self.sql.model_event.executemany(self.session, models)
        # Actuals first: they pair with points stored by earlier batches. Points stored
        # below are inserted already paired, so no pairing is ever counted twice.
        self._store_actuals(plan.actuals)
        forecasts = [(e, agent if ran_on is None else ran_on) for e, ran_on in plan.forecasts]
        self._store_forecasts(forecasts)
        inference = _credit(plan.inference, agent, lambda a, b: list(map(operator.add, a, b)))
        self._flush(inference, _credit(plan.errors, agent, operator.add))

    def _stored_agent(self) -> str:
        found = self.sql.agent.fetchall(self.session, {"device_id": self.device_id})
        return str(found[0][0]) if found else NO_AGENT

    def _pair(
        self, key: tuple[Any, ...], q10: float, q50: float, q90: float, actual: float
    ) -> None:
        sums = self.accuracy[key]
        sums[0] += 1
        sums[1] += actual
        sums[2] += q50
        sums[3] += abs(q50 - actual)
        sums[4] += 1 if q10 <= actual <= q90 else 0

    def _state_row(self, beat: HeartbeatEvent) -> dict[str, Any]:
        name, version = _model_key(beat)
        p = beat.payload
        return {
            "device_id": beat.device_id,
            "store_id": beat.store_id,
            "last_heartbeat_at": self.sql.ts(beat.ts),
            "agent_version": p.agent_version,
            "model_name": name,
            "model_version": version,
            "cpu_pct": p.cpu_pct,
            "rss_mb": p.rss_mb,
            "disk_free_mb": p.disk_free_mb,
            "uptime_s": p.uptime_s,
            "outbox_depth": p.outbox_depth,
            "dropped_events": p.dropped_events,
            "last_poll_ok": p.last_poll_ok,
            "last_upload_ok": p.last_upload_ok,
        }

    def _model_row(self, event: ModelEvent, agent: str) -> dict[str, Any]:
        p = event.payload
        return {
            "event_id": str(event.event_id),
            "ts": self.sql.ts(event.ts),
            "device_id": event.device_id,
            "store_id": event.store_id,
            "action": p.action,
            "model_name": p.name,
            "model_version": p.version,
            "agent_version": agent,
            "digest": p.digest,
            "reason": p.reason,
            "duration_ms": p.duration_ms,
        }

    def _known(self, stmt: RawStatement, store_id: str, hours: list[datetime]) -> list[Any]:
        bounds = {"store_id": store_id, "first": self.sql.ts(min(hours))}
        return stmt.fetchall(self.session, {**bounds, "last": self.sql.ts(max(hours))})

    def _store_actuals(self, actuals: Sequence[ActualEvent]) -> None:
        if not actuals:
            return
        store_id = actuals[0].store_id
        stored = {
            utc(ts)
            for ts, _ in self._known(
                self.sql.known_actuals, store_id, [a.payload.ts for a in actuals]
            )
        }
        new: dict[datetime, ActualEvent] = {}
        for a in actuals:
            hour = a.payload.ts
            if hour not in stored and hour not in new:
                new[hour] = a
        rows = [
            {
                "store_id": store_id,
                "ts": self.sql.ts(hour),
                "sales_units": a.payload.sales_units,
                "footfall": a.payload.footfall,
                "device_id": a.device_id,
            }
            for hour, a in new.items()
        ]
        self.sql.actual.executemany(self.session, rows)
        for row, (hour, a) in zip(rows, new.items(), strict=True):
            sales = a.payload.sales_units
            paired = self.sql.pair.fetchall(
                self.session, {"s": store_id, "t": row["ts"], "a": sales}
            )
            for name, version, agent, q10, q50, q90 in paired:
                self._pair((hour, store_id, name, version, agent), q10, q50, q90, sales)

    def _store_forecasts(self, forecasts: Sequence[tuple[ForecastEvent, str]]) -> None:
        if not forecasts:
            return
        store_id = forecasts[0][0].store_id
        points = [p.ts for f, _ in forecasts for p in f.payload.points]
        known = {
            utc(ts): sales for ts, sales in self._known(self.sql.known_actuals, store_id, points)
        }
        origins = [f.payload.origin for f, _ in forecasts]
        seen = {
            (utc(ts), name, version)
            for ts, name, version in self._known(self.sql.known_origins, store_id, origins)
        }
        rows: list[dict[str, Any]] = []
        for event, agent in forecasts:
            name, version = _model_key(event)
            origin = event.payload.origin
            if (origin, name, version) in seen:
                continue  # this origin's forecast by this model was reported already
            seen.add((origin, name, version))
            for k, point in enumerate(event.payload.points):
                actual = known.get(point.ts)
                rows.append(
                    {
                        "store_id": store_id,
                        "ts": self.sql.ts(point.ts),
                        "horizon": k + 1,
                        "model_name": name,
                        "model_version": version,
                        "origin": self.sql.ts(origin),
                        "device_id": event.device_id,
                        "agent_version": agent,
                        "q10": point.q10,
                        "q50": point.q50,
                        "q90": point.q90,
                        "actual": actual,
                    }
                )
                if actual is not None:
                    key = (point.ts, store_id, name, version, agent)
                    self._pair(key, point.q10, point.q50, point.q90, actual)
        if rows and self.session.get_bind().dialect.name == "postgresql":
            _pg_insert_points(self.session, rows)
        else:
            self.sql.point.executemany(self.session, rows)

    def _flush(
        self, inference: dict[tuple[Any, ...], list[int]], counts: dict[tuple[Any, ...], int]
    ) -> None:
        ts = self.sql.ts
        errors: dict[tuple[Any, ...], list[Any]] = {k: [v] for k, v in counts.items()}
        work: list[tuple[RawStatement, tuple[str, ...], tuple[str, ...], dict[Any, list[Any]]]] = [
            (self.sql.inference, _HOURLY_KEY, _INFERENCE_SUMS, inference),
            (self.sql.errors, (*_ERROR_KEY, "agent_version"), ("count",), errors),
            (self.sql.accuracy, _HOURLY_KEY, _ACCURACY_SUMS, dict(self.accuracy)),
        ]
        for stmt, keys, sums, groups in work:
            # A fixed row order makes concurrent PostgreSQL upserts lock rows in one order.
            ordered = sorted(groups.items(), key=lambda item: tuple(map(str, item[0])))
            stmt.executemany(
                self.session,
                [
                    {
                        **dict(zip(keys, (ts(key[0]), *key[1:]), strict=True)),
                        **dict(zip(sums, values, strict=True)),
                    }
                    for key, values in ordered
                ],
            )
