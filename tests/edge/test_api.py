"""The agent's local API in process: bad input refused clearly, nothing stored lost or doubled."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from storecast.common.clock import FixedClock
from storecast.edge.agent import Agent
from storecast.edge.api import create_app
from storecast.edge.config import init_home

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ROOT = json.dumps({"signed": {"_type": "root"}, "signatures": []}).encode()


@pytest.fixture
def agent(tmp_path: Path, closed_url: str) -> Iterator[Agent]:
    """An agent whose cloud is unreachable (its threads are not started)."""
    init_home(
        tmp_path / "device",
        device_id="edge-S001",
        store_id="S001",
        registry_url=closed_url,
        analytics_url=closed_url,
        token="device-token-x",
        trusted_root=ROOT,
    )
    running = Agent(tmp_path / "device", clock=FixedClock(NOW))
    yield running
    running.stop()


@pytest.fixture
def client(agent: Agent) -> FlaskClient:
    return create_app(agent).test_client()


def hour_of_readings(hour: datetime, sales: int = 12) -> list[dict[str, Any]]:
    """One hour of 5-minute readings: sales, footfall, temperature, precipitation, promo."""
    out = []
    for k in range(12):
        ts = (hour + timedelta(minutes=5 * k)).isoformat().replace("+00:00", "Z")
        out += [
            {"ts": ts, "kind": "sales", "value": sales},
            {"ts": ts, "kind": "footfall", "value": 3 * sales},
            {"ts": ts, "kind": "temperature", "value": 11.5},
            {"ts": ts, "kind": "precipitation", "value": 0.0},
            {"ts": ts, "kind": "promo", "value": 0},
        ]
    return out


def queued(agent: Agent, kind: str) -> list[dict[str, Any]]:
    events = [json.loads(item.body) for item in agent.outbox.peek(10_000)]
    return [e for e in events if e["type"] == kind]


def test_readings_are_stored_and_a_resent_batch_counts_as_duplicates(
    client: FlaskClient, agent: Agent
) -> None:
    batch = hour_of_readings(NOW - timedelta(hours=3))
    first = client.post("/v1/readings", json={"readings": batch})
    assert first.status_code == 200
    assert first.json == {"accepted": len(batch), "duplicates": 0, "expired": 0}
    again = client.post("/v1/readings", json={"readings": batch})
    assert again.json == {"accepted": 0, "duplicates": len(batch), "expired": 0}


@pytest.mark.parametrize(
    ("reading", "field", "words"),
    [
        ({"ts": "2026-11-20T09:00:00Z", "kind": "humidity", "value": 1}, "kind", "footfall"),
        ({"ts": "2026-11-20T09:00:00Z", "kind": "sales", "value": -1}, "value", "negative"),
        ({"ts": "2026-11-20T09:00:00Z", "kind": "footfall", "value": -3}, "value", "negative"),
        ({"ts": "2026-11-20T09:00:00Z", "kind": "promo", "value": 2}, "value", "0 or 1"),
        ({"ts": "2026-11-20T09:00:00Z", "kind": "sales", "value": "many"}, "value", ""),
        ({"ts": "2026-11-20T09:00:00", "kind": "sales", "value": 1}, "ts", "timezone"),
        ({"ts": "2026-11-22T09:00:00Z", "kind": "sales", "value": 1}, "ts", "future"),
        ({"ts": "2026-11-20T09:00:00Z", "kind": "sales"}, "value", ""),
        ({"ts": "2026-11-20T09:00:00Z", "kind": "sales", "value": 1, "x": 1}, "x", ""),
    ],
)
def test_a_bad_reading_refuses_the_batch_naming_index_and_field(
    client: FlaskClient, agent: Agent, reading: dict[str, Any], field: str, words: str
) -> None:
    good = {"ts": "2026-11-20T09:00:00Z", "kind": "temperature", "value": 9.0}
    response = client.post("/v1/readings", json={"readings": [good, reading]})
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert error["errors"][0]["index"] == 1
    assert error["errors"][0]["field"] == field
    assert words.lower() in json.dumps(error).lower()
    assert agent.sensors.latest_ts() is None  # the good reading was not stored either


def test_nan_and_infinity_are_refused(client: FlaskClient, agent: Agent) -> None:
    for value in ("NaN", "Infinity", "-Infinity"):
        body = '{"readings": [{"ts": "2026-11-20T09:00:00Z", "kind": "sales", "value": %s}]}'
        response = client.post("/v1/readings", data=body % value, content_type="application/json")
        assert response.status_code == 422, value
        assert response.json["error"]["errors"][0]["field"] == "value"
    assert agent.sensors.latest_ts() is None


def test_malformed_bodies_get_4xx_json_errors_and_store_nothing(
    client: FlaskClient, agent: Agent
) -> None:
    cases = [
        ("not json", "application/json", 400),
        ("{}", "text/plain", 415),
        ('{"readings": "lots"}', "application/json", 400),
        ('{"readings": []}', "application/json", 400),
        ("[1, 2]", "application/json", 400),
    ]
    for body, media, status in cases:
        response = client.post("/v1/readings", data=body, content_type=media)
        assert response.status_code == status, (body, response.json)
        assert response.json["error"]["message"]
    too_many = [{"ts": "2026-11-20T09:00:00Z", "kind": "sales", "value": 1}] * 10_001
    assert client.post("/v1/readings", json={"readings": too_many}).status_code == 413
    assert agent.sensors.latest_ts() is None


def test_each_completed_hour_is_reported_once_and_each_origin_gets_one_forecast(
    client: FlaskClient, agent: Agent
) -> None:
    start = NOW - timedelta(hours=6)
    for k in range(4):
        client.post("/v1/readings", json={"readings": hour_of_readings(start + timedelta(hours=k))})
    # Resending, and asking for forecasts many times, reports nothing more.
    client.post("/v1/readings", json={"readings": hour_of_readings(start)})
    for _ in range(5):
        assert client.get("/v1/forecast").status_code == 200
    actuals = queued(agent, "actual")
    assert [a["payload"]["ts"] for a in actuals] == [
        (start + timedelta(hours=k)).isoformat().replace("+00:00", "Z") for k in range(3)
    ]
    assert all(a["payload"]["sales_units"] == 144 for a in actuals)
    forecasts = queued(agent, "forecast")
    origins = [f["payload"]["origin"] for f in forecasts]
    # Origins: each hour readings reached (the first incomplete hour), once each.
    assert origins == [
        (start + timedelta(hours=k)).isoformat().replace("+00:00", "Z") for k in range(4)
    ]


def test_forecast_without_a_model_is_the_labelled_fallback(client: FlaskClient) -> None:
    client.post("/v1/readings", json={"readings": hour_of_readings(NOW - timedelta(hours=2))})
    client.post("/v1/readings", json={"readings": hour_of_readings(NOW - timedelta(hours=1))})
    body = client.get("/v1/forecast", query_string={"horizon": 4}).json
    assert body["method"] == "seasonal_naive"
    assert body["model"] is None
    assert body["origin"] == (NOW - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    # Nothing a day or a week back: the mean of the hours it has (12 steps x 12 units).
    assert [p["q50"] for p in body["points"]] == [144.0] * 4
    assert all(p["q10"] <= p["q50"] <= p["q90"] for p in body["points"])


@pytest.mark.parametrize("horizon", ["0", "25", "-1", "x", "1.5"])
def test_bad_horizon_is_a_422_naming_the_parameter(client: FlaskClient, horizon: str) -> None:
    response = client.get("/v1/forecast", query_string={"horizon": horizon})
    assert response.status_code == 422
    assert "horizon" in response.json["error"]["message"]


def test_rollback_needs_the_admin_token_and_a_previous_model(
    client: FlaskClient, agent: Agent, tmp_path: Path
) -> None:
    assert client.post("/v1/model/rollback").status_code == 401
    wrong = client.post("/v1/model/rollback", headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 401
    # The real token is only shown at init; re-init the home to learn one.
    _, admin = init_home(
        agent.home.root,
        device_id="edge-S001",
        store_id="S001",
        registry_url=agent.config.registry(),
        analytics_url=agent.config.analytics(),
        token="device-token-x",
        trusted_root=ROOT,
        force=True,
    )
    fresh = Agent(agent.home.root, clock=FixedClock(NOW))
    try:
        response = (
            create_app(fresh)
            .test_client()
            .post("/v1/model/rollback", headers={"Authorization": f"Bearer {admin}"})
        )
        assert response.status_code == 409
        assert "previous" in response.json["error"]["message"]
    finally:
        fresh.stop()


def test_service_endpoints_answer(client: FlaskClient) -> None:
    assert client.get("/readyz").json["method"] == "seasonal_naive"
    assert client.get("/v1/model").json == {"active": None, "previous": None, "last_update": None}
    status = client.get("/v1/status").json
    assert status["device_id"] == "edge-S001" and status["outbox_depth"] >= 0
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "storecast_edge_outbox_depth" in metrics
    paths = client.get("/openapi.json").json["paths"]
    assert {"/v1/forecast", "/v1/readings", "/v1/model", "/v1/model/rollback"} <= set(paths)
    assert client.get("/v1/nothing").json["error"]["code"] == "not_found"
