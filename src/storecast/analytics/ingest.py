"""Telemetry ingestion: check a device's batch, store its new events, keep rollups current.

``screen_batch`` is pure: it turns a request body into typed events and per-event
rejections (or refuses the whole batch). ``ingest_batch`` then works in the caller's write
transaction: the batch is applied fully or not at all, and a resent batch finds its event
ids stored and counts them as duplicates. Only events new to this call reach the rollups
(``storecast.analytics.rollups``), which is what makes ingestion exactly-once.

Raw record: each batch's accepted events are kept as received, compressed
(``telemetry_batches``; ``unpack`` reads one), and every accepted event id points at its
batch (``telemetry_events``).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import bindparam, column, delete, insert, select, table, text, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from storecast.analytics.rollups import Rollup, RollupPlan, plan_rollups, statements
from storecast.analytics.schemas import MAX_BATCH_BYTES, MAX_EVENTS, TelemetryAck
from storecast.analytics.tables import TelemetryBatchRow
from storecast.common.cloud import Database
from storecast.common.rawsql import RawStatement, dbapi_cursor
from storecast.common.telemetry import (
    EventRejection,
    TelemetryEvent,
    hour_floor,
    validate_batch,
    validate_event,
)

__all__ = [
    "FUTURE_LIMIT",
    "BatchRefused",
    "EnrolledStores",
    "Screened",
    "enrolled_store",
    "ingest_batch",
    "screen_batch",
    "store_batch",
    "unpack",
]

FUTURE_LIMIT = timedelta(days=1)  # events stamped later than now + this are refused

# The registry's device table, read (not imported) to check which store a device is in.
_DEVICES = table("devices", column("device_id"), column("store_id"))


class BatchRefused(Exception):
    """The whole batch is refused; ``status`` is the HTTP answer (400, 403, 413, 422)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


@dataclass
class Screened:
    """A batch split into typed events and per-event rejections."""

    events: list[TelemetryEvent] = field(default_factory=list)
    rejected: list[EventRejection] = field(default_factory=list)
    packed: bytes | None = None  # the body compressed for the raw record, when every
    # event in it is accepted (done here, before the write lock, for the common case)
    unique: dict[str, TelemetryEvent] = field(default_factory=dict)  # the events by id
    # (first copy of repeats), in batch order
    hours: list[datetime] = field(default_factory=list)  # the hour of each unique event
    rollups: RollupPlan = field(default_factory=RollupPlan)  # what the unique events add
    # to the rollups when all are new (the common case: only a resend holds stored ones)


def _too_large() -> BatchRefused:
    return BatchRefused(
        413,
        "payload_too_large",
        f"a telemetry batch may hold at most {MAX_EVENTS} events and {MAX_BATCH_BYTES} bytes",
    )


def _raw_events(body: bytes) -> list[Any]:
    try:
        data = orjson.loads(body)  # several times faster than json: this is the hot path
    except orjson.JSONDecodeError as exc:
        raise BatchRefused(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise BatchRefused(422, "validation_error", 'send {"events": [...]}', field="events")
    if extra := sorted(set(data) - {"events"}):
        raise BatchRefused(422, "validation_error", "unknown field", field=extra[0])
    events: list[Any] = data["events"]
    return events


def screen_batch(body: bytes, device_id: str, store_id: str | None, now: datetime) -> Screened:
    """Check a batch body sent by ``device_id`` (enrolled in ``store_id``).

    Refused whole (``BatchRefused``): oversize, malformed JSON, not ``{"events": [...]}``,
    or any event naming another device (a device never speaks for another one). Anything
    else wrong is a per-event rejection, so one bad event never blocks a device's queue.
    """
    if len(body) > MAX_BATCH_BYTES:
        raise _too_large()
    not_after = now + FUTURE_LIMIT
    # The common batch, every event valid and none from the future, is checked in one go;
    # any other batch event by event, which says what is wrong with each.
    typed = validate_batch(body)
    if typed is None or any(event.ts > not_after for event in typed):
        typed = None
        raws: list[Any] = _raw_events(body)
    else:
        raws = typed
    if len(raws) > MAX_EVENTS:
        raise _too_large()
    screened = Screened()
    if typed and _all_from(typed, device_id, store_id or typed[0].store_id):
        screened.events = typed  # the common case, decided in one pass
    else:
        _screen_each(screened, raws, typed is not None, device_id, store_id, not_after)
    if not screened.rejected:
        screened.packed = pack(body)
    _prepare(screened)
    return screened


def _screen_each(
    screened: Screened,
    raws: list[Any],
    typed: bool,
    device_id: str,
    store_id: str | None,
    not_after: datetime,
) -> None:
    """Sort a batch's events, one by one, into ``screened``'s events and rejections
    (``raws`` are events already validated when ``typed``, else the JSON as sent)."""
    enrolled = store_id is not None
    for index, raw in enumerate(raws):
        if typed:
            claimed = raw.device_id
        else:
            claimed = raw.get("device_id") if isinstance(raw, dict) else None
        if isinstance(claimed, str) and claimed != device_id:
            raise BatchRefused(
                403,
                "forbidden",
                f"event {index} is for device {claimed!r}; this token is device {device_id!r}'s",
            )
        checked = raw if typed else validate_event(index, raw, not_after=not_after)
        if isinstance(checked, EventRejection):
            screened.rejected.append(checked)
        elif store_id is None and not screened.events:
            store_id = checked.store_id  # not enrolled here: the batch is its first store's
            screened.events.append(checked)
        elif checked.store_id != store_id:
            reason = (
                f"device {device_id!r} is enrolled in store {store_id!r}"
                if enrolled
                else f"a batch holds one store's events ({store_id!r})"
            )
            screened.rejected.append(_rejection(index, checked, "store_id", reason))
        else:
            screened.events.append(checked)


def _all_from(events: list[TelemetryEvent], device_id: str, store_id: str) -> bool:
    return all(e.device_id == device_id and e.store_id == store_id for e in events)


def _prepare(screened: Screened) -> None:
    """Work out what storing ``screened`` needs from no database (its unique events, their
    hours, their rollup sums), so that the write lock's holder only runs statements."""
    screened.unique = {}
    for event in screened.events:
        screened.unique.setdefault(str(event.event_id), event)
    screened.hours = [hour_floor(event.ts) for event in screened.unique.values()]
    screened.rollups = plan_rollups(screened.unique.values())


def pack(body: bytes) -> bytes:
    """A batch body as the raw record keeps it: zlib-compressed JSON (about 7x smaller)."""
    return zlib.compress(body, level=1)


def unpack(packed: bytes) -> list[dict[str, Any]]:
    """The events of a stored batch (``telemetry_batches.body``), as sent."""
    events: list[dict[str, Any]] = orjson.loads(zlib.decompress(packed))["events"]
    return events


def _rejection(index: int, event: TelemetryEvent, name: str, reason: str) -> EventRejection:
    return EventRejection(index=index, event_id=str(event.event_id), field=name, reason=reason)


def enrolled_store(session: Session, device_id: str) -> str | None:
    """The store the registry enrolled ``device_id`` in (None when not enrolled here)."""
    found = session.execute(
        select(_DEVICES.c.store_id).where(_DEVICES.c.device_id == device_id)
    ).scalar()
    return None if found is None else str(found)


class EnrolledStores:
    """``enrolled_store`` remembered per process: a device's store never changes (device
    ids are never reused, re-enrolling one is refused), so one lookup per device will do."""

    def __init__(self, limit: int = 200_000) -> None:
        self._known: dict[str, str] = {}
        self._limit = limit  # devices remembered; beyond it, start over

    def get(self, database: Database, device_id: str) -> str | None:
        found = self._known.get(device_id)
        if found is None:
            with database.transaction() as session:
                found = enrolled_store(session, device_id)
            if found is not None:
                if len(self._known) >= self._limit:
                    self._known.clear()
                self._known[device_id] = found
        return found


def ingest_batch(session: Session, device_id: str, body: bytes, now: datetime) -> TelemetryAck:
    """Check and store a device's batch in the caller's write transaction (``screen_batch``
    then ``store_batch``; the server screens before it takes the write lock)."""
    screened = screen_batch(body, device_id, enrolled_store(session, device_id), now)
    return store_batch(session, device_id, screened, now)


def store_batch(
    session: Session, device_id: str, screened: Screened, now: datetime
) -> TelemetryAck:
    """Store a screened batch's new events and update every rollup, in the caller's write
    transaction."""
    if screened.events and session.get_bind().dialect.name == "postgresql":
        # One store's batches apply one at a time, so a forecast and its actual arriving
        # in two concurrent transactions still meet (SQLite writers serialise anyway).
        key = f"ingest:{screened.events[0].store_id}"
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})
    if screened.events and not screened.unique:
        _prepare(screened)  # not from screen_batch: built by the caller
    fresh = _store_raw(session, device_id, screened, now)
    whole = len(fresh) == len(screened.unique)
    Rollup(session, device_id).apply(screened.rollups if whole else plan_rollups(fresh))
    return TelemetryAck(
        accepted=len(fresh),
        duplicates=len(screened.events) - len(fresh),
        rejected=screened.rejected,
    )


def _store_raw(
    session: Session, device_id: str, screened: Screened, now: datetime
) -> list[TelemetryEvent]:
    """Keep the batch's new events; return them in batch order (first copy of repeats).

    The batch row is written first, with the body as received, then the event ids, whose
    insert returns which were new; in the rare batch holding events stored before, the
    body is rewritten to the new ones (or the batch row dropped when none was new).
    """
    events = screened.unique
    if not events:
        return []
    sql, raw = statements(session), _raw_statements(session)
    whole = screened.packed is not None and len(events) == len(screened.events)
    body = screened.packed if whole and screened.packed else _body_of(events.values())
    batch = {"device_id": device_id, "received_at": sql.ts(now), "events": len(events)}
    batch_id = raw.batch.fetchall(session, {**batch, "body": body})[0][0]
    inserted = _insert_ids(session, device_id, batch_id, screened)
    if len(inserted) == len(events):
        return list(events.values())
    fresh = [event for key, event in events.items() if key in inserted]
    if len(fresh) < len(events):
        row = TelemetryBatchRow
        if fresh:
            rewritten = {"events": len(fresh), "body": _body_of(fresh)}
            session.execute(update(row).where(row.id == batch_id).values(rewritten))
        else:
            session.execute(delete(row).where(row.id == batch_id))
    return fresh


def _body_of(events: Iterable[TelemetryEvent]) -> bytes:
    return pack(orjson.dumps({"events": [event.model_dump(mode="json") for event in events]}))


def _insert_ids(session: Session, device_id: str, batch_id: int, screened: Screened) -> set[str]:
    """Insert the ids keyed by device and hour; the ones that were new.

    Keying ids by (device, hour, event id) keeps a batch's inserts on a few pages of its
    own: random UUIDs alone would touch a page per event once the table is large.
    """
    events = screened.unique
    ts = statements(session).ts
    hours = {hour: ts(hour) for hour in set(screened.hours)}
    params: list[Any] = []
    for (key, event), hour in zip(events.items(), screened.hours, strict=True):
        params += (device_id, hours[hour], key, batch_id, event.type)
    cursor = dbapi_cursor(session)
    try:
        if session.get_bind().dialect.name == "postgresql":
            # Five arrays, one short statement: psycopg would re-parse a 2,500-placeholder
            # VALUES list in Python on every batch. Sent in binary (%b): no quoting of
            # every element in Python.
            columns = [params[i::5] for i in range(5)]
            cursor.execute(_PG_IDS_INSERT, columns)
            return {str(found[0]) for found in cursor.fetchall()}
        # No RETURNING: SQLite would hand back each row in its own step, each giving up
        # and retaking the GIL while the write lock is held. The count tells whether all
        # were new (the common case); otherwise the new rows are the ones naming this batch.
        cursor.execute(_sqlite_ids_insert(len(events)), params)
        if cursor.rowcount == len(events):
            return set(events)
        if cursor.rowcount == 0:
            return set()
        keys = [value for i in range(0, len(params), 5) for value in params[i + 1 : i + 3]]
        cursor.execute(_sqlite_new_ids(len(events)), [device_id, *keys, batch_id])
        return {str(found[0]) for found in cursor.fetchall()}
    finally:
        cursor.close()


_PG_IDS_INSERT = (
    "INSERT INTO telemetry_events (device_id, hour, event_id, batch_id, type) "
    "SELECT * FROM unnest(%b::varchar[], %b::timestamp[], %b::varchar[], %b::integer[], "
    "%b::varchar[]) ON CONFLICT DO NOTHING RETURNING event_id"
)


@functools.lru_cache(maxsize=64)
def _sqlite_ids_insert(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?)"] * rows)
    return (
        "INSERT INTO telemetry_events (device_id, hour, event_id, batch_id, type) "
        f"VALUES {values} ON CONFLICT DO NOTHING"
    )


@functools.lru_cache(maxsize=64)
def _sqlite_new_ids(rows: int) -> str:
    # CROSS JOIN keeps the VALUES list outer: one primary-key lookup per id, no table scan.
    # A batch row is deleted only when none of its ids were new, so ids naming this batch
    # id were inserted by this batch.
    values = ",".join(["(?,?)"] * rows)
    return (
        "SELECT e.event_id FROM (SELECT ? AS device_id) AS d "
        f"CROSS JOIN (VALUES {values}) AS v CROSS JOIN telemetry_events AS e "
        "ON e.device_id = d.device_id AND e.hour = v.column1 AND e.event_id = v.column2 "
        "WHERE e.batch_id = ?"
    )


@dataclass(frozen=True)
class _RawStatements:
    batch: RawStatement


@functools.cache
def _compiled(dialect_name: str, dialect: Dialect) -> _RawStatements:
    return _RawStatements(
        RawStatement(
            insert(TelemetryBatchRow)
            .values(
                {name: bindparam(name) for name in ("device_id", "received_at", "events", "body")}
            )
            .returning(TelemetryBatchRow.id),
            dialect,
        ),
    )


def _raw_statements(session: Session) -> _RawStatements:
    dialect = session.get_bind().dialect
    return _compiled(dialect.name, dialect)
