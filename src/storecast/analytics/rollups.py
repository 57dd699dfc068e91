"""Rollups kept current at ingest: one batch's new events added to the hourly tables.

Sums are grouped in memory first, then written with one upsert per table
(``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``), on SQLite and PostgreSQL.
Forecast points and actuals meet whichever arrives second: a new actual fills the points
already stored for its hour; a new forecast point is stored with the actual when that
hour is already known. Each pairing adds its sums to ``accuracy_hourly`` exactly once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
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

__all__ = ["Rollup", "insert_for"]


def insert_for(session: Session, target: Table | Any) -> Any:
    """The dialect's INSERT (with ON CONFLICT support)."""
    name = session.get_bind().dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(target)


def _model_key(event: TelemetryEvent) -> tuple[str, int]:
    return (event.model.name, event.model.version) if event.model else (NO_MODEL, 0)


class Rollup:
    """Adds one batch's new events to the rollup tables (sums grouped in memory first)."""

    def __init__(self, session: Session, device_id: str) -> None:
        self.session = session
        self.device_id = device_id
        self.inference: dict[tuple[Any, ...], list[int]] = defaultdict(
            lambda: [0] * (2 + len(BUCKET_COLUMNS))
        )
        self.errors: dict[tuple[Any, ...], int] = defaultdict(int)
        self.accuracy: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0.0] * 5)

    def apply(self, events: Sequence[TelemetryEvent]) -> None:
        if not events:
            return
        agent = self._stored_agent()
        newest: HeartbeatEvent | None = None
        actuals: list[ActualEvent] = []
        forecasts: list[tuple[ForecastEvent, str]] = []
        model_rows: list[dict[str, Any]] = []
        for event in events:
            if isinstance(event, HeartbeatEvent):
                agent = event.payload.agent_version  # later events ran on this agent
                if newest is None or event.ts >= newest.ts:
                    newest = event
            elif isinstance(event, InferenceEvent):
                self._add_inference(event, agent)
            elif isinstance(event, ErrorEvent):
                self._add_error(event, agent)
            elif isinstance(event, ActualEvent):
                actuals.append(event)
            elif isinstance(event, ForecastEvent):
                forecasts.append((event, agent))
            elif isinstance(event, ModelEvent):
                model_rows.append(_model_row(event, agent))
        if newest is not None:
            self._upsert_state(newest)
        if model_rows:
            self.session.execute(insert_for(self.session, ModelEventRow.__table__), model_rows)
        # Actuals first: they pair with points stored by earlier batches. Points stored
        # below are inserted already paired, so no pairing is ever counted twice.
        self._store_actuals(actuals)
        self._store_forecasts(forecasts)
        self._flush()

    def _stored_agent(self) -> str:
        found = self.session.execute(
            select(DeviceStateRow.agent_version).where(DeviceStateRow.device_id == self.device_id)
        ).scalar()
        return NO_AGENT if found is None else str(found)

    def _add_inference(self, event: InferenceEvent, agent: str) -> None:
        name, version = _model_key(event)
        sums = self.inference[
            (hour_floor(event.payload.window_start), event.store_id, name, version, agent)
        ]
        sums[0] += event.payload.count
        sums[1] += event.payload.errors
        for i, n in enumerate(event.payload.latency_hist):
            sums[2 + i] += n

    def _add_error(self, event: ErrorEvent, agent: str) -> None:
        name, version = _model_key(event)
        payload = event.payload
        key = (hour_floor(event.ts), event.store_id, payload.component, payload.kind)
        self.errors[(*key, name, version, agent)] += payload.count

    def _pair(
        self, hour: datetime, store_id: str, model: tuple[str, int], agent: str, point: Any
    ) -> None:
        q10, q50, q90, actual = point
        sums = self.accuracy[(hour, store_id, model[0], model[1], agent)]
        sums[0] += 1
        sums[1] += actual
        sums[2] += q50
        sums[3] += abs(q50 - actual)
        sums[4] += 1 if q10 <= actual <= q90 else 0

    def _upsert_state(self, beat: HeartbeatEvent) -> None:
        name, version = _model_key(beat)
        p = beat.payload
        row = {
            "device_id": beat.device_id,
            "store_id": beat.store_id,
            "last_heartbeat_at": beat.ts,
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
        ins = insert_for(self.session, DeviceStateRow.__table__)
        stmt = ins.on_conflict_do_update(
            index_elements=["device_id"],
            set_={k: ins.excluded[k] for k in row if k != "device_id"},
            where=DeviceStateRow.last_heartbeat_at <= ins.excluded.last_heartbeat_at,
        )
        self.session.execute(stmt, row)

    def _store_actuals(self, actuals: Iterable[ActualEvent]) -> None:
        rows = {
            (a.store_id, a.payload.ts): {
                "store_id": a.store_id,
                "ts": a.payload.ts,
                "sales_units": a.payload.sales_units,
                "footfall": a.payload.footfall,
                "device_id": a.device_id,
            }
            for a in actuals
        }
        if not rows:
            return
        stmt = (
            insert_for(self.session, StoreActualRow.__table__)
            .on_conflict_do_nothing(index_elements=["store_id", "ts"])
            .returning(StoreActualRow.store_id, StoreActualRow.ts)
        )
        new = self.session.execute(stmt, list(rows.values())).all()
        fp = ForecastPointRow
        for store_id, ts in new:
            sales = rows[(store_id, ts)]["sales_units"]
            paired = self.session.execute(
                update(fp)
                .where(fp.store_id == store_id, fp.ts == ts, fp.actual.is_(None))
                .values(actual=sales)
                .returning(
                    fp.model_name, fp.model_version, fp.agent_version, fp.q10, fp.q50, fp.q90
                )
            ).all()
            for name, version, agent, q10, q50, q90 in paired:
                self._pair(ts, store_id, (name, version), agent, (q10, q50, q90, sales))

    def _store_forecasts(self, forecasts: Sequence[tuple[ForecastEvent, str]]) -> None:
        if not forecasts:
            return
        store_id = forecasts[0][0].store_id  # a batch is one device's, in one store
        hours = [p.ts for f, _ in forecasts for p in f.payload.points]
        known = dict(
            self.session.execute(
                select(StoreActualRow.ts, StoreActualRow.sales_units).where(
                    and_(
                        StoreActualRow.store_id == store_id,
                        StoreActualRow.ts >= min(hours),
                        StoreActualRow.ts <= max(hours),
                    )
                )
            ).all()
        )
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for event, agent in forecasts:
            name, version = _model_key(event)
            for k, point in enumerate(event.payload.points):
                key = (point.ts, k + 1, name, version)
                if key in rows:
                    continue
                rows[key] = {
                    "store_id": store_id,
                    "ts": point.ts,
                    "horizon": k + 1,
                    "model_name": name,
                    "model_version": version,
                    "origin": event.payload.origin,
                    "device_id": event.device_id,
                    "agent_version": agent,
                    "q10": point.q10,
                    "q50": point.q50,
                    "q90": point.q90,
                    "actual": known.get(point.ts),
                }
        stmt = (
            insert_for(self.session, ForecastPointRow.__table__)
            .on_conflict_do_nothing(
                index_elements=["store_id", "ts", "horizon", "model_name", "model_version"]
            )
            .returning(
                ForecastPointRow.ts,
                ForecastPointRow.horizon,
                ForecastPointRow.model_name,
                ForecastPointRow.model_version,
            )
        )
        for ts, horizon, name, version in self.session.execute(stmt, list(rows.values())).all():
            row = rows[(ts, horizon, name, version)]
            if row["actual"] is not None:
                pair = (row["q10"], row["q50"], row["q90"], row["actual"])
                self._pair(ts, store_id, (name, version), row["agent_version"], pair)

    def _flush(self) -> None:
        self._increment(
            InferenceHourlyRow.__table__,
            ["hour", "store_id", "model_name", "model_version", "agent_version"],
            ["count", "errors", *BUCKET_COLUMNS],
            self.inference,
        )
        self._increment(
            ErrorHourlyRow.__table__,
            [
                "hour",
                "store_id",
                "component",
                "kind",
                "model_name",
                "model_version",
                "agent_version",
            ],
            ["count"],
            {k: [v] for k, v in self.errors.items()},
        )
        self._increment(
            AccuracyHourlyRow.__table__,
            ["hour", "store_id", "model_name", "model_version", "agent_version"],
            ["points", "sum_actual", "sum_q50", "sum_abs_err", "covered"],
            self.accuracy,
        )

    def _increment(
        self,
        target: Any,
        keys: list[str],
        sums: list[str],
        groups: dict[tuple[Any, ...], list[Any]],
    ) -> None:
        if not groups:
            return
        ins = insert_for(self.session, target)
        stmt = ins.on_conflict_do_update(
            index_elements=keys,
            set_={name: target.c[name] + ins.excluded[name] for name in sums},
        )
        rows = [
            {**dict(zip(keys, key, strict=True)), **dict(zip(sums, values, strict=True))}
            for key, values in sorted(groups.items(), key=lambda item: _sortable(item[0]))
        ]
        self.session.execute(stmt, rows)


def _sortable(key: tuple[Any, ...]) -> tuple[str, ...]:
    # A fixed row order makes concurrent PostgreSQL upserts take row locks in one order.
    return tuple(str(part) for part in key)


def _model_row(event: ModelEvent, agent: str) -> dict[str, Any]:
    p = event.payload
    return {
        "event_id": str(event.event_id),
        "ts": event.ts,
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
