"""Query-string helpers of the analytics API: time windows with defaults, and exports.

Windows are ``[start, end)``. ``end`` defaults to the app clock's now and ``start`` to a
span before it; a window ends after it starts and spans at most ``MAX_WINDOW``. Errors
are 422s naming the parameter at fault, like every other bad query parameter.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from flask import Response, stream_with_context
from pydantic import BaseModel

from storecast.analytics.schemas import Format, Window
from storecast.common.web import ApiError

__all__ = ["MAX_WINDOW", "bad_parameter", "export", "window_before", "window_from"]

MAX_WINDOW = timedelta(days=92)  # the longest window any analytics query reads

_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)


def bad_parameter(name: str, message: str) -> ApiError:
    """A 422 naming the query parameter ``name`` (shaped like pydantic's)."""
    return ApiError(
        422,
        "validation_error",
        f"{name}: {message}",
        fields=[{"field": name, "message": message}],
    )


def window_from(
    start: datetime | None,
    end: datetime | None,
    *,
    now: datetime,
    span: timedelta,
    whole_days: bool = False,
    names: tuple[str, str] = ("start", "end"),
) -> Window:
    """The window asked for: ``end`` defaults to ``now``, ``start`` to ``span`` before it.

    ``whole_days`` makes the default start a UTC midnight (the ``span`` of days ending
    with the one holding ``end``).
    """
    try:
        end = now if end is None else end
        if start is None:
            start = end - span
            if whole_days:
                last_day = (end - _TICK).replace(hour=0, minute=0, second=0, microsecond=0)
                start = last_day - (span - _DAY)
    except OverflowError as exc:
        raise bad_parameter(names[1], "the time is out of range") from exc
    if start >= end:
        raise bad_parameter(names[0], f"must be before {names[1]} ({end.isoformat()})")
    if end - start > MAX_WINDOW:
        raise bad_parameter(names[0], f"the window may span at most {MAX_WINDOW.days} days")
    return Window(start=start, end=end)


def window_before(at: datetime | None, hours: int, *, now: datetime, name: str = "at") -> Window:
    """The ``hours`` before ``at`` (default: now)."""
    end = now if at is None else at
    try:
        return Window(start=end - timedelta(hours=hours), end=end)
    except OverflowError as exc:
        raise bad_parameter(name, "the time is out of range") from exc


def export(
    body: BaseModel, rows: Sequence[BaseModel], fields: Sequence[str], name: str, fmt: Format
) -> Response | dict[str, Any]:
    """``body`` as JSON, or its ``rows`` as a CSV or JSON Lines download named ``name``."""
    if fmt == "json":
        return body.model_dump(mode="json")
    records = [row.model_dump(mode="json") for row in rows]
    if fmt == "jsonl":
        lines = (json.dumps(record) + "\n" for record in records)
        return Response(
            stream_with_context(lines),
            mimetype="application/x-ndjson",
            headers={"Content-Disposition": f"attachment; filename={name}.jsonl"},
        )
    return Response(
        stream_with_context(_csv(records, fields)),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={name}.csv"},
    )


def _csv(records: list[dict[str, Any]], fields: Sequence[str]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields))
    writer.writeheader()
    for record in records:
        writer.writerow(record)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
