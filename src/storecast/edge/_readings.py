"""Parsing and validating a ``POST /v1/readings`` body (behind ``storecast.edge.sensors``).

A batch is refused as a whole if any reading is bad, and the refusal lists every bad
reading (up to ``MAX_ERRORS``): its index, the field and the reason.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from storecast.common.errors import StorecastError

READING_KINDS: Final = ("footfall", "sales", "temperature", "precipitation", "promo")
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
TEMPERATURE_RANGE: Final = (-80.0, 70.0)  # °C
MAX_ERRORS: Final = 100  # bad readings listed in a refusal


def _text_or_datetime(value: object) -> object:
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 timestamp string with a timezone")
    return value


def _in_range(value: datetime, info: ValidationInfo) -> datetime:
    value = value.astimezone(UTC)
    if value < EARLIEST:
        raise ValueError("timestamp is before 2000-01-01")
    context = info.context or {}
    if "latest" in context and value > context["latest"]:
        raise ValueError(
            f"timestamp is in the future (later than {context['latest']:%Y-%m-%dT%H:%M:%SZ})"
        )
    return value


class Reading(BaseModel):
    """One sensor reading at an event time (UTC)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    ts: Annotated[AwareDatetime, BeforeValidator(_text_or_datetime), AfterValidator(_in_range)]
    kind: Literal["footfall", "sales", "temperature", "precipitation", "promo"]
    value: Annotated[float, Strict()]

    @field_validator("value")
    @classmethod
    def _value_fits_kind(cls, value: float, info: ValidationInfo) -> float:
        kind = info.data.get("kind")
        if kind in ("footfall", "sales", "precipitation") and value < 0:
            raise ValueError(f"{kind} cannot be negative")
        if kind == "promo" and value not in (0.0, 1.0):
            raise ValueError("promo must be 0 or 1")
        low, high = TEMPERATURE_RANGE
        if kind == "temperature" and not low <= value <= high:
            raise ValueError(f"temperature must be within [{low:g}, {high:g}] °C")
        return value


_READINGS = TypeAdapter(list[Reading])


class ReadingsRefused(StorecastError):
    """A batch of readings was refused as a whole; nothing of it was stored.

    ``status`` is the HTTP status to answer with: 400 when the body is not
    ``{"readings": [...]}`` or is empty, 413 when it holds too many readings, 422 when
    readings are invalid (``errors`` lists them: ``{"index", "field", "reason"}``).
    """

    def __init__(
        self, status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []


def _reason(error: Any) -> str:
    kind = error["type"]
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "literal_error":
        return f"unknown kind {error['input']!r}; expected one of {', '.join(READING_KINDS)}"
    if kind == "finite_number":
        return "must be a finite number (not NaN or infinity)"
    if kind == "timezone_aware":
        return "timestamp needs a timezone (e.g. 2026-03-01T14:05:00Z)"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required"
    return str(error["msg"])


def parse_readings(
    body: Any,
    now: datetime,
    *,
    max_future: timedelta = timedelta(hours=1),
    max_batch: int = 10_000,
) -> list[Reading]:
    """The readings of a ``POST /v1/readings`` body ``{"readings": [...]}`` (decoded JSON).

    Raises ``ReadingsRefused`` naming every bad reading (the first ``MAX_ERRORS``).
    """
    if not isinstance(body, dict) or set(body) != {"readings"}:
        raise ReadingsRefused(
            400, "malformed", 'the body must be a JSON object {"readings": [...]}'
        )
    items = body["readings"]
    if not isinstance(items, list):
        raise ReadingsRefused(400, "malformed", '"readings" must be a list of readings')
    if not items:
        raise ReadingsRefused(400, "empty", "the batch holds no readings")
    if len(items) > max_batch:
        raise ReadingsRefused(
            413, "too_many", f"{len(items)} readings in one batch; at most {max_batch}"
        )
    try:
        return _READINGS.validate_python(items, context={"latest": now + max_future})
    except ValidationError as exc:
        errors: list[dict[str, Any]] = []
        bad: set[int] = set()
        for error in exc.errors():
            index, *field = error["loc"]
            bad.add(int(index))
            if len(errors) < MAX_ERRORS:
                name = str(field[0]) if field else None
                reason = "must be an object" if error["type"] == "model_type" else _reason(error)
                errors.append({"index": index, "field": name, "reason": reason})
        raise ReadingsRefused(
            422,
            "invalid_readings",
            f"{len(bad)} of {len(items)} readings are invalid; nothing was stored",
            errors,
        ) from None
