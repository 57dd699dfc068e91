"""``/v1/analytics/rootcause`` and ``/v1/analytics/incidents``: what changed, and why."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint

from storecast.analytics import diagnostics
from storecast.analytics.api._params import window_before, window_from
from storecast.analytics.schemas import IncidentList, IncidentsQuery, RootCause, RootCauseQuery
from storecast.common.auth import Role
from storecast.common.cloud import authorize, database
from storecast.common.web import endpoint, parse_query

bp = Blueprint("analytics_diagnostics", __name__, url_prefix="/v1/analytics")

DEFAULT_SPAN = timedelta(hours=24)


@bp.get("/rootcause")
@endpoint(
    "Rank what explains a metric's change (window: the last 24 h; baseline: the 7 days "
    "before it), with the deployments and model events of the window",
    tag="analytics",
    roles=("viewer",),
    query=RootCauseQuery,
    responses={200: RootCause},
)
@authorize(Role.VIEWER)
def root_cause() -> dict[str, Any]:
    query = parse_query(RootCauseQuery)
    db = database()
    window = window_from(query.start, query.end, now=db.clock.now(), span=DEFAULT_SPAN)
    baseline = window_from(
        query.baseline_start,
        query.baseline_end,
        now=window.start,
        span=diagnostics.BASELINE_SPAN,
        names=("baseline_start", "baseline_end"),
    )
    with db.transaction() as session:
        found = diagnostics.root_cause(session, query.metric, window, baseline)
    return found.model_dump(mode="json")


@bp.get("/incidents")
@endpoint(
    "Metrics whose last window_hours (before at, default now) crossed their threshold "
    "against the 7 days before, with root-cause findings",
    tag="analytics",
    roles=("viewer",),
    query=IncidentsQuery,
    responses={200: IncidentList},
)
@authorize(Role.VIEWER)
def incidents() -> dict[str, Any]:
    query = parse_query(IncidentsQuery)
    db = database()
    window = window_before(query.at, query.window_hours, now=db.clock.now())
    with db.transaction() as session:
        found = diagnostics.incidents(session, window.end, query.window_hours)
    return found.model_dump(mode="json")
