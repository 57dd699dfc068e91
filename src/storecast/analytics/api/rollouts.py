"""``/v1/analytics/rollouts``: canary deployments, where they stand and what was decided."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from storecast.analytics import queries_rollouts
from storecast.analytics.api._params import window_before
from storecast.analytics.schemas import RolloutList, RolloutsQuery
from storecast.common.auth import Role
from storecast.common.cloud import authorize, database
from storecast.common.web import endpoint, parse_query

bp = Blueprint("analytics_rollouts", __name__, url_prefix="/v1/analytics/rollouts")


@bp.get("")
@endpoint(
    "Canary deployments in force, and the others decided on in the window_hours before at "
    "(default now), with their step, B's share and the latest decision",
    tag="analytics",
    roles=("viewer",),
    query=RolloutsQuery,
    responses={200: RolloutList},
)
@authorize(Role.VIEWER)
def rollouts() -> dict[str, Any]:
    query = parse_query(RolloutsQuery)
    db = database()
    window = window_before(query.at, query.window_hours, now=db.clock.now())
    with db.transaction() as session:
        found = queries_rollouts.rollouts(session, window.end, window)
    return found.model_dump(mode="json")
