"""The assignment poll's common case, answered below Flask.

A fleet polls ``GET /v1/devices/{id}/assignment`` all day, and Flask's per-request
machinery (request context, hooks, proxies) costs more than the poll's one query.
``FastPoll`` wraps the app's WSGI callable and answers exactly one case itself: a device
token asking for its own, existing, active device with a well-formed query. It runs the
same code as the Flask view (``fleet.AssignmentPoll``, ``fleet.record_seen``, the
resolver, the ETag) and counts the request in the same Prometheus metrics. Everything
else (no or bad token, another device, an admin, an unknown or decommissioned device, a
malformed query, any error) falls through to the Flask view, which answers it the
documented way, so the API behaves the same whichever path served it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError

from storecast.common.auth import Role
from storecast.common.metrics import LATENCY, REQUESTS
from storecast.common.web import ApiError, bearer_secret, request_id_from
from storecast.registry import fleet, schemas
from storecast.registry.context import Registry

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_PATH = re.compile(r"^/v1/devices/([A-Za-z0-9][A-Za-z0-9._:-]{0,127})/assignment$")
ENDPOINT = "devices.assignment"


class FastPoll:
    """WSGI middleware: the happy path of the assignment poll, or the wrapped app."""

    def __init__(
        self, app: WSGIApp, registry: Registry, cache: fleet.AssignmentCache, service: str
    ) -> None:
        self._app = app
        self._registry = registry
        self._cache = cache
        self._requests = {
            code: REQUESTS.labels(service, "GET", ENDPOINT, str(code)) for code in (200, 304)
        }
        self._latency = LATENCY.labels(service, ENDPOINT)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") == "GET":
            match = _PATH.match(environ.get("PATH_INFO", ""))
            if match is not None:
                started = time.perf_counter()
                try:
                    answer = self._answer(environ, match.group(1))
                except Exception:  # the Flask view will answer (and log) it properly
                    log.debug("fast poll fell back to the Flask view", exc_info=True)
                    answer = None
                if answer is not None:
                    status, headers, body = answer
                    start_response(status, headers)
                    self._requests[200 if body else 304].inc()
                    self._latency.observe(time.perf_counter() - started)
                    return [body]
        return self._app(environ, start_response)

    def _answer(
        self, environ: dict[str, Any], device_id: str
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        secret = bearer_secret(environ.get("HTTP_AUTHORIZATION", ""))
        if secret is None:
            return None
        query = _query(environ.get("QUERY_STRING", ""))
        if query is None:
            return None
        poll = fleet.AssignmentPoll(self._registry, self._cache, device_id)
        who = poll(secret)
        if who is None or who.role is not Role.DEVICE or who.device_id != device_id:
            return None
        try:
            device, assigned = poll.assignment()
        except ApiError:
            return None
        if device.decommissioned_at is not None:
            return None
        registry = self._registry
        fleet.record_seen(
            registry,
            device,
            registry.config.clock.now(),
            query.current_model,
            query.current_version,
        )
        etag = fleet.etag_for(assigned)
        headers = [
            ("ETag", etag),
            ("Cache-Control", "no-cache"),
            ("X-Request-ID", request_id_from(environ.get("HTTP_X_REQUEST_ID"))),
        ]
        if etag in fleet.if_none_match(environ.get("HTTP_IF_NONE_MATCH", "")):
            return "304 NOT MODIFIED", headers, b""
        body = json.dumps(fleet.assignment_out(device_id, assigned).model_dump(mode="json"))
        data = body.encode() + b"\n"
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        return "200 OK", headers, data


def _query(raw: str) -> schemas.AssignmentQuery | None:
    pairs = parse_qsl(raw, keep_blank_values=True)
    values = dict(pairs)
    if len(values) != len(pairs):
        return None
    try:
        return schemas.AssignmentQuery.model_validate(values)
    except ValidationError:
        return None
