"""The sensor tables and the store-hour window grid behind ``storecast.edge.sensors``.

Times are integers: readings in microseconds since the Unix epoch (UTC), hours in hours
since the epoch. Each kind has two columns in ``sensor_hours``: its aggregate (a sum; the
maximum for promo; temperature keeps its sum and is divided by its count when read) and
``n_<kind>``, how many readings went into it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from storecast.forecasting.calendar import calendar
from storecast.forecasting.history import StoreHistory

US_PER_HOUR = 3_600_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
KINDS = ("sales", "footfall", "temperature", "precipitation", "promo")  # column order
PAD = 24  # hours read before a window's start, so values carry forward into it
DEFAULT_TEMPERATURE = 15.0  # °C, when a window holds no temperature at all (as the loader)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sensor_readings (
        ts_us INTEGER NOT NULL,  -- event time, microseconds since the epoch (UTC)
        kind TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (ts_us, kind)
    ) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS sensor_hours (hour INTEGER PRIMARY KEY, "
    + ", ".join(f"{k} REAL NOT NULL DEFAULT 0, n_{k} INTEGER NOT NULL DEFAULT 0" for k in KINDS)
    + ", reported INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS sensor_hours_unreported ON sensor_hours (hour) "
    "WHERE reported = 0 AND n_sales > 0",
)

# Adds one hour's new readings (an aggregate and a count per kind) to its row.
UPSERT_HOUR = (
    "INSERT INTO sensor_hours (hour, "
    + ", ".join(f"{k}, n_{k}" for k in KINDS)
    + f") VALUES ({', '.join('?' * (1 + 2 * len(KINDS)))}) ON CONFLICT (hour) DO UPDATE SET "
    + ", ".join(
        (f"{k} = max({k}, excluded.{k})" if k == "promo" else f"{k} = {k} + excluded.{k}")
        + f", n_{k} = n_{k} + excluded.n_{k}"
        for k in KINDS
    )
)
# One value per kind and hour, NULL where the hour has no readings of that kind.
SELECT_HOURS = (
    "SELECT hour, "
    + ", ".join(
        f"{k} / nullif(n_{k}, 0)" if k == "temperature" else f"CASE WHEN n_{k} > 0 THEN {k} END"
        for k in KINDS
    )
    + " FROM sensor_hours WHERE hour >= ? AND hour <= ? ORDER BY hour"
)


def to_micros(moment: datetime) -> int:
    """An aware datetime as microseconds since the epoch."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(us: int) -> datetime:
    """Microseconds since the epoch as an aware UTC datetime."""
    return EPOCH + timedelta(microseconds=us)


def to_hour(moment: datetime) -> int:
    """The hour (since the epoch) of an aware datetime that starts an hour."""
    us = to_micros(moment)
    if us % US_PER_HOUR:
        raise ValueError(f"{moment.isoformat()} is not the start of an hour")
    return us // US_PER_HOUR


def from_hour(hour: int) -> datetime:
    """The start of an hour since the epoch as an aware UTC datetime."""
    return EPOCH + timedelta(hours=hour)


def _ffill(x: np.ndarray) -> np.ndarray:
    """``x`` with each NaN replaced by the nearest earlier value (NaN where none)."""
    idx = np.where(np.isnan(x), 0, np.arange(x.size))
    np.maximum.accumulate(idx, out=idx)
    return x[idx]  # leading NaNs map to x[0], itself NaN


def _zero_nan(x: np.ndarray) -> np.ndarray:
    """``x`` with NaN replaced by 0, in place."""
    x[np.isnan(x)] = 0.0
    return x


@functools.lru_cache(maxsize=32)
def _holidays(start: int, end: int) -> np.ndarray:
    """The holiday flags of hours ``[start, end)`` (read-only; the same few windows recur)."""
    hours = np.datetime64(start, "h") + np.arange(end - start).astype("timedelta64[h]")
    flags = calendar(hours)["holiday"]
    flags.flags.writeable = False
    return flags


def _persist_daily(x: np.ndarray, first: int) -> None:
    """Fill ``x[first:]`` with the value a day earlier, in place (a persistence forecast)."""
    for i in range(first, x.size, 24):
        x[i : i + 24] = x[i - 24 : i - 24 + min(24, x.size - i)]


def build_window(
    rows: Sequence[Sequence[float]], start: int, origin: int, end: int, store_id: str
) -> tuple[StoreHistory, int]:
    """A one-store ``StoreHistory`` on hours ``[start, end)`` from ``sensor_hours`` rows of
    hours ``[start - PAD, origin]``, and the number of observed hours before ``origin``.

    See ``storecast.edge.sensors`` for the missing-hour and future-hour policy.
    """
    lo, past, n = start - PAD, origin - (start - PAD), end - (start - PAD)
    cells = np.full((len(KINDS), n), np.nan)
    if rows:
        a = np.array(rows, dtype=float)  # NULL -> NaN
        cells[:, a[:, 0].astype(np.int64) - lo] = a[:, 1:].T
    grid = dict(zip(KINDS, cells, strict=True))
    # Last promo value up to the origin hour (its readings so far count: a promotion that
    # has started is known); the other kinds use complete hours only.
    promo_seen = _ffill(grid["promo"][: past + 1])[-1]
    for kind in KINDS:
        grid[kind][past:] = np.nan

    sales = grid["sales"]
    observed = ~np.isnan(sales)
    footfall = _zero_nan(_ffill(grid["footfall"]))
    temperature = _ffill(grid["temperature"][:past])
    temperature = _ffill(temperature[::-1])[::-1] if np.isnan(temperature).any() else temperature
    temperature = np.concatenate([temperature, np.empty(n - past)])
    temperature[:past][np.isnan(temperature[:past])] = DEFAULT_TEMPERATURE
    _persist_daily(temperature, past)
    precip = _zero_nan(grid["precipitation"])
    _persist_daily(precip, past)
    promo = _zero_nan(grid["promo"])
    promo[past:] = 0.0 if np.isnan(promo_seen) else promo_seen

    keep = slice(PAD, None)
    observed_hours = int(observed[PAD:past].sum())
    history = StoreHistory(
        start=np.datetime64(start, "h"),
        store_ids=(store_id,),
        sales=sales[keep][None, :],
        observed=observed[keep][None, :],
        footfall=footfall[keep][None, :],
        temperature_c=temperature[keep][None, :],
        precip_mm=precip[keep][None, :],
        is_holiday=_holidays(start, end)[None, :].copy(),
        promo=promo[keep][None, :],
        filled_hours=(origin - start) - observed_hours,
        source="edge",
    )
    return history, observed_hours
