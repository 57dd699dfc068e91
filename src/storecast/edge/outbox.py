"""The telemetry outbox: events wait on disk until the analytics service acknowledges them.

Tables in the agent's SQLite file (``LocalDB``), so queueing an event commits together
with whatever the caller records in the same transaction:

    outbox           seq (insertion order), event_id, type, priority, body
    outbox_meta      depth, dropped, moved_aside (counters; drops persist across restarts)
    outbox_rejected  events the server refused, with its reason (bounded, for inspection)

Each event is serialised once, at ``put``; an upload resends exactly those bytes, so a
resent event is the same event to the cloud's de-duplication (same id, same time).

Bounded: past ``capacity`` the oldest events of the lowest priority class go first
(heartbeats and inference stats, then forecasts and actuals, then model and error events).
``put`` costs O(events), whatever the depth: the depth is a counter and the drop order an
index.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storecast.edge.events import InvalidEvent
from storecast.edge.localdb import LocalDB

__all__ = ["DEFAULT_CAPACITY", "PRIORITY", "Outbox", "OutboxItem", "RejectedItem"]

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 200_000  # events
DEFAULT_REJECTED_CAPACITY = 10_000  # refused events kept for inspection

# Drop order when full: lowest class first, oldest first within a class.
PRIORITY: dict[str, int] = {
    "heartbeat": 0,
    "inference": 0,
    "forecast": 1,
    "actual": 1,
    "model": 2,
    "error": 2,
}

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        priority INTEGER NOT NULL,
        body BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_by_priority ON outbox (priority, seq)",
    "CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS outbox_rejected (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        reason TEXT NOT NULL,
        body BLOB NOT NULL
    )""",
)

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class OutboxItem:
    """A queued event: its queue position, id and serialised JSON."""

    seq: int
    event_id: str
    body: bytes


@dataclass(frozen=True)
class RejectedItem:
    """An event the server refused, moved out of the queue."""

    seq: int
    event_id: str
    type: str
    reason: str
    body: bytes


def _encode(event: Mapping[str, Any]) -> tuple[str, str, int, bytes]:
    kind = event.get("type")
    if not isinstance(kind, str) or kind not in PRIORITY:
        raise InvalidEvent(f"unknown event type {kind!r}")
    event_id = event.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidEvent(f"{kind} event without an event_id")
    return event_id, kind, PRIORITY[kind], _ENCODER.encode(event).encode()


def _bump(conn: sqlite3.Connection, key: str, by: int) -> None:
    if by:
        conn.execute(
            "INSERT INTO outbox_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            (key, by),
        )


def _meta(conn: sqlite3.Connection, key: str) -> int:
    row = conn.execute("SELECT value FROM outbox_meta WHERE key = ?", (key,)).fetchone()
    return 0 if row is None else int(row[0])


class Outbox:
    """A bounded, persistent queue of serialised telemetry events."""

    def __init__(
        self,
        db: LocalDB,
        *,
        capacity: int = DEFAULT_CAPACITY,
        rejected_capacity: int = DEFAULT_REJECTED_CAPACITY,
    ) -> None:
        if capacity < 1 or rejected_capacity < 0:
            raise ValueError("capacity must be at least 1, rejected_capacity at least 0")
        self.db = db
        self.capacity = capacity
        self.rejected_capacity = rejected_capacity
        with db.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            # Recount once at open, so the counter can never drift for good.
            (count,) = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
            conn.execute(
                "INSERT INTO outbox_meta (key, value) VALUES ('depth', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (count,),
            )

    def put(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Queue ``events`` (in the caller's transaction, if any); return how many queued
        events were dropped to stay within capacity."""
        rows = [_encode(event) for event in events]
        if not rows:
            return 0
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO outbox (event_id, type, priority, body) VALUES (?, ?, ?, ?)", rows
            )
            over = _meta(conn, "depth") + len(rows) - self.capacity
            dropped = 0
            if over > 0:
                dropped = conn.execute(
                    "DELETE FROM outbox WHERE seq IN "
                    "(SELECT seq FROM outbox ORDER BY priority, seq LIMIT ?)",
                    (over,),
                ).rowcount
                _bump(conn, "dropped", dropped)
            _bump(conn, "depth", len(rows) - dropped)
        if dropped:
            log.warning("telemetry outbox full (%d events): dropped %d", self.capacity, dropped)
        return dropped

    def depth(self) -> int:
        """Events waiting to be uploaded."""
        with self.db.reading() as conn:
            return _meta(conn, "depth")

    def created(self) -> int:
        """Events ever queued in this outbox (sequence numbers are never reused)."""
        with self.db.reading() as conn:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            return int(row[0]) if row else 0

    def dropped(self) -> int:
        """Events dropped for room since the outbox was created (survives restarts)."""
        with self.db.reading() as conn:
            return _meta(conn, "dropped")

    def moved_aside(self) -> int:
        """Events the server refused, since the outbox was created."""
        with self.db.reading() as conn:
            return _meta(conn, "moved_aside")

    def peek(self, limit: int = 500) -> list[OutboxItem]:
        """Up to ``limit`` queued events, oldest first (they stay queued until ``ack``)."""
        with self.db.reading() as conn:
            rows = conn.execute(
                "SELECT seq, event_id, body FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [OutboxItem(int(seq), str(event_id), bytes(body)) for seq, event_id, body in rows]

    def ack(self, seqs: Sequence[int]) -> None:
        """Remove acknowledged events (unknown ``seqs`` are ignored)."""
        if not seqs:
            return
        with self.db.transaction() as conn:
            cursor = conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            _bump(conn, "depth", -cursor.rowcount)

    def set_aside(self, rejected: Sequence[tuple[int, str]]) -> None:
        """Move refused events, ``(seq, reason)``, out of the queue into the rejected table."""
        if not rejected:
            return
        with self.db.transaction() as conn:
            moved = 0
            for seq, reason in rejected:
                moved += conn.execute(
                    "INSERT OR REPLACE INTO outbox_rejected (seq, event_id, type, reason, body) "
                    "SELECT seq, event_id, type, ?, body FROM outbox WHERE seq = ?",
                    (reason, seq),
                ).rowcount
                conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            _bump(conn, "depth", -moved)
            _bump(conn, "moved_aside", moved)
            conn.execute(
                "DELETE FROM outbox_rejected WHERE seq IN (SELECT seq FROM outbox_rejected "
                "ORDER BY seq DESC LIMIT -1 OFFSET ?)",
                (self.rejected_capacity,),
            )
        if moved:
            log.warning("telemetry: %d events refused by the server, set aside", moved)

    def rejected(self, limit: int = 100) -> list[RejectedItem]:
        """The most recently refused events, newest first."""
        with self.db.reading() as conn:
            rows = conn.execute(
                "SELECT seq, event_id, type, reason, body FROM outbox_rejected "
                "ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            RejectedItem(int(seq), str(eid), str(kind), str(reason), bytes(body))
            for seq, eid, kind, reason, body in rows
        ]
