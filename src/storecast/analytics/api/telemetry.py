"""``POST /v1/telemetry``: a device's batch of events (deduplicated by event id)."""

from __future__ import annotations

from typing import Any, cast

from flask import Blueprint, current_app, g, request
from pydantic import BaseModel, Field

from storecast.analytics import usage
from storecast.analytics.ingest import BatchRefused, EnrolledStores, screen_batch, store_batch
from storecast.analytics.schemas import MAX_BATCH_BYTES, MAX_EVENTS, TelemetryAck
from storecast.common.auth import Role
from storecast.common.cloud import authorize, database, principal
from storecast.common.web import ApiError, ErrorBody, endpoint

bp = Blueprint("telemetry", __name__, url_prefix="/v1/telemetry")
_STORES = "storecast.analytics.enrolled_stores"


def _stores() -> EnrolledStores:
    """This app's cache of device stores (per app: tests run several over other databases)."""
    return cast(EnrolledStores, current_app.extensions.setdefault(_STORES, EnrolledStores()))


class TelemetryBatch(BaseModel):
    """A batch of telemetry events (see the event schema in docs/analytics.md)."""

    events: list[dict[str, Any]] = Field(max_length=MAX_EVENTS)


def _read_body() -> bytes:
    """The request body, refusing more than ``MAX_BATCH_BYTES`` (chunked bodies included)."""
    if request.content_length is not None and request.content_length > MAX_BATCH_BYTES:
        raise ApiError(
            413, "payload_too_large", f"a batch may hold at most {MAX_BATCH_BYTES} bytes"
        )
    return request.stream.read(MAX_BATCH_BYTES + 1)  # one byte over: "too large" below


@bp.post("")
@endpoint(
    "Send a batch of telemetry events (device token; idempotent by event_id)",
    tag="telemetry",
    roles=("device",),
    body=TelemetryBatch,
    responses={200: TelemetryAck, 403: ErrorBody, 413: ErrorBody},
)
@authorize(Role.DEVICE)
def post_telemetry() -> dict[str, Any]:
    # Telemetry is data, not a change to what the cloud manages: it is counted in the API
    # usage log rather than appended to the audit chain (thousands of batches a minute).
    g.audited = True
    who = principal()
    if who.device_id is None:
        raise ApiError(403, "forbidden", "only a device token may send telemetry")
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send a JSON body (application/json)")
    body = _read_body()
    db = database()
    now = db.clock.now()
    try:
        store_id = _stores().get(db, who.device_id)
        # Parsing and validating need no lock: only storing takes the write transaction
        # (on SQLite, the database's one writer), so workers check batches in parallel.
        screened = screen_batch(body, who.device_id, store_id, now)
        with db.transaction(write=True) as session:
            ack = store_batch(session, who.device_id, screened, now)
            usage.count_request(session, 200)
    except BatchRefused as exc:
        extra = {"fields": [{"field": exc.field, "message": exc.message}]} if exc.field else {}
        message = f"{exc.field}: {exc.message}" if exc.field else exc.message
        raise ApiError(exc.status, exc.code, message, **extra) from exc
    return ack.model_dump(mode="json")
