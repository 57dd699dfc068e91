"""Analytics fixtures: a live cloud on port 0, enrolled devices, and event builders."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storecast.common.telemetry import HIST_BUCKETS
from storecast.registry.config import RegistryConfig
from storecast.registry.setup import Initialised, init_registry
from tests.registry.conftest import LiveRegistry, registry_config, serve_registry

__all__ = ["EventMaker", "cloud"]

HOUR0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)  # a Monday


@pytest.fixture
def cloud_home(tmp_path: Path, database_url: str) -> tuple[RegistryConfig, Initialised]:
    """A freshly initialised cloud home (SQLite and PostgreSQL)."""
    config = registry_config(tmp_path / "cloud", database_url)
    return config, init_registry(config)


@pytest.fixture
def cloud(cloud_home: tuple[RegistryConfig, Initialised]) -> Iterator[LiveRegistry]:
    """A live cloud (registry + analytics) on an ephemeral port, on each database backend."""
    with serve_registry(*cloud_home) as running:
        yield running


class EventMaker:
    """Valid telemetry events of one device, with fresh ids (override anything by keyword)."""

    def __init__(self, device_id: str, store_id: str, model: dict[str, Any] | None = None) -> None:
        self.device_id = device_id
        self.store_id = store_id
        self.model = model if model is not None else {"name": "demand-lstm", "version": 1}

    def event(
        self, kind: str, payload: dict[str, Any], ts: datetime, **extra: Any
    ) -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid4()),
            "device_id": self.device_id,
            "store_id": self.store_id,
            "type": kind,
            "ts": ts.isoformat(),
            "model": self.model,
            "payload": payload,
            **extra,
        }

    def heartbeat(self, ts: datetime, agent: str = "1.4.0", **payload: Any) -> dict[str, Any]:
        body = {
            "cpu_pct": 3.5,
            "rss_mb": 80.0,
            "disk_free_mb": 900.0,
            "uptime_s": 60.0,
            "agent_version": agent,
            "outbox_depth": 2,
            "dropped_events": 0,
            "last_poll_ok": True,
            "last_upload_ok": True,
            **payload,
        }
        return self.event("heartbeat", body, ts)

    def inference(self, start: datetime, hist: list[int], errors: int = 0) -> dict[str, Any]:
        hist = hist + [0] * (HIST_BUCKETS - len(hist))
        body = {
            "window_start": start.isoformat(),
            "window_end": (start + timedelta(minutes=1)).isoformat(),
            "count": sum(hist),
            "errors": errors,
            "latency_hist": hist,
        }
        return self.event("inference", body, start + timedelta(minutes=1))

    def forecast(self, origin: datetime, q50: list[float], spread: float = 0.3) -> dict[str, Any]:
        points = [
            {
                "ts": (origin + timedelta(hours=k)).isoformat(),
                "q10": value * (1 - spread),
                "q50": value,
                "q90": value * (1 + spread),
            }
            for k, value in enumerate(q50)
        ]
        body = {"origin": origin.isoformat(), "horizon": len(q50), "points": points}
        return self.event("forecast", body, origin)

    def actual(self, hour: datetime, sales: float, footfall: float | None = 40.0) -> dict[str, Any]:
        body = {"ts": hour.isoformat(), "sales_units": sales, "footfall": footfall}
        return self.event("actual", body, hour + timedelta(hours=1))

    def model_event(
        self, ts: datetime, action: str, version: int, **payload: Any
    ) -> dict[str, Any]:
        body = {"action": action, "name": "demand-lstm", "version": version, **payload}
        return self.event("model", body, ts)

    def error(self, ts: datetime, kind: str = "timeout", count: int = 1) -> dict[str, Any]:
        body = {"component": "updater", "kind": kind, "message": "poll timed out", "count": count}
        return self.event("error", body, ts)
