"""``/v1/analytics/models``: performance by model version."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint

from storecast.analytics import queries_models
from storecast.analytics.api._params import window_from
from storecast.analytics.schemas import ModelPerformance, ModelsQuery
from storecast.common.auth import Role
from storecast.common.cloud import authorize, database
from storecast.common.web import endpoint, parse_query

bp = Blueprint("analytics_models", __name__, url_prefix="/v1/analytics/models")

# The operational view: the last day. A query reads (stores x hours) rows of two rollups,
# so a week over a large fleet costs about seven times as much; ask for it with start/end.
DEFAULT_SPAN = timedelta(hours=24)


@bp.get("")
@endpoint(
    "Accuracy (95% CI over stores), latency percentiles and error rate by model version "
    "(default: the last 24 hours)",
    tag="analytics",
    roles=("viewer",),
    query=ModelsQuery,
    responses={200: ModelPerformance},
)
@authorize(Role.VIEWER)
def model_performance() -> dict[str, Any]:
    query = parse_query(ModelsQuery)
    db = database()
    window = window_from(query.start, query.end, now=db.clock.now(), span=DEFAULT_SPAN)
    with db.transaction() as session:
        found = queries_models.model_performance(session, window, query.model_name)
    return found.model_dump(mode="json")
