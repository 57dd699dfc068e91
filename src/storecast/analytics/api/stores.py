"""``/v1/analytics/stores``: the store list and one store's forecast-vs-actual summary."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint

from storecast.analytics import queries_stores
from storecast.analytics.api._params import window_from
from storecast.analytics.schemas import RangeQuery, StoreList, StoreSummary, StoreSummaryQuery
from storecast.common.auth import Role
from storecast.common.cloud import authorize, database
from storecast.common.web import ApiError, endpoint, parse_query

bp = Blueprint("analytics_stores", __name__, url_prefix="/v1/analytics/stores")

DEFAULT_SPAN = timedelta(days=7)


@bp.get("")
@endpoint(
    "Every store with its latest state and KPIs over a window (default: the last 7 days)",
    tag="analytics",
    roles=("viewer",),
    query=RangeQuery,
    responses={200: StoreList},
)
@authorize(Role.VIEWER)
def list_stores() -> dict[str, Any]:
    query = parse_query(RangeQuery)
    db = database()
    now = db.clock.now()
    window = window_from(query.start, query.end, now=now, span=DEFAULT_SPAN)
    with db.transaction() as session:
        found = queries_stores.list_stores(session, window, now)
    return found.model_dump(mode="json")


@bp.get("/<store_id>/summary")
@endpoint(
    "A store's forecast (q10/q50/q90 at one horizon) vs actual series, accuracy and totals",
    tag="analytics",
    roles=("viewer",),
    query=StoreSummaryQuery,
    responses={200: StoreSummary},
)
@authorize(Role.VIEWER)
def store_summary(store_id: str) -> dict[str, Any]:
    query = parse_query(StoreSummaryQuery)
    db = database()
    window = window_from(query.start, query.end, now=db.clock.now(), span=DEFAULT_SPAN)
    with db.transaction() as session:
        if not queries_stores.store_exists(session, store_id):
            raise ApiError(404, "not_found", f"no store {store_id!r} is enrolled or reporting")
        found = queries_stores.store_summary(
            session, store_id, window, query.granularity, query.horizon
        )
    return found.model_dump(mode="json")
