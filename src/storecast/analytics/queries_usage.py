"""Usage and change logs: model events, forecasts served per store-day, API usage, deployments."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import Date, func, select
from sqlalchemy.orm import Session

from storecast.analytics.queries import DEPLOYMENTS, total
from storecast.analytics.schemas import (
    ApiUsage,
    ApiUsageOut,
    DeploymentRef,
    ForecastUsage,
    ForecastUsageRow,
    ModelEventCount,
    ModelEventList,
    ModelEventOut,
    Window,
)
from storecast.analytics.tables import ApiUsageRow, InferenceHourlyRow, ModelEventRow

__all__ = [
    "CHANGE_ACTIONS",
    "api_usage",
    "deployments_in",
    "forecast_usage",
    "model_event_summary",
    "model_events",
]

# The lifecycle events that change what a device runs (root cause lists these).
CHANGE_ACTIONS = ("activated", "rejected", "rolled_back")

_TICK = timedelta(microseconds=1)


def _event_out(row: ModelEventRow) -> ModelEventOut:
    return ModelEventOut(
        event_id=row.event_id,
        ts=row.ts,
        device_id=row.device_id,
        store_id=row.store_id,
        action=row.action,
        model_name=row.model_name,
        model_version=row.model_version,
        agent_version=row.agent_version,
        digest=row.digest,
        reason=row.reason,
        duration_ms=row.duration_ms,
    )


def model_events(
    session: Session,
    window: Window,
    *,
    actions: tuple[str, ...] = (),
    store_id: str | None = None,
    limit: int = 100,
) -> ModelEventList:
    """Model lifecycle events in the window, newest first (``actions``: only these)."""
    m = ModelEventRow
    stmt = select(m).where(m.ts >= window.start, m.ts < window.end)
    if actions:
        stmt = stmt.where(m.action.in_(actions))
    if store_id is not None:
        stmt = stmt.where(m.store_id == store_id)
    rows = session.execute(stmt.order_by(m.ts.desc(), m.event_id).limit(limit)).scalars()
    return ModelEventList(events=[_event_out(row) for row in rows])


def model_event_summary(
    session: Session, window: Window, actions: tuple[str, ...] = CHANGE_ACTIONS
) -> list[ModelEventCount]:
    """Model events in the window counted by action and version (most events first)."""
    m = ModelEventRow
    rows = session.execute(
        select(
            m.action,
            m.model_name,
            m.model_version,
            func.count(),
            func.count(func.distinct(m.store_id)),
            func.min(m.ts),
            func.max(m.ts),
        )
        .where(m.ts >= window.start, m.ts < window.end, m.action.in_(actions))
        .group_by(m.action, m.model_name, m.model_version)
    ).all()
    counts = [
        ModelEventCount(
            action=action,
            model_name=name,
            model_version=version,
            events=int(events),
            stores=int(stores),
            first_ts=first,
            last_ts=last,
        )
        for action, name, version, events, stores, first, last in rows
    ]
    return sorted(counts, key=lambda c: (-c.events, c.action, c.model_name, c.model_version))


def forecast_usage(session: Session, window: Window, store_id: str | None = None) -> ForecastUsage:
    """Forecasts served (and failed) per store and UTC day, over hours starting in the window."""
    i = InferenceHourlyRow
    day = func.date(i.hour, type_=Date)
    stmt = (
        select(day.label("day"), i.store_id, total(i.count), total(i.errors))
        .where(i.hour >= window.start, i.hour < window.end)
        .group_by(day, i.store_id)
        .order_by(day, i.store_id)
    )
    if store_id is not None:
        stmt = stmt.where(i.store_id == store_id)
    return ForecastUsage(
        rows=[
            ForecastUsageRow(day=d, store_id=s, forecasts_served=int(n), errors=int(e))
            for d, s, n, e in session.execute(stmt)
        ]
    )


def api_usage(session: Session, window: Window, actor: str | None = None) -> ApiUsage:
    """API calls counted per UTC day, caller, endpoint and status, for days overlapping the window.

    ``actor`` keeps callers whose name contains it.
    """
    u = ApiUsageRow
    stmt = select(u).where(u.day >= window.start.date(), u.day <= (window.end - _TICK).date())
    if actor:
        stmt = stmt.where(u.actor.contains(actor, autoescape=True))
    stmt = stmt.order_by(u.day, u.actor, u.method, u.endpoint, u.status, u.role)
    return ApiUsage(
        rows=[
            ApiUsageOut(
                day=row.day,
                actor=row.actor,
                role=row.role,
                method=row.method,
                endpoint=row.endpoint,
                status=row.status,
                count=row.count,
            )
            for row in session.execute(stmt).scalars()
        ]
    )


def deployments_in(session: Session, window: Window) -> list[DeploymentRef]:
    """Registry deployments created in the window, newest first."""
    d = DEPLOYMENTS.c
    rows = session.execute(
        select(
            d.id, d.model, d.version, d.alias, d.status, d.selector_json, d.created_at, d.created_by
        )
        .where(d.created_at >= window.start, d.created_at < window.end)
        .order_by(d.created_at.desc(), d.id.desc())
    ).all()
    return [
        DeploymentRef(
            id=row.id,
            model=row.model,
            version=row.version,
            alias=row.alias,
            status=row.status,
            selector=json.loads(row.selector_json),
            created_at=row.created_at,
            created_by=row.created_by,
        )
        for row in rows
    ]
