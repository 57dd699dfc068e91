"""What every storecast Flask service shares: JSON errors, request ids, typed bodies.

Views raise ``ApiError`` (or let a pydantic ``ValidationError`` escape) and the handlers
installed by ``init_app`` turn it into ``{"error": {"code", "message", ...}}`` with the
right status; nothing ever answers with a stack trace. ``endpoint`` records what a view
accepts and returns so ``storecast.common.openapi`` can describe it.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask, Response, g, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ApiError(Exception):
    """An error the client caused or must know about, with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorDetail


@dataclass
class EndpointSpec:
    """What a view takes and gives, for the OpenAPI document."""

    summary: str
    tag: str
    roles: tuple[str, ...] = ()
    body: type[BaseModel] | None = None
    body_media: str | None = None  # a raw (non-JSON) request body, e.g. a bundle upload
    query: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | str | None] = field(default_factory=dict)
    alt_media: tuple[str, ...] = ()  # other media types a 200 may come in (csv exports)


def endpoint(
    summary: str,
    *,
    tag: str,
    roles: tuple[str, ...] = (),
    body: type[BaseModel] | None = None,
    body_media: str | None = None,
    query: type[BaseModel] | None = None,
    responses: dict[int, type[BaseModel] | str | None] | None = None,
    alt_media: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Attach an ``EndpointSpec`` to a view (documentation only; behaviour is the view's)."""

    def mark(view: F) -> F:
        view.storecast_spec = EndpointSpec(  # type: ignore[attr-defined]
            summary,
            tag,
            roles,
            body,
            body_media,
            query,
            dict(responses or {200: None}),
            alt_media,
        )
        return view

    return mark


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    g.error_message = message  # for the audit record of this call
    body: dict[str, Any] = {"code": code, "message": message}
    body.update(extra)
    response = jsonify({"error": body})
    response.status_code = status
    return response


def _field_name(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(body)"


def validation_error(exc: ValidationError) -> ApiError:
    """A 422 naming each field pydantic refused."""
    fields = [
        {"field": _field_name(tuple(err["loc"])), "message": err["msg"]} for err in exc.errors()
    ]
    first = fields[0] if fields else {"field": "(body)", "message": "invalid"}
    return ApiError(422, "validation_error", f"{first['field']}: {first['message']}", fields=fields)


def parse_body(model: type[M]) -> M:
    """The JSON request body validated as ``model`` (415/400/422 otherwise)."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send a JSON body (application/json)")
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from exc


def parse_query(model: type[M]) -> M:
    """The query string validated as ``model`` (422 naming the parameter otherwise)."""
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise validation_error(exc) from exc


def bearer_secret(header: str) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, or None."""
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def request_id_from(incoming: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is sane, else a fresh random id."""
    return incoming if incoming and _REQUEST_ID.match(incoming) else os.urandom(16).hex()


def request_id() -> str:
    """This request's id (from ``X-Request-ID`` when the caller sent a sane one)."""
    return str(g.get("request_id", "-"))


def client_addr() -> str:
    return request.remote_addr or "-"


def init_app(app: Flask) -> None:
    """Install request ids and JSON error handlers on ``app``."""

    @app.before_request
    def _start_request() -> None:
        g.request_id = request_id_from(request.headers.get("X-Request-ID"))
        # No id or name holds a NUL byte, and PostgreSQL refuses to even compare one.
        if "\x00" in request.path:
            raise ApiError(404, "not_found", "no such resource (the path holds a NUL byte)")

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        return response

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, **exc.extra)

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> Response:
        err = validation_error(exc)
        return error_response(err.status, err.code, err.message, **err.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(status, code, exc.description or exc.name or "error")
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception(
            "unhandled error in %s %s (request %s)", request.method, request.path, request_id()
        )
        return error_response(500, "internal_error", f"internal error (request {request_id()})")
