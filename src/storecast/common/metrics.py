"""Prometheus metrics for every storecast Flask service, at ``/metrics``.

Under gunicorn with several workers set ``PROMETHEUS_MULTIPROC_DIR`` (``storecast ...
serve`` does) so a scrape sees all workers, not just the one that answered.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from storecast.common.web import endpoint

REQUESTS = Counter(
    "storecast_http_requests_total",
    "HTTP requests answered",
    ["service", "method", "endpoint", "status"],
)
LATENCY = Histogram(
    "storecast_http_request_seconds",
    "Time to answer an HTTP request",
    ["service", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)


def _scrape() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def init_app(app: Flask, service: str) -> None:
    """Count and time every request of ``app``; serve ``/metrics``."""

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    counters: dict[tuple[str, str, int], Any] = {}  # label children, looked up once
    timers: dict[str, Any] = {}

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("metrics_started")
        rule = request.url_rule
        name = rule.endpoint if rule is not None else "unmatched"
        key = (request.method, name, response.status_code)
        counter = counters.get(key)
        if counter is None:
            counter = counters[key] = REQUESTS.labels(service, key[0], name, str(key[2]))
        counter.inc()
        if started is not None:
            timer = timers.get(name)
            if timer is None:
                timer = timers[name] = LATENCY.labels(service, name)
            timer.observe(time.perf_counter() - started)
        return response

    @endpoint("Prometheus metrics", tag="service", responses={200: "text/plain"})
    def metrics() -> Response:
        return Response(_scrape(), mimetype=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
