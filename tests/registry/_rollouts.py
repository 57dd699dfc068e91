"""Canary test helpers: two published versions, enrolled stores, and their telemetry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.analytics.conftest import EventMaker
from tests.registry.conftest import LiveRegistry, MakeBundle

MODEL = "demand-lstm"
FAST = [0] * 6 + [20]  # 20 forecast requests in the (5, 10] ms bucket


def publish_versions(http: httpx.Client, make_bundle: MakeBundle, *versions: int) -> None:
    for version in versions:
        http.post(
            "/v1/models",
            content=make_bundle(version),
            headers={"Content-Type": "application/x-tar"},
        ).raise_for_status()


def canary_body(
    steps: list[float],
    *,
    min_duration_s: float = 60,
    promote_alias: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "control": {"version": 1},
        "candidate": {"version": 2},
        "strategy": {
            "kind": "canary",
            "steps": [
                {
                    "percent": p,
                    "min_duration_s": min_duration_s,
                    "min_forecast_hours": 10,
                    "min_inferences": 50,
                }
                for p in steps
            ],
            "gates": {"wape_margin": 0.02},
        },
        **extra,
    }
    if promote_alias:
        body["promote_alias"] = promote_alias
    return body


@dataclass
class Store:
    """An enrolled device (one per store) and its token."""

    device_id: str
    store_id: str
    token: str

    def assignment(self, live: LiveRegistry) -> dict[str, Any]:
        with live.client(self.token) as http:
            response = http.get(f"/v1/devices/{self.device_id}/assignment")
            response.raise_for_status()
            return dict(response.json())


def enrol_stores(live: LiveRegistry, count: int) -> list[Store]:
    return [
        Store(f"dev-{i:03d}", f"S{i:03d}", live.enrol(f"dev-{i:03d}", f"S{i:03d}"))
        for i in range(count)
    ]


def report(
    live: LiveRegistry, stores: list[Store], start: datetime, hours: int, bias: dict[int, float]
) -> dict[str, str]:
    """Each store polls, runs what it is told and reports ``hours`` of telemetry from
    ``start``: forecasts off by ``bias[version]`` (0.1: 10% too high), actuals, inference
    and the activation. Returns each store's arm."""
    arms = {}
    for n, store in enumerate(stores):
        got = store.assignment(live)
        version = int(got["version"])
        arms[store.store_id] = str(got["arm"])
        maker = EventMaker(store.device_id, store.store_id, {"name": MODEL, "version": version})
        events = [maker.model_event(start, "activated", version)]
        for h in range(hours):
            hour = start + timedelta(hours=h)
            sales = 20.0 + n % 5 + 3 * (h % 4)
            wobble = 0.02 * ((n + h) % 3 - 1)  # stores differ a little: intervals have width
            q50 = sales * (1.0 + bias[version] + wobble)
            events += [
                maker.forecast(hour, [q50]),
                maker.actual(hour, sales),
                maker.inference(hour, FAST),
            ]
        with live.client(store.token) as http:
            http.post("/v1/telemetry", json={"events": events}).raise_for_status()
    return arms
