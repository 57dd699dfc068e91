"""Fleet KPIs: device health, versions, updates, volume, accuracy and the hourly series."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from storecast.analytics import stats
from storecast.analytics.queries import (
    ONLINE_WITHIN,
    STALE_WITHIN,
    accuracy_of,
    accuracy_sums,
    bucket_starts,
    hist_sums,
    latency_of,
    roster,
    total,
)
from storecast.analytics.schemas import (
    DeviceCounts,
    FleetHour,
    FleetKpis,
    FleetSeries,
    UpdateCounts,
    VersionShare,
    Window,
)
from storecast.analytics.tables import (
    BUCKET_COLUMNS,
    NO_MODEL,
    AccuracyHourlyRow,
    DeviceStateRow,
    InferenceHourlyRow,
    ModelEventRow,
)

__all__ = ["fleet_kpis", "fleet_series"]

_NOTHING_SERVED = (0, 0, *[0] * len(BUCKET_COLUMNS))  # count, errors, histogram


def _devices(
    session: Session, at: datetime
) -> tuple[DeviceCounts, list[VersionShare], dict[str, int]]:
    """Status counts, the running versions and the telemetry backlog of the roster."""
    r, s = roster(), DeviceStateRow
    beat = s.last_heartbeat_at
    rows = session.execute(
        select(
            s.model_name,
            s.model_version,
            func.count(),
            total(case((beat >= at - ONLINE_WITHIN, 1), else_=0)),
            total(case((beat >= at - STALE_WITHIN, 1), else_=0)),
            total(s.outbox_depth),
            total(s.dropped_events),
        )
        .select_from(r.outerjoin(s, s.device_id == r.c.device_id))
        .group_by(s.model_name, s.model_version)
    ).all()
    counts = [0, 0, 0]  # total, online, heard within STALE_WITHIN
    backlog = dropped = 0
    shares: dict[tuple[str | None, int | None], int] = defaultdict(int)
    for name, version, n, online, recent, depth, drops in rows:
        counts[0] += int(n)
        counts[1] += int(online)
        counts[2] += int(recent)
        backlog += int(depth)
        dropped += int(drops)
        key = (None, None) if name is None or name == NO_MODEL else (name, version)
        shares[key] += int(n)
    total_, online, recent = counts
    devices = DeviceCounts(
        total=total_, online=online, stale=recent - online, offline=total_ - recent
    )
    versions = [
        VersionShare(model_name=name, model_version=version, devices=n)
        for (name, version), n in sorted(
            shares.items(), key=lambda item: (-item[1], item[0][0] or "", item[0][1] or 0)
        )
    ]
    return devices, versions, {"backlog": backlog, "dropped": dropped}


def _updates(session: Session, window: Window) -> UpdateCounts:
    m = ModelEventRow
    found: dict[str, int] = {
        action: int(n)
        for action, n in session.execute(
            select(m.action, func.count())
            .where(m.ts >= window.start, m.ts < window.end)
            .group_by(m.action)
        )
    }
    activated, rejected = found.get("activated", 0), found.get("rejected", 0)
    return UpdateCounts(
        activated=activated,
        rejected=rejected,
        rolled_back=found.get("rolled_back", 0),
        success_rate=stats.ratio(activated, activated + rejected),
    )


def _sales(session: Session, window: Window) -> dict[str, float | None]:
    """Chain-level actual and forecast sales over the paired store-hours of the window.

    Every paired point of one store-hour shares that hour's actual, so per store-hour the
    actual is ``sum_actual / points`` and the forecast the mean q50 over horizons and
    versions; WAPE weighs every paired point alike.
    """
    a = AccuracyHourlyRow
    per_hour = (
        select(
            (func.sum(a.sum_actual) / func.sum(a.points)).label("actual"),
            (func.sum(a.sum_q50) / func.sum(a.points)).label("forecast"),
            func.sum(a.sum_abs_err).label("abs_err"),
            func.sum(a.sum_actual).label("weighted_actual"),
        )
        .where(a.hour >= window.start, a.hour < window.end, a.points > 0)
        .group_by(a.hour, a.store_id)
        .subquery()
    )
    actual, forecast, abs_err, weighted = session.execute(
        select(
            total(per_hour.c.actual),
            total(per_hour.c.forecast),
            total(per_hour.c.abs_err),
            total(per_hour.c.weighted_actual),
        )
    ).one()
    return {
        "actual": float(actual),
        "forecast": float(forecast),
        "wape": stats.ratio(float(abs_err), float(weighted)),
    }


def fleet_kpis(session: Session, at: datetime, window: Window) -> FleetKpis:
    """The fleet as of ``at``: device status now, activity and accuracy over ``window``."""
    devices, versions, backlog = _devices(session, at)
    i = InferenceHourlyRow
    count, errors, *hist = session.execute(
        select(total(i.count), total(i.errors), *hist_sums(i.__table__)).where(
            i.hour >= window.start, i.hour < window.end
        )
    ).one()
    return FleetKpis(
        at=at,
        window=window,
        devices=devices,
        versions=versions,
        updates=_updates(session, window),
        forecasts_served=int(count),
        errors=int(errors),
        error_rate=stats.ratio(int(errors), int(count)),
        latency=latency_of(hist),
        sales=_sales(session, window),
        telemetry=backlog,
        thresholds_s={
            "online": int(ONLINE_WITHIN.total_seconds()),
            "stale": int(STALE_WITHIN.total_seconds()),
        },
    )


def fleet_series(session: Session, window: Window) -> FleetSeries:
    """Every hour starting in the window: volume, errors, latency and accuracy of the fleet."""
    i, a = InferenceHourlyRow, AccuracyHourlyRow
    served: dict[datetime, Any] = {
        row[0]: row[1:]
        for row in session.execute(
            select(i.hour, total(i.count), total(i.errors), *hist_sums(i.__table__))
            .where(i.hour >= window.start, i.hour < window.end)
            .group_by(i.hour)
        )
    }
    scored: dict[datetime, Any] = {
        row[0]: row[1:]
        for row in session.execute(
            select(a.hour, *accuracy_sums())
            .where(a.hour >= window.start, a.hour < window.end)
            .group_by(a.hour)
        )
    }
    hours = []
    for hour in bucket_starts(window, "hour"):
        count, errors, *hist = served.get(hour, _NOTHING_SERVED)
        hours.append(
            FleetHour(
                hour=hour,
                forecasts_served=int(count),
                errors=int(errors),
                error_rate=stats.ratio(int(errors), int(count)),
                latency=latency_of(hist),
                accuracy=accuracy_of(scored.get(hour, (0, 0, 0, 0, 0))),
            )
        )
    return FleetSeries(window=window, hours=hours)
