"""The API usage log: how often each caller used each endpoint, per UTC day.

Compliance asks "who used what": every routed request is counted once in ``api_usage``
(day, actor, role, method, endpoint rule, status), in its own short write transaction
after the response is built. Health checks, metrics and static files are not counted,
and neither are the device polls answered by the registry's fast path (their trace is
the device's last-seen time).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request

from storecast.analytics.rollups import insert_for
from storecast.analytics.tables import ApiUsageRow
from storecast.common.auth import Principal
from storecast.common.cloud import database

log = logging.getLogger(__name__)

_NOT_COUNTED = frozenset({"healthz", "metrics", "static", "dashboard.static", "dashboard.plotly"})


def init_app(app: Flask) -> None:
    """Count every routed request of ``app`` in the usage log."""

    @app.after_request
    def _count(response: Response) -> Response:
        rule = request.url_rule
        if rule is None or request.endpoint in _NOT_COUNTED:
            return response
        who: Principal | None = g.get("principal")
        db = database()
        row = {
            "day": db.clock.now().date(),
            "actor": who.actor if who else "anonymous",
            "role": who.role.value if who else "-",
            "method": request.method,
            "endpoint": rule.rule[:200],
            "status": response.status_code,
            "count": 1,
        }
        try:
            with db.transaction(write=True) as session:
                ins = insert_for(session, ApiUsageRow.__table__)
                session.execute(
                    ins.on_conflict_do_update(
                        index_elements=["day", "actor", "role", "method", "endpoint", "status"],
                        set_={"count": ApiUsageRow.count + ins.excluded.count},
                    ),
                    row,
                )
        except Exception:  # the answer is already decided: never fail it over a counter
            log.exception("could not count %s %s in the usage log", request.method, rule.rule)
        return response
