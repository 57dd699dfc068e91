"""Usage and change logs: model events, forecasts served per store-day, API usage.

The usage logs export as CSV or JSON Lines (``format=csv|jsonl``); the registry's audit
log, with its hash-chain check, is at ``/v1/audit`` and ``/v1/audit/verify``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response

from storecast.analytics import queries_usage
from storecast.analytics.api._params import export, window_from
from storecast.analytics.schemas import (
    ApiUsage,
    ApiUsageOut,
    ApiUsageQuery,
    ForecastUsage,
    ForecastUsageQuery,
    ForecastUsageRow,
    ModelEventList,
    ModelEventsQuery,
)
from storecast.common.auth import Role
from storecast.common.cloud import authorize, database
from storecast.common.web import endpoint, parse_query

bp = Blueprint("analytics_usage", __name__, url_prefix="/v1/analytics")

DEFAULT_SPAN = timedelta(days=7)
EXPORTS = ("text/csv", "application/x-ndjson")


@bp.get("/model-events")
@endpoint(
    "Model lifecycle events reported by devices, newest first (default: the last 7 days)",
    tag="analytics",
    roles=("viewer",),
    query=ModelEventsQuery,
    responses={200: ModelEventList},
)
@authorize(Role.VIEWER)
def model_events() -> dict[str, Any]:
    query = parse_query(ModelEventsQuery)
    db = database()
    window = window_from(query.start, query.end, now=db.clock.now(), span=DEFAULT_SPAN)
    actions = (query.action,) if query.action else ()
    with db.transaction() as session:
        found = queries_usage.model_events(
            session, window, actions=actions, store_id=query.store_id, limit=query.limit
        )
    return found.model_dump(mode="json")


@bp.get("/usage/forecasts")
@endpoint(
    "Forecasts served per store and UTC day (default: the last 7 days); json, csv or jsonl",
    tag="analytics",
    roles=("viewer",),
    query=ForecastUsageQuery,
    responses={200: ForecastUsage},
    alt_media=EXPORTS,
)
@authorize(Role.VIEWER)
def forecast_usage() -> Response | dict[str, Any]:
    query = parse_query(ForecastUsageQuery)
    db = database()
    window = window_from(
        query.start, query.end, now=db.clock.now(), span=DEFAULT_SPAN, whole_days=True
    )
    with db.transaction() as session:
        found = queries_usage.forecast_usage(session, window, query.store_id)
    fields = list(ForecastUsageRow.model_fields)
    return export(found, found.rows, fields, "forecast-usage", query.format)


@bp.get("/usage/api")
@endpoint(
    "API calls per UTC day, caller, endpoint and status (default: the last 7 days); "
    "json, csv or jsonl",
    tag="analytics",
    roles=("viewer",),
    query=ApiUsageQuery,
    responses={200: ApiUsage},
    alt_media=EXPORTS,
)
@authorize(Role.VIEWER)
def api_usage() -> Response | dict[str, Any]:
    query = parse_query(ApiUsageQuery)
    db = database()
    window = window_from(
        query.start, query.end, now=db.clock.now(), span=DEFAULT_SPAN, whole_days=True
    )
    with db.transaction() as session:
        found = queries_usage.api_usage(session, window, query.actor)
    return export(found, found.rows, list(ApiUsageOut.model_fields), "api-usage", query.format)
