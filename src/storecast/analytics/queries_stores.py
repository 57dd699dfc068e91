"""Store queries: the store list with each store's latest state, and a store's summary."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from storecast.analytics.queries import (
    DEVICES,
    accuracy_of,
    accuracy_sums,
    agent_label,
    bucket_starts,
    roster,
    status_of,
    total,
)
from storecast.analytics.schemas import (
    Accuracy,
    Granularity,
    SeriesPoint,
    StoreList,
    StoreRow,
    StoreSummary,
    Window,
)
from storecast.analytics.stats import ratio
from storecast.analytics.tables import (
    NO_MODEL,
    AccuracyHourlyRow,
    DeviceStateRow,
    ForecastPointRow,
    InferenceHourlyRow,
    StoreActualRow,
)

__all__ = ["list_stores", "store_exists", "store_summary"]

_NO_ACCURACY = Accuracy(points=0, wape=None, bias=None, coverage_80=None)


def _latest_states(session: Session) -> dict[str, Any]:
    """Per store, the state row of its device heard from last (decommissioned ones aside)."""
    s = DeviceStateRow
    retired = select(DEVICES.c.device_id).where(DEVICES.c.decommissioned_at.is_not(None))
    newest = (
        select(s.store_id, func.max(s.last_heartbeat_at).label("at"))
        .where(s.device_id.not_in(retired))
        .group_by(s.store_id)
        .subquery()
    )
    rows = session.execute(
        select(s.store_id, s.last_heartbeat_at, s.model_name, s.model_version, s.agent_version)
        .join(newest, and_(s.store_id == newest.c.store_id, s.last_heartbeat_at == newest.c.at))
        .where(s.device_id.not_in(retired))
        .order_by(s.store_id, s.device_id.desc())
    ).all()
    return {row.store_id: row for row in rows}  # ties: the smallest device id wins


def list_stores(session: Session, window: Window, now: datetime) -> StoreList:
    """Every store: its devices, their newest state (status as of ``now``), window KPIs."""
    r = roster()
    devices: dict[str, int] = dict(
        session.execute(select(r.c.store_id, func.count()).group_by(r.c.store_id)).all()
    )
    regions = dict(
        session.execute(
            select(DEVICES.c.store_id, func.max(DEVICES.c.region)).group_by(DEVICES.c.store_id)
        ).all()
    )
    states = _latest_states(session)
    a, i = AccuracyHourlyRow, InferenceHourlyRow
    accuracy = {
        row[0]: accuracy_of(row[1:])
        for row in session.execute(
            select(a.store_id, *accuracy_sums())
            .where(a.hour >= window.start, a.hour < window.end)
            .group_by(a.store_id)
        )
    }
    served = {
        row[0]: (int(row[1]), int(row[2]))
        for row in session.execute(
            select(i.store_id, total(i.count), total(i.errors))
            .where(i.hour >= window.start, i.hour < window.end)
            .group_by(i.store_id)
        )
    }
    stores = []
    for store_id in sorted(set(devices) | set(accuracy) | set(served)):
        state = states.get(store_id)
        count, errors = served.get(store_id, (0, 0))
        has_model = state is not None and state.model_name != NO_MODEL
        stores.append(
            StoreRow(
                store_id=store_id,
                region=regions.get(store_id),
                devices=int(devices.get(store_id, 0)),
                status=status_of(state.last_heartbeat_at if state else None, now),
                last_heartbeat_at=state.last_heartbeat_at if state else None,
                model_name=state.model_name if state and has_model else None,
                model_version=state.model_version if state and has_model else None,
                agent_version=agent_label(state.agent_version) if state else None,
                accuracy=accuracy.get(store_id, _NO_ACCURACY),
                forecasts_served=count,
                error_rate=ratio(errors, count),
            )
        )
    return StoreList(window=window, stores=stores)


def store_exists(session: Session, store_id: str) -> bool:
    """Whether the store is enrolled in the registry or ever sent data."""
    probes = [
        exists().where(DEVICES.c.store_id == store_id),
        exists().where(DeviceStateRow.store_id == store_id),
        exists().where(StoreActualRow.store_id == store_id),
        exists().where(InferenceHourlyRow.store_id == store_id),
    ]
    return bool(session.execute(select(or_(*probes))).scalar())


def store_summary(
    session: Session, store_id: str, window: Window, granularity: Granularity, horizon: int
) -> StoreSummary:
    """Forecast (at ``horizon``) vs actual series, accuracy (all horizons) and totals."""
    fp, sa, a, i = ForecastPointRow, StoreActualRow, AccuracyHourlyRow, InferenceHourlyRow
    # Two versions may forecast one hour (a model switch mid-hour): show their mean.
    forecasts = session.execute(
        select(fp.ts, func.avg(fp.q10), func.avg(fp.q50), func.avg(fp.q90))
        .where(
            fp.store_id == store_id,
            fp.ts >= window.start,
            fp.ts < window.end,
            fp.horizon == horizon,
        )
        .group_by(fp.ts)
    ).all()
    actuals = session.execute(
        select(sa.ts, sa.sales_units).where(
            sa.store_id == store_id, sa.ts >= window.start, sa.ts < window.end
        )
    ).all()
    sums = session.execute(
        select(*accuracy_sums()).where(
            a.store_id == store_id, a.hour >= window.start, a.hour < window.end
        )
    ).one()
    count, errors = session.execute(
        select(total(i.count), total(i.errors)).where(
            i.store_id == store_id, i.hour >= window.start, i.hour < window.end
        )
    ).one()

    def bucket(ts: datetime) -> datetime:
        return ts if granularity == "hour" else ts.replace(hour=0)

    quantiles: dict[datetime, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for ts, q10, q50, q90 in forecasts:
        sums_q = quantiles[bucket(ts)]
        sums_q[0] += float(q10)
        sums_q[1] += float(q50)
        sums_q[2] += float(q90)
    observed: dict[datetime, float] = defaultdict(float)
    for ts, sales in actuals:
        observed[bucket(ts)] += float(sales)
    series = []
    for start in bucket_starts(window, granularity):
        q = quantiles.get(start)
        series.append(
            SeriesPoint(
                ts=start,
                q10=q[0] if q else None,
                q50=q[1] if q else None,
                q90=q[2] if q else None,
                actual=observed.get(start),
            )
        )
    return StoreSummary(
        store_id=store_id,
        window=window,
        granularity=granularity,
        horizon=horizon,
        series=series,
        accuracy=accuracy_of(sums),
        totals={
            "actual": sum(observed.values()),
            "forecast": sum(q[1] for q in quantiles.values()),
            "forecasts_served": float(count),
            "errors": float(errors),
        },
    )
