"""Sensor readings: validated at the door, stored in the agent's SQLite, aggregated to hours.

A reading is ``(ts, kind, value)``. ``parse_readings`` checks a ``POST /v1/readings`` body
and refuses the whole batch, listing every bad reading, if any is bad. ``SensorStore``
keeps the raw readings (a reading is identified by ``(ts, kind)``: a resent one is a
duplicate and the first value wins) and, updated in the same transaction, one row of
aggregates per hour: sales, footfall and precipitation summed, temperature averaged,
promo as its maximum. Late and out-of-order readings land in their own hour.

Time is event time. The newest reading's hour is the *origin*: forecasts start there, and
every hour before it is complete (readings for it may still arrive late; they update the
aggregates, but an hour already reported by ``take_completed`` is not reported again).
Readings and hours older than ``latest_ts - retention`` are deleted; readings that old are
not stored at all (``AddResult.expired``).

``window`` lays the hours on a dense grid the way ``storecast.forecasting.loader`` lays a
history file: an hour without sales readings is *missing* (``observed`` False, sales NaN)
and its covariates are filled: footfall from the nearest earlier hour (else 0),
temperature from the nearest earlier hour (else the nearest later one, else 15 °C),
precipitation and promo with 0. Values carry forward from up to a day before the window.
The future hours ``[origin, origin + horizon)`` have no sales; their temperature and
precipitation are the same hour a day earlier (a persistence forecast), their promo the
last promo value seen up to the origin hour (its readings so far included), their footfall
the last known value, and ``is_holiday`` comes from the chain's calendar for every hour.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from storecast.edge import _hours
from storecast.edge._hours import US_PER_HOUR, from_micros, to_hour, to_micros
from storecast.edge._readings import READING_KINDS, Reading, ReadingsRefused, parse_readings
from storecast.edge.localdb import LocalDB
from storecast.forecasting.history import StoreHistory

__all__ = [
    "READING_KINDS",
    "AddResult",
    "CompletedHour",
    "Reading",
    "ReadingsRefused",
    "SensorStore",
    "StoreWindow",
    "parse_readings",
]

log = logging.getLogger(__name__)

DEFAULT_RETENTION: Final = timedelta(days=60)


@dataclass(frozen=True)
class AddResult:
    """What ``SensorStore.add`` did with a batch."""

    accepted: int  # readings stored
    duplicates: int  # readings already stored (same ts and kind); the first value was kept
    expired: int = 0  # readings older than the retention: not stored


@dataclass(frozen=True)
class CompletedHour:
    """A complete hour with sales readings, to report as an ``actual``."""

    hour: datetime
    sales_units: float
    footfall: float | None  # None: no footfall readings in the hour


@dataclass(frozen=True)
class StoreWindow:
    """The inputs of one forecast: lookback and future hours of one store."""

    history: StoreHistory  # one store, hours [origin - lookback, origin + horizon)
    origin: datetime
    observed_hours: int  # hours with sales readings inside the lookback


class SensorStore:
    """The readings and store-hours of the agent's store, in the agent's ``LocalDB``."""

    def __init__(self, db: LocalDB, *, retention: timedelta = DEFAULT_RETENTION) -> None:
        if retention < timedelta(hours=1):
            raise ValueError("retention must be at least an hour")
        self._db = db
        self._retention_us = retention // timedelta(microseconds=1)
        self._pruned_at: int | None = None  # event hour of the last prune
        with db.transaction() as conn:
            for statement in _hours.SCHEMA:
                conn.execute(statement)

    def add(self, readings: Sequence[Reading]) -> AddResult:
        """Store readings and update their hours, in one transaction (joins an open one)."""
        accepted = duplicates = expired = 0
        if not readings:
            return AddResult(0, 0)
        with self._db.transaction() as conn:
            stored = _latest_us(conn)
            newest = max(to_micros(r.ts) for r in readings)
            latest = newest if stored is None else max(stored, newest)
            cutoff = self._cutoff(latest)
            column = {kind: 1 + 2 * j for j, kind in enumerate(_hours.KINDS)}
            hours: dict[int, list[float]] = {}
            insert = "INSERT OR IGNORE INTO sensor_readings (ts_us, kind, value) VALUES (?, ?, ?)"
            for r in readings:
                us = to_micros(r.ts)
                if us < cutoff:
                    expired += 1
                    continue
                if conn.execute(insert, (us, r.kind, r.value)).rowcount == 0:
                    duplicates += 1
                    continue
                accepted += 1
                row = hours.setdefault(us // US_PER_HOUR, [0.0] * (2 * len(_hours.KINDS)))
                j = column[r.kind] - 1
                row[j] = max(row[j], r.value) if r.kind == "promo" else row[j] + r.value
                row[j + 1] += 1
            conn.executemany(_hours.UPSERT_HOUR, [(h, *row) for h, row in hours.items()])
            if latest // US_PER_HOUR != self._pruned_at:
                self._prune(conn, latest)
        if expired:
            log.info("%d readings older than the retention were not stored", expired)
        return AddResult(accepted, duplicates, expired)

    def latest_ts(self) -> datetime | None:
        """The newest reading's event time."""
        with self._db.reading() as conn:
            us = _latest_us(conn)
        return None if us is None else from_micros(us)

    def origin(self) -> datetime | None:
        """The first incomplete hour (the newest reading's): forecasts start here."""
        with self._db.reading() as conn:
            hour = _origin_hour(conn)
        return None if hour is None else _hours.from_hour(hour)

    def take_completed(self, conn: sqlite3.Connection) -> list[CompletedHour]:
        """Complete hours with sales not reported yet, oldest first, marked reported in the
        caller's transaction (``conn`` from ``LocalDB.transaction``)."""
        origin = _origin_hour(conn)
        if origin is None:
            return []
        where = "WHERE reported = 0 AND n_sales > 0 AND hour < ?"
        rows = conn.execute(
            f"SELECT hour, sales, footfall, n_footfall FROM sensor_hours {where} ORDER BY hour",
            (origin,),
        ).fetchall()
        conn.execute(f"UPDATE sensor_hours SET reported = 1 {where}", (origin,))
        return [
            CompletedHour(_hours.from_hour(h), float(s), float(f) if nf else None)
            for h, s, f, nf in rows
        ]

    def window(self, origin: datetime, lookback: int, horizon: int, store_id: str) -> StoreWindow:
        """The store's hours ``[origin - lookback, origin + horizon)`` as a forecast input."""
        if lookback < 1 or horizon < 1:
            raise ValueError("lookback and horizon must be at least one hour")
        at = to_hour(origin)
        start = at - lookback
        with self._db.reading() as conn:
            rows = conn.execute(_hours.SELECT_HOURS, (start - _hours.PAD, at)).fetchall()
        history, observed = _hours.build_window(rows, start, at, at + horizon, store_id)
        return StoreWindow(history=history, origin=_hours.from_hour(at), observed_hours=observed)

    def hours_with_sales(self) -> int:
        """Complete hours stored with sales readings."""
        with self._db.reading() as conn:
            origin = _origin_hour(conn)
            if origin is None:
                return 0
            (n,) = conn.execute(
                "SELECT count(*) FROM sensor_hours WHERE n_sales > 0 AND hour < ?", (origin,)
            ).fetchone()
        return int(n)

    def prune(self) -> int:
        """Delete readings and hours older than ``latest_ts - retention``; return rows deleted."""
        with self._db.transaction() as conn:
            latest = _latest_us(conn)
            return 0 if latest is None else self._prune(conn, latest)

    def _cutoff(self, latest_us: int) -> int:
        """The first kept instant: the start of the hour holding ``latest - retention``."""
        return (latest_us - self._retention_us) // US_PER_HOUR * US_PER_HOUR

    def _prune(self, conn: sqlite3.Connection, latest_us: int) -> int:
        cutoff = self._cutoff(latest_us)
        deleted = conn.execute("DELETE FROM sensor_readings WHERE ts_us < ?", (cutoff,)).rowcount
        deleted += conn.execute(
            "DELETE FROM sensor_hours WHERE hour < ?", (cutoff // US_PER_HOUR,)
        ).rowcount
        self._pruned_at = latest_us // US_PER_HOUR
        if deleted:
            log.info("pruned %d sensor rows older than %s", deleted, from_micros(cutoff))
        return int(deleted)


def _latest_us(conn: sqlite3.Connection) -> int | None:
    (us,) = conn.execute("SELECT max(ts_us) FROM sensor_readings").fetchone()
    return None if us is None else int(us)


def _origin_hour(conn: sqlite3.Connection) -> int | None:
    us = _latest_us(conn)
    return None if us is None else us // US_PER_HOUR
