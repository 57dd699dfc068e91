"""The telemetry event schema: the contract between edge devices and the analytics service.

Every event has an ``event_id`` (UUID, the idempotency key), ``device_id``, ``store_id``,
``type``, ``ts`` (UTC event time), ``model`` (``{name, version}`` or null) and a
``payload`` whose shape depends on ``type``:

    heartbeat   cpu_pct, rss_mb, disk_free_mb, uptime_s, agent_version, outbox_depth,
                dropped_events, last_poll_ok, last_upload_ok
    inference   window_start, window_end, count, errors, latency_hist (counts per
                ``LATENCY_BOUNDS_MS`` bucket, plus one overflow bucket)
    forecast    origin, horizon, points [{ts, q10, q50, q90}] (once per origin hour)
    actual      ts, sales_units, footfall (once per completed hour)
    model       action, name, version, digest, reason, duration_ms
    error       component, kind, message, count

Unknown fields are refused (``extra="forbid"``), so a typo never silently drops data.
Times must carry a zone and lie in [2000, 2200). A resent event is the same event: same
id, same time (the cloud deduplicates by the id within the event's hour).
Pure data: no I/O, importable by the edge agent, the simulator and the cloud alike.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

__all__ = [
    "EVENT_TYPES",
    "LATENCY_BOUNDS_MS",
    "MODEL_ACTIONS",
    "ActualEvent",
    "ErrorEvent",
    "EventRejection",
    "ForecastEvent",
    "HeartbeatEvent",
    "InferenceEvent",
    "ModelEvent",
    "ModelRef",
    "TelemetryEvent",
    "hour_floor",
    "validate_batch",
    "validate_event",
]

# Upper bounds (milliseconds, inclusive) of the inference latency histogram buckets. The
# histogram has one more bucket than bounds: everything slower than the last bound. Fixed
# bounds are what let percentiles aggregate across devices and hours by adding counts.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0,
)  # fmt: skip
HIST_BUCKETS = len(LATENCY_BOUNDS_MS) + 1

EVENT_TYPES = ("heartbeat", "inference", "forecast", "actual", "model", "error")
MODEL_ACTIONS = ("download_started", "verified", "activated", "rejected", "rolled_back")
MAX_HORIZON = 168  # hours a forecast event may cover


def _on_the_hour(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    if value.minute or value.second or value.microsecond:
        raise ValueError("timestamp must be the start of an hour")
    return value


# Constraints checked by pydantic-core itself (no Python call per value): ingestion
# validates every event of every batch, so this is the hot path of the cloud.
# Event times are bounded, so every derived time (hour starts, origin + 24 h) exists.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
UtcTime = Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST)]
HourTime = Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST), AfterValidator(_on_the_hour)]
NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0, le=2**62)]
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_NO_OFFSET = timedelta(0)


def hour_floor(moment: datetime) -> datetime:
    """The start of the UTC hour holding ``moment`` (an aware datetime)."""
    # Ingestion floors every event's time, nearly always sent in UTC: its fields then
    # name the hour, which is cheaper than ``timestamp()`` (about half the time).
    if moment.utcoffset() == _NO_OFFSET:
        return _utc_hour(moment.year, moment.month, moment.day, moment.hour)
    return _hour_start(int(moment.timestamp() // 3600))


# One datetime per distinct hour, built once.
@functools.lru_cache(maxsize=8192)
def _utc_hour(year: int, month: int, day: int, hour: int) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@functools.lru_cache(maxsize=8192)
def _hour_start(hours_since_epoch: int) -> datetime:
    return datetime.fromtimestamp(hours_since_epoch * 3600, UTC)


class ModelRef(_Strict):
    """Which model version produced (or was running during) an event."""

    name: Name
    version: Annotated[int, Field(ge=1, le=2**31 - 1)]


class HeartbeatPayload(_Strict):
    cpu_pct: NonNegative
    rss_mb: NonNegative
    disk_free_mb: NonNegative
    uptime_s: NonNegative
    agent_version: Annotated[str, Field(min_length=1, max_length=64)]
    outbox_depth: Count
    dropped_events: Count  # dropped since the agent started (cumulative)
    last_poll_ok: bool
    last_upload_ok: bool


class InferencePayload(_Strict):
    window_start: UtcTime
    window_end: UtcTime
    count: Count  # forecast requests answered in the window, failed ones included
    errors: Count  # of which failed
    latency_hist: Annotated[list[Count], Field(min_length=HIST_BUCKETS, max_length=HIST_BUCKETS)]

    @model_validator(mode="after")
    def _consistent(self) -> InferencePayload:
        if self.window_end < self.window_start:
            raise ValueError("window_end is before window_start")
        if self.errors > self.count:
            raise ValueError("errors exceeds count")
        if sum(self.latency_hist) != self.count:
            raise ValueError("latency_hist does not add up to count")
        return self


class ForecastPoint(_Strict):
    ts: UtcTime  # origin + k hours
    q10: NonNegative
    q50: NonNegative
    q90: NonNegative


class ForecastPayload(_Strict):
    origin: HourTime  # the first hour forecast; point k (0-based) is origin + k hours
    horizon: Annotated[int, Field(ge=1, le=MAX_HORIZON)]
    points: Annotated[list[ForecastPoint], Field(min_length=1, max_length=MAX_HORIZON)]

    @model_validator(mode="after")
    def _hourly_from_origin(self) -> ForecastPayload:
        if len(self.points) != self.horizon:
            raise ValueError(f"points holds {len(self.points)} hours, horizon says {self.horizon}")
        # One pass here rather than a validator per point: this runs for every forecast.
        for k, point in enumerate(self.points):
            if point.ts != self.origin + timedelta(hours=k):
                raise ValueError(f"points[{k}].ts must be origin + {k} hours")
            if not point.q10 <= point.q50 <= point.q90:
                raise ValueError(f"points[{k}]: quantiles must satisfy q10 <= q50 <= q90")
        return self


class ActualPayload(_Strict):
    ts: HourTime  # the completed hour
    sales_units: NonNegative
    footfall: NonNegative | None = None


class ModelPayload(_Strict):
    action: Literal["download_started", "verified", "activated", "rejected", "rolled_back"]
    name: Name
    version: Annotated[int, Field(ge=1, le=2**31 - 1)]
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    reason: Annotated[str, Field(max_length=2000)] | None = None
    duration_ms: NonNegative | None = None


class ErrorPayload(_Strict):
    component: Name
    kind: Name
    message: Annotated[str, Field(max_length=2000)]
    count: Annotated[int, Field(ge=1, le=2**62)] = 1


class _Envelope(_Strict):
    event_id: UUID
    device_id: Name
    store_id: Name
    ts: UtcTime
    model: ModelRef | None = None


class HeartbeatEvent(_Envelope):
    type: Literal["heartbeat"]
    payload: HeartbeatPayload


class InferenceEvent(_Envelope):
    type: Literal["inference"]
    payload: InferencePayload


class ForecastEvent(_Envelope):
    type: Literal["forecast"]
    payload: ForecastPayload


class ActualEvent(_Envelope):
    type: Literal["actual"]
    payload: ActualPayload


class ModelEvent(_Envelope):
    type: Literal["model"]
    payload: ModelPayload


class ErrorEvent(_Envelope):
    type: Literal["error"]
    payload: ErrorPayload


TelemetryEvent = Annotated[
    HeartbeatEvent | InferenceEvent | ForecastEvent | ActualEvent | ModelEvent | ErrorEvent,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[TelemetryEvent] = TypeAdapter(TelemetryEvent)


class _Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[TelemetryEvent]


def validate_batch(body: bytes) -> list[TelemetryEvent] | None:
    """The events of a batch body (JSON ``{"events": [...]}``) when every one is valid,
    else None (``validate_event`` then tells, event by event, what is wrong).

    Parsing and validating the whole body in one call into pydantic-core costs well under
    parsing it first and validating each event apart: this is the common case.
    """
    try:
        return _Batch.model_validate_json(body).events
    except (OverflowError, ValueError):  # ValidationError included
        return None


class EventRejection(BaseModel):
    """Why one event of a batch was refused."""

    index: int
    event_id: str | None = None
    field: str
    reason: str


def _field_of(loc: tuple[Any, ...]) -> str:
    # The discriminated union puts the type tag in the path ("forecast.payload.points");
    # drop it so the field reads as it does in the event.
    parts = [str(p) for p in loc]
    if parts and parts[0] in EVENT_TYPES:
        parts = parts[1:]
    return ".".join(parts) or "(event)"


def validate_event(
    index: int, raw: Any, *, not_after: datetime | None = None
) -> TelemetryEvent | EventRejection:
    """``raw`` as a typed event, or the rejection naming the first field at fault.

    ``not_after`` refuses events stamped later than it (clocks too far in the future).
    """
    event_id = str(raw.get("event_id")) if isinstance(raw, dict) and "event_id" in raw else None
    try:
        event = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "type" if first["type"].startswith("union_tag") else _field_of(tuple(first["loc"]))
        return EventRejection(index=index, event_id=event_id, field=field, reason=first["msg"])
    except (OverflowError, ValueError) as exc:  # a time no arithmetic can handle
        reason = f"out of range: {exc}"
        return EventRejection(index=index, event_id=event_id, field="(event)", reason=reason)
    if not_after is not None and event.ts > not_after:
        return EventRejection(
            index=index,
            event_id=event_id,
            field="ts",
            reason=f"timestamp is too far in the future (after {not_after.isoformat()})",
        )
    return event
