"""What the analytics queries share: rollup sums as KPIs, the fleet roster, device status.

Queries are functions over a SQLAlchemy session and plain parameters that read only the
rollup tables (never ``telemetry_events``) and return the response models of
``storecast.analytics.schemas``. Each one is bounded by a time window and filters on the
leading columns of an index (rollup primary keys lead with ``hour``; ``(store_id, hour)``
indexes serve one store), so its cost follows the window, not the history stored.

    queries_stores   the store list and a store's summary
    queries_models   performance by model version
    fleet            fleet KPIs and the hourly fleet series
    queries_usage    model events, forecasts served per store-day, API usage, deployments
    diagnostics      root cause and incidents

The registry's tables are read through lightweight ``table()`` clauses, not imported:
analytics sits beside the registry, not above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Subquery,
    column,
    func,
    select,
    table,
    union_all,
)

from storecast.analytics import stats
from storecast.analytics.schemas import Accuracy, Latency, Window
from storecast.analytics.tables import (
    BUCKET_COLUMNS,
    NO_AGENT,
    NO_MODEL,
    AccuracyHourlyRow,
    DeviceStateRow,
)
from storecast.common.db import UTCDateTime

__all__ = [
    "DEPLOYMENTS",
    "DEVICES",
    "ONLINE_WITHIN",
    "STALE_WITHIN",
    "accuracy_of",
    "accuracy_sums",
    "agent_label",
    "bucket_starts",
    "hist_sums",
    "latency_of",
    "model_label",
    "roster",
    "status_of",
    "total",
]

# A device is "online" when its newest heartbeat is at most ONLINE_WITHIN old, "stale" when
# at most STALE_WITHIN old, and "offline" when older or never heard from. Only the newest
# heartbeat is kept, so asked about a past moment, a device heard from since counts as
# online. ONLINE_WITHIN spans two missed beats of the edge agent (every 60 s) and one of
# the telemetry simulator (every 5 minutes by default).
ONLINE_WITHIN = timedelta(minutes=10)
STALE_WITHIN = timedelta(minutes=60)

Status = Literal["online", "stale", "offline"]

_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)

# The registry's tables, as far as analytics reads them.
DEVICES = table(
    "devices",
    column("device_id", String),
    column("store_id", String),
    column("region", String),
    column("decommissioned_at", UTCDateTime()),
)
DEPLOYMENTS = table(
    "deployments",
    column("id", Integer),
    column("model", String),
    column("version", Integer),
    column("alias", String),
    column("selector_json", String),
    column("status", String),
    column("created_at", UTCDateTime()),
    column("created_by", String),
)


def total(column_: Any) -> ColumnElement[Any]:
    """``SUM(column)``, 0 over no rows."""
    return func.coalesce(func.sum(column_), 0)


def accuracy_sums() -> list[ColumnElement[Any]]:
    """The ``accuracy_hourly`` sums ``accuracy_of`` takes, in its argument order."""
    a = AccuracyHourlyRow
    return [total(c) for c in (a.points, a.sum_actual, a.sum_q50, a.sum_abs_err, a.covered)]


def accuracy_of(sums: Sequence[Any]) -> Accuracy:
    """WAPE, bias and coverage from the five ``accuracy_sums`` values."""
    points, actual, q50, abs_err, covered = sums
    found = stats.accuracy(int(points), float(actual), float(q50), float(abs_err), int(covered))
    return Accuracy(
        points=found.points, wape=found.wape, bias=found.bias, coverage_80=found.coverage_80
    )


def hist_sums(source: Any) -> list[ColumnElement[Any]]:
    """The summed latency histogram columns of ``source`` (an inference_hourly clause)."""
    return [total(source.c[name]) for name in BUCKET_COLUMNS]


def latency_of(hist: Sequence[Any]) -> Latency:
    """p50/p95/p99 (ms) from a summed latency histogram."""
    p50, p95, p99 = stats.latency_summary([int(n) for n in hist])
    return Latency(p50_ms=p50, p95_ms=p95, p99_ms=p99)


def model_label(name: str, version: int) -> str:
    """How root cause and reports name a model version (``"(none)"``: served without one)."""
    return "(none)" if name == NO_MODEL else f"{name}:v{version}"


def agent_label(agent: str) -> str:
    """An agent version as reported (``"(unknown)"`` before the first heartbeat)."""
    return "(unknown)" if agent == NO_AGENT else agent


def bucket_starts(window: Window, granularity: Literal["hour", "day"]) -> list[datetime]:
    """Series buckets: the hours starting in the window, or the UTC days overlapping it."""
    if granularity == "hour":
        first = window.start.replace(minute=0, second=0, microsecond=0)
        if first < window.start:
            first += _HOUR
        step = _HOUR
    else:
        first, step = window.start.replace(hour=0, minute=0, second=0, microsecond=0), _DAY
    starts = []
    while first < window.end:
        starts.append(first)
        first += step
    return starts


def roster() -> Subquery:
    """Every device the fleet counts: ``(device_id, store_id)``.

    Devices enrolled in the registry and not decommissioned, plus devices heard from that
    the registry does not know (telemetry written straight into the database).
    """
    s = DeviceStateRow
    enrolled = select(DEVICES.c.device_id, DEVICES.c.store_id).where(
        DEVICES.c.decommissioned_at.is_(None)
    )
    unknown = select(s.device_id, s.store_id).where(s.device_id.not_in(select(DEVICES.c.device_id)))
    return union_all(enrolled, unknown).subquery("roster")


def status_of(last_heartbeat_at: datetime | None, now: datetime) -> Status:
    """A device's status ``now`` from its newest heartbeat (a later one counts as online)."""
    if last_heartbeat_at is None:
        return "offline"
    age = now - last_heartbeat_at
    if age <= ONLINE_WITHIN:
        return "online"
    return "stale" if age <= STALE_WITHIN else "offline"
