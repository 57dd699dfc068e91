"""The telemetry events the agent creates, checked against the cloud's schema as they are made.

``EventFactory`` builds each event type of ``storecast.common.telemetry`` as a plain,
JSON-ready dict (times in ISO 8601 with ``Z``, a fresh uuid4 ``event_id``) and validates
it, so the outbox never holds an event the cloud would refuse for its shape. Event times:
a heartbeat, model or error event is stamped now; a forecast at its origin hour; an actual
when its hour completes (hour + 1 h); an inference window at its end.

``InferenceStats`` accumulates forecast-request latencies per model version between two
drains, on the schema's fixed histogram bounds.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from storecast.common.clock import Clock
from storecast.common.errors import DataError
from storecast.common.telemetry import LATENCY_BOUNDS_MS, EventRejection, validate_event

__all__ = ["EventFactory", "InferenceStats", "InvalidEvent", "ModelKey", "iso"]

ModelKey = tuple[str, int]  # (model name, version)
Event = dict[str, Any]


class InvalidEvent(DataError):
    """An event the agent was about to create breaks the telemetry schema."""


def iso(moment: datetime) -> str:
    """``moment`` in UTC as ISO 8601 with a ``Z`` suffix (the wire format of event times)."""
    if moment.tzinfo is None:
        raise InvalidEvent(f"naive datetime {moment!r}: event times must carry a zone")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _model_ref(model: ModelKey | None) -> dict[str, Any] | None:
    return None if model is None else {"name": model[0], "version": int(model[1])}


class EventFactory:
    """Builds this device's validated telemetry events."""

    def __init__(self, device_id: str, store_id: str, clock: Clock) -> None:
        self.device_id = device_id
        self.store_id = store_id
        self.clock = clock

    def _event(
        self, kind: str, ts: datetime, model: ModelKey | None, payload: dict[str, Any]
    ) -> Event:
        event: Event = {
            "event_id": str(uuid.uuid4()),
            "device_id": self.device_id,
            "store_id": self.store_id,
            "type": kind,
            "ts": iso(ts),
            "model": _model_ref(model),
            "payload": payload,
        }
        checked = validate_event(0, event)
        if isinstance(checked, EventRejection):
            raise InvalidEvent(f"{kind} event: {checked.field}: {checked.reason}")
        return event

    def heartbeat(
        self,
        *,
        cpu_pct: float,
        rss_mb: float,
        disk_free_mb: float,
        uptime_s: float,
        agent_version: str,
        outbox_depth: int,
        dropped_events: int,
        last_poll_ok: bool,
        last_upload_ok: bool,
        model: ModelKey | None,
    ) -> Event:
        """The agent's vital signs, stamped now."""
        payload = {
            "cpu_pct": float(cpu_pct),
            "rss_mb": float(rss_mb),
            "disk_free_mb": float(disk_free_mb),
            "uptime_s": float(uptime_s),
            "agent_version": agent_version,
            "outbox_depth": int(outbox_depth),
            "dropped_events": int(dropped_events),
            "last_poll_ok": bool(last_poll_ok),
            "last_upload_ok": bool(last_upload_ok),
        }
        return self._event("heartbeat", self.clock.now(), model, payload)

    def forecast(
        self,
        *,
        origin: datetime,
        points: list[tuple[datetime, float, float, float]],
        model: ModelKey | None,
    ) -> Event:
        """A forecast issued for the hours from ``origin``: points are (ts, q10, q50, q90)."""
        payload = {
            "origin": iso(origin),
            "horizon": len(points),
            "points": [
                {"ts": iso(ts), "q10": float(q10), "q50": float(q50), "q90": float(q90)}
                for ts, q10, q50, q90 in points
            ],
        }
        return self._event("forecast", origin, model, payload)

    def actual(
        self,
        *,
        hour: datetime,
        sales_units: float,
        footfall: float | None,
        model: ModelKey | None,
    ) -> Event:
        """What a completed hour sold, stamped at the hour's end."""
        payload = {
            "ts": iso(hour),
            "sales_units": float(sales_units),
            "footfall": None if footfall is None else float(footfall),
        }
        return self._event("actual", hour + timedelta(hours=1), model, payload)

    def model_event(
        self,
        *,
        action: str,
        name: str,
        version: int,
        digest: str | None = None,
        reason: str | None = None,
        duration_ms: float | None = None,
        model: ModelKey | None,
    ) -> Event:
        """A step of a model's lifecycle on this device (download, verify, activate, ...)."""
        payload = {
            "action": action,
            "name": name,
            "version": int(version),
            "digest": digest,
            "reason": reason,
            "duration_ms": None if duration_ms is None else float(duration_ms),
        }
        return self._event("model", self.clock.now(), model, payload)

    def error(
        self, *, component: str, kind: str, message: str, count: int = 1, model: ModelKey | None
    ) -> Event:
        """``count`` errors of one kind in one component (message cut to the schema's 2000)."""
        payload = {"component": component, "kind": kind, "message": message[:2000], "count": count}
        return self._event("error", self.clock.now(), model, payload)

    def inference(
        self,
        *,
        window_start: datetime,
        window_end: datetime,
        count: int,
        errors: int,
        latency_hist: list[int],
        model: ModelKey | None,
    ) -> Event:
        """Forecast requests answered in a window, stamped at the window's end."""
        payload = {
            "window_start": iso(window_start),
            "window_end": iso(window_end),
            "count": int(count),
            "errors": int(errors),
            "latency_hist": [int(n) for n in latency_hist],
        }
        return self._event("inference", window_end, model, payload)


@dataclass
class _Window:
    count: int = 0
    errors: int = 0
    hist: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))


class InferenceStats:
    """Thread-safe forecast-request counts and latency histograms per model, between drains."""

    def __init__(self, window_start: datetime) -> None:
        self._lock = threading.Lock()
        self._start = window_start
        self._windows: dict[ModelKey | None, _Window] = {}

    def record(self, latency_ms: float, ok: bool, model: ModelKey | None) -> None:
        """Count one answered (or failed) request and its latency."""
        # Bounds are inclusive upper bounds; past the last one is the overflow bucket.
        bucket = bisect.bisect_left(LATENCY_BOUNDS_MS, max(0.0, latency_ms))
        with self._lock:
            window = self._windows.setdefault(model, _Window())
            window.count += 1
            window.errors += 0 if ok else 1
            window.hist[bucket] += 1

    def drain(self, window_end: datetime) -> list[dict[str, Any]]:
        """``EventFactory.inference`` keyword arguments, one per model seen since the last
        drain (none without requests); the next window starts at ``window_end``."""
        with self._lock:
            windows, self._windows = self._windows, {}
            start, self._start = self._start, max(self._start, window_end)
        end = max(start, window_end)
        return [
            {
                "window_start": start,
                "window_end": end,
                "count": w.count,
                "errors": w.errors,
                "latency_hist": w.hist,
                "model": model,
            }
            for model, w in windows.items()
        ]
