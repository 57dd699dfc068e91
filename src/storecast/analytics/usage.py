"""The API usage log: how often each caller used each endpoint, per UTC day.

Compliance asks "who used what": every routed request is counted once in ``api_usage``
(day, actor, role, method, endpoint rule, status), in its own short write transaction
after the response is built. Health checks, metrics and static files are not counted,
and neither are the device polls answered by the registry's fast path (their trace is
the device's last-seen time).
"""

from __future__ import annotations

import functools
import logging

from flask import Flask, Response, g, request
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from storecast.analytics.rollups import dialect_insert
from storecast.analytics.tables import ApiUsageRow
from storecast.common.auth import Principal
from storecast.common.cloud import database
from storecast.common.rawsql import RawStatement

log = logging.getLogger(__name__)

_NOT_COUNTED = frozenset({"healthz", "metrics", "static", "dashboard.static", "dashboard.plotly"})


def count_request(session: Session, status: int) -> None:
    """Count this request in the usage log, inside ``session``'s transaction.

    A view that already holds a write transaction (telemetry ingestion) counts its own
    success there, saving a transaction per call; every other answer is counted after
    the response is built.
    """
    rule = request.url_rule
    who: Principal | None = g.get("principal")
    day = database().clock.now().date()
    dialect = session.get_bind().dialect
    row = {
        # SQLite: the text SQLAlchemy's Date stores there
        "day": day.isoformat() if dialect.name == "sqlite" else day,
        "actor": who.actor if who else "anonymous",
        "role": who.role.value if who else "-",
        "method": request.method,
        "endpoint": (rule.rule if rule is not None else request.path)[:200],
        "status": status,
        "count": 1,
    }
    _upsert(dialect.name, dialect).executemany(session, [row])
    g.usage_counted = status


@functools.cache
def _upsert(dialect_name: str, dialect: Dialect) -> RawStatement:
    ins = dialect_insert(dialect, ApiUsageRow.__table__)
    return RawStatement(
        ins.on_conflict_do_update(
            index_elements=["day", "actor", "role", "method", "endpoint", "status"],
            set_={"count": ApiUsageRow.count + ins.excluded.count},
        ),
        dialect,
    )


def init_app(app: Flask) -> None:
    """Count every routed request of ``app`` in the usage log."""

    @app.after_request
    def _count(response: Response) -> Response:
        rule = request.url_rule
        if rule is None or request.endpoint in _NOT_COUNTED:
            return response
        if g.get("usage_counted") == response.status_code:
            return response
        try:
            with database().transaction(write=True) as session:
                count_request(session, response.status_code)
        except Exception:  # the answer is already decided: never fail it over a counter
            log.exception("could not count %s %s in the usage log", request.method, rule.rule)
        return response
