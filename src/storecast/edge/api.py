"""The agent's local HTTP API (Flask): forecasts, readings, model status and rollback.

    GET  /v1/forecast?horizon=1..24   quantile forecast from the last complete hour
    POST /v1/readings                 a batch of sensor readings
    GET  /v1/model                    active and previous model, last update result
    POST /v1/model/rollback           back to the previous model (local admin token)
    GET  /v1/status                   everything `storecast edge status` prints
    GET  /healthz /readyz /metrics /openapi.json

Readings and forecasts are open to the store's network (the API listens on 127.0.0.1
unless configured otherwise); rollback needs the admin token ``edge init`` printed.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from flask import Flask, Response, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field

from storecast import __version__
from storecast.common import web
from storecast.common.errors import ModelError
from storecast.common.openapi import openapi_document
from storecast.common.web import ApiError, endpoint, error_response, parse_query
from storecast.edge.agent import Agent, describe
from storecast.edge.modelstore import ModelStoreError
from storecast.edge.sensors import Reading, ReadingsRefused, parse_readings
from storecast.forecasting.schema import HORIZON

__all__ = ["create_app"]


class ForecastQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    horizon: Annotated[int, Field(ge=1, le=HORIZON)] = HORIZON


class PointOut(BaseModel):
    ts: str
    q10: float
    q50: float
    q90: float


class ModelOut(BaseModel):
    name: str
    version: int
    digest: str
    runtime: str
    folder: str


class ForecastOut(BaseModel):
    """A forecast: ``method`` is ``model``, or ``seasonal_naive`` when history is short."""

    store_id: str
    origin: str
    generated_at: str
    horizon: int
    method: str
    model: ModelOut | None
    history_hours: int
    points: list[PointOut]


class ReadingsIn(BaseModel):
    """A batch of up to 10,000 readings, refused whole when any is invalid (docs/edge.md)."""

    readings: list[Reading]


class ReadingsAck(BaseModel):
    """Stored, already stored, and too old for the retention window (not stored)."""

    accepted: int
    duplicates: int
    expired: int


class ModelStatus(BaseModel):
    active: ModelOut | None
    previous: str | None
    last_update: dict[str, Any] | None


class Ready(BaseModel):
    ready: bool
    model: ModelOut | None
    method: str


def _iso(moment: Any) -> str:
    return str(moment.isoformat().replace("+00:00", "Z"))


def create_app(agent: Agent) -> Flask:
    """The local API over a running ``agent``."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024  # bytes: readings batches
    web.init_app(app)
    metrics = _Metrics(agent)

    @endpoint(
        "Quantile forecast for the next hours from the last complete hour of readings",
        tag="forecast",
        query=ForecastQuery,
        responses={200: ForecastOut, 422: web.ErrorBody},
    )
    def forecast() -> Response:
        query = parse_query(ForecastQuery)
        started = time.perf_counter()
        result = agent.forecast(query.horizon)
        metrics.forecasts.labels(result.method).inc()
        metrics.forecast_seconds.observe(time.perf_counter() - started)
        body = {
            "store_id": agent.config.store_id,
            "origin": _iso(result.origin),
            "generated_at": _iso(agent.clock.now()),
            "horizon": len(result.points),
            "method": result.method,
            "model": describe(result.model),
            "history_hours": result.history_hours,
            "points": [
                {"ts": _iso(ts), "q10": q10, "q50": q50, "q90": q90}
                for ts, q10, q50, q90 in result.points
            ],
        }
        return Response(json.dumps(body), mimetype="application/json")

    @endpoint(
        "Store a batch of sensor readings (idempotent per time and kind)",
        tag="readings",
        body=ReadingsIn,
        responses={
            200: ReadingsAck,
            400: web.ErrorBody,
            413: web.ErrorBody,
            415: web.ErrorBody,
            422: web.ErrorBody,
        },
    )
    def readings() -> Response:
        if not request.is_json:
            raise ApiError(415, "unsupported_media_type", "send a JSON body (application/json)")
        try:
            body = json.loads(request.get_data(cache=False))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
        try:
            parsed = parse_readings(body, agent.clock.now())
        except ReadingsRefused as exc:
            return error_response(exc.status, exc.code, exc.message, errors=exc.errors)
        result = agent.add_readings(parsed)
        metrics.readings.inc(result.accepted)
        return jsonify(
            {
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "expired": result.expired,
            }
        )

    @endpoint("The active and previous model and the last update", tag="model",
              responses={200: ModelStatus})  # fmt: skip
    def model() -> Response:
        last = agent.updater.last_result
        return jsonify(
            {
                "active": describe(agent.holder.current),
                "previous": agent.models.pointers().previous,
                "last_update": last.to_json() if last else None,
            }
        )

    @endpoint(
        "Roll back to the previous model (local admin token)",
        tag="model",
        roles=("local admin",),
        responses={200: ModelStatus, 401: web.ErrorBody, 409: web.ErrorBody},
    )
    def rollback() -> Response:
        secret = web.bearer_secret(request.headers.get("Authorization", ""))
        if secret is None or not agent.config.admin_token_ok(secret):
            raise ApiError(
                401, "unauthorized", "send the local admin token: Authorization: Bearer <token>"
            )
        try:
            pointers = agent.rollback()
        except ModelStoreError as exc:
            raise ApiError(409, "no_previous_model", str(exc)) from exc
        except ModelError as exc:  # nothing changed: the previous model did not verify or load
            raise ApiError(409, "previous_model_unusable", str(exc)) from exc
        last = agent.updater.last_result
        return jsonify(
            {
                "active": describe(agent.holder.current),
                "previous": pointers.previous,
                "last_update": last.to_json() if last else None,
            }
        )

    @endpoint("Agent status: model, telemetry backlog, last poll and upload", tag="service",
              responses={200: "application/json"})  # fmt: skip
    def status() -> Response:
        return jsonify(agent.status())

    @endpoint(
        "Liveness: the agent's threads run",
        tag="service",
        responses={200: "application/json", 503: "application/json"},
    )
    def healthz() -> Response:
        alive = agent.alive
        response = jsonify({"status": "ok" if alive else "degraded", "version": __version__})
        response.status_code = 200 if alive else 503
        return response

    @endpoint("Readiness: forecasts can be served (from a model or the fallback)", tag="service",
              responses={200: Ready})  # fmt: skip
    def readyz() -> Response:
        model = agent.holder.current
        return jsonify(
            {
                "ready": True,
                "model": describe(model),
                "method": "model" if model else "seasonal_naive",
            }
        )

    @endpoint("Prometheus metrics", tag="service", responses={200: "text/plain"})
    def metrics_view() -> Response:
        return Response(metrics.scrape(), mimetype=CONTENT_TYPE_LATEST)

    document: dict[str, Any] = {}

    @endpoint("This OpenAPI document", tag="service", responses={200: "application/json"})
    def openapi() -> Response:
        if not document:
            document.update(openapi_document(app, "storecast edge agent", __version__))
        return jsonify(document)

    routes = [
        ("/v1/forecast", "forecast", forecast, "GET"),
        ("/v1/readings", "readings", readings, "POST"),
        ("/v1/model", "model", model, "GET"),
        ("/v1/model/rollback", "rollback", rollback, "POST"),
        ("/v1/status", "status", status, "GET"),
        ("/healthz", "healthz", healthz, "GET"),
        ("/readyz", "readyz", readyz, "GET"),
        ("/metrics", "metrics", metrics_view, "GET"),
        ("/openapi.json", "openapi", openapi, "GET"),
    ]
    for rule, name, view, method in routes:
        app.add_url_rule(rule, name, view, methods=[method])
    return app


class _Metrics:
    """The agent's Prometheus metrics, in a registry of its own."""

    def __init__(self, agent: Agent) -> None:
        self.registry = CollectorRegistry()
        self.forecasts = Counter(
            "storecast_edge_forecasts_total", "Forecasts answered", ["method"],
            registry=self.registry,
        )  # fmt: skip
        self.forecast_seconds = Histogram(
            "storecast_edge_forecast_seconds", "Time to answer a forecast",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
            registry=self.registry,
        )  # fmt: skip
        self.readings = Counter(
            "storecast_edge_readings_total", "Sensor readings stored", registry=self.registry
        )
        depth = Gauge(
            "storecast_edge_outbox_depth", "Telemetry events waiting", registry=self.registry
        )
        depth.set_function(lambda: float(agent.outbox.depth()))
        dropped = Gauge(
            "storecast_edge_outbox_dropped", "Telemetry events dropped (outbox full)",
            registry=self.registry,
        )  # fmt: skip
        dropped.set_function(lambda: float(agent.outbox.dropped()))
        version = Gauge(
            "storecast_edge_model_version", "Version of the active model (0: none)",
            registry=self.registry,
        )  # fmt: skip
        version.set_function(
            lambda: float(agent.holder.current.version if agent.holder.current else 0)
        )

    def scrape(self) -> bytes:
        return generate_latest(self.registry)
