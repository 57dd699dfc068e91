"""``/v1/analytics/fleet``: fleet KPIs now (or at a time), and the hourly fleet series."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint

from storecast.analytics import fleet
from storecast.analytics.api._params import window_before, window_from
from storecast.analytics.schemas import FleetKpis, FleetQuery, FleetSeries, RangeQuery
from storecast.common.auth import Role
from storecast.common.cloud import authorize, database
from storecast.common.web import endpoint, parse_query

bp = Blueprint("analytics_fleet", __name__, url_prefix="/v1/analytics/fleet")

SERIES_SPAN = timedelta(hours=48)  # the default window of the series


@bp.get("")
@endpoint(
    "Fleet KPIs at a time (default now) over the window_hours before it",
    tag="analytics",
    roles=("viewer",),
    query=FleetQuery,
    responses={200: FleetKpis},
)
@authorize(Role.VIEWER)
def fleet_kpis() -> dict[str, Any]:
    query = parse_query(FleetQuery)
    db = database()
    window = window_before(query.at, query.window_hours, now=db.clock.now())
    with db.transaction() as session:
        found = fleet.fleet_kpis(session, window.end, window)
    return found.model_dump(mode="json")


@bp.get("/series")
@endpoint(
    "The fleet hour by hour: volume, errors, latency, accuracy (default: the last 48 hours)",
    tag="analytics",
    roles=("viewer",),
    query=RangeQuery,
    responses={200: FleetSeries},
)
@authorize(Role.VIEWER)
def fleet_series() -> dict[str, Any]:
    query = parse_query(RangeQuery)
    db = database()
    window = window_from(query.start, query.end, now=db.clock.now(), span=SERIES_SPAN)
    with db.transaction() as session:
        found = fleet.fleet_series(session, window)
    return found.model_dump(mode="json")
