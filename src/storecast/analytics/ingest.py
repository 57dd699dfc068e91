"""Telemetry ingestion: validate a device's batch, store new events, keep rollups current.

``ingest_batch`` does the whole job in one write transaction, so a batch is either fully
applied or not at all, and a resent batch finds its events already stored and counts
them as duplicates (the raw table's primary key is the event id). Only events inserted
by this call touch a rollup, which is what makes ingestion exactly-once.

Forecast points and actuals meet whichever arrives second: a new actual fills the points
already stored for its hour; a new forecast point is stored with the actual when that
hour is already known. Each pairing adds its sums to ``accuracy_hourly`` once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import column, select, table, text
from sqlalchemy.orm import Session

from storecast.analytics.rollups import Rollup, insert_for
from storecast.analytics.schemas import TelemetryAck
from storecast.analytics.tables import (
    TelemetryEventRow,
)
from storecast.common.telemetry import (
    EventRejection,
    TelemetryEvent,
    validate_event,
)

__all__ = ["FUTURE_LIMIT", "IngestError", "ingest_batch", "screen_batch"]

FUTURE_LIMIT = timedelta(days=1)  # events stamped later than now + this are refused

# The registry's device table, read (not imported) to check which store a device is in.
_DEVICES = table("devices", column("device_id"), column("store_id"))


class IngestError(Exception):
    """The whole batch is refused (another device's events): the view answers 403."""


@dataclass
class Screened:
    """A batch split into typed events and per-event rejections (pure; no I/O)."""

    events: list[TelemetryEvent] = field(default_factory=list)
    raws: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[EventRejection] = field(default_factory=list)


def screen_batch(
    raw_events: Sequence[Any], device_id: str, store_id: str | None, now: datetime
) -> Screened:
    """Validate every event of a batch sent by ``device_id`` (enrolled in ``store_id``).

    Raises ``IngestError`` when any event names another device: a device never speaks
    for another one, and such a batch is refused whole. Everything else that is wrong is
    a per-event rejection, so one bad event never blocks a device's queue.
    """
    for index, raw in enumerate(raw_events):
        claimed = raw.get("device_id") if isinstance(raw, dict) else None
        if isinstance(claimed, str) and claimed != device_id:
            raise IngestError(
                f"event {index} is for device {claimed!r}; this token is device {device_id!r}'s"
            )
    not_after = now + FUTURE_LIMIT
    screened = Screened()
    for index, raw in enumerate(raw_events):
        checked = validate_event(index, raw, not_after=not_after)
        if isinstance(checked, EventRejection):
            screened.rejected.append(checked)
        elif store_id is not None and checked.store_id != store_id:
            screened.rejected.append(
                EventRejection(
                    index=index,
                    event_id=str(checked.event_id),
                    field="store_id",
                    reason=f"device {device_id!r} is enrolled in store {store_id!r}",
                )
            )
        else:
            screened.events.append(checked)
            screened.raws.append(raw)
    return screened


def enrolled_store(session: Session, device_id: str) -> str | None:
    """The store the registry enrolled ``device_id`` in (None when not enrolled here)."""
    found = session.execute(
        select(_DEVICES.c.store_id).where(_DEVICES.c.device_id == device_id)
    ).scalar()
    return None if found is None else str(found)


def ingest_batch(
    session: Session, device_id: str, raw_events: Sequence[Any], now: datetime
) -> TelemetryAck:
    """Store a device's batch and update every rollup, inside the caller's write transaction."""
    screened = screen_batch(raw_events, device_id, enrolled_store(session, device_id), now)
    if screened.events and session.get_bind().dialect.name == "postgresql":
        # One store's batches apply one at a time, so a forecast and its actual arriving
        # in two concurrent transactions still meet (SQLite writers serialise anyway).
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"ingest:{screened.events[0].store_id}"},
        )
    fresh = _insert_raw(session, screened, now)
    Rollup(session, device_id).apply(fresh)
    return TelemetryAck(
        accepted=len(fresh),
        duplicates=len(screened.events) - len(fresh),
        rejected=screened.rejected,
    )


def _insert_raw(session: Session, screened: Screened, now: datetime) -> list[TelemetryEvent]:
    """Insert the batch's events; the ones that were new (not stored before), in order."""
    rows: dict[str, dict[str, Any]] = {}
    for event, raw in zip(screened.events, screened.raws, strict=True):
        key = str(event.event_id)
        if key in rows:
            continue  # the same event twice in one batch counts once
        rows[key] = {
            "event_id": key,
            "device_id": event.device_id,
            "store_id": event.store_id,
            "type": event.type,
            "ts": event.ts,
            "received_at": now,
            "model_name": event.model.name if event.model else None,
            "model_version": event.model.version if event.model else None,
            "payload": json.dumps(raw["payload"], separators=(",", ":")),
        }
    if not rows:
        return []
    stmt = (
        insert_for(session, TelemetryEventRow.__table__)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(TelemetryEventRow.event_id)
    )
    inserted = set(session.execute(stmt, list(rows.values())).scalars())
    fresh: list[TelemetryEvent] = []
    for event in screened.events:
        key = str(event.event_id)
        if key in inserted:
            inserted.discard(key)  # the first copy of an in-batch duplicate only
            fresh.append(event)
    return fresh
