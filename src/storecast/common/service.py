"""``/healthz`` and ``/openapi.json``, which every cloud service answers."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from pydantic import BaseModel
from sqlalchemy import text

from storecast import __version__
from storecast.common.cloud import database
from storecast.common.openapi import openapi_document
from storecast.common.web import endpoint

log = logging.getLogger(__name__)


class Health(BaseModel):
    """Liveness and database reachability."""

    status: str
    database: str
    version: str


def init_app(app: Flask, title: str) -> None:
    """Add the health check and the OpenAPI document to ``app``."""

    @endpoint(
        "Liveness and database reachability (503 when the database is down)",
        tag="service",
        responses={200: Health, 503: Health},
    )
    def healthz() -> Response:
        try:
            with database().transaction() as session:
                session.execute(text("SELECT 1"))
            status, code = "ok", 200
        except Exception:
            log.exception("health check: the database is unreachable")
            status, code = "database unreachable", 503
        response = jsonify(
            {
                "status": "ok" if code == 200 else "degraded",
                "database": status,
                "version": __version__,
            }
        )
        response.status_code = code
        return response

    document: dict[str, Any] = {}

    @endpoint("This OpenAPI document", tag="service", responses={200: "application/json"})
    def openapi() -> Response:
        if not document:
            document.update(openapi_document(app, title, __version__))
        return jsonify(document)

    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/openapi.json", "openapi", openapi, methods=["GET"])
