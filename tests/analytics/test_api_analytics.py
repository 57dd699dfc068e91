"""The analytics read API over HTTP: the query answers, default windows, exports, usage."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from storecast.analytics import diagnostics, fleet, queries_models, queries_stores, queries_usage
from storecast.analytics.app import create_app
from storecast.analytics.schemas import Window
from storecast.common.auth import TokenRow, mint_token
from storecast.common.clock import FixedClock
from storecast.common.cloud import Database
from storecast.common.db import transaction
from tests.analytics.test_queries import END, FLEET, NOW, Fed, feed
from tests.conftest import postgres_database

ROLES = ("admin", "publisher", "viewer", "device")


@dataclass
class Api:
    """An analytics app over a fed database, with a token per role."""

    fed: Fed
    app: Flask
    tokens: dict[str, str]

    def get(self, path: str, role: str | None = "viewer", **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        client: FlaskClient = self.app.test_client()
        return client.get(path, query_string=params, headers=headers)

    def answer(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """What a query function says, as the JSON the API should send."""
        with transaction(self.fed.sessions) as session:
            return fn(session, *args, **kwargs).model_dump(mode="json")


def add_token(fed: Fed, role: str, name: str, device_id: str | None = None) -> str:
    token = mint_token()
    with transaction(fed.sessions, write=True) as session:
        session.add(
            TokenRow(
                id=token.token_id,
                name=name,
                role=role,
                device_id=device_id,
                secret_sha256=token.secret_sha256,
                created_at=NOW,
            )
        )
    return token.secret


def serve(fed: Fed, home: Path) -> Iterator[Api]:
    """The analytics service (``storecast analytics serve``) on ``fed``'s database."""
    app = create_app(home, fed.url, FixedClock(NOW))
    device = fed.sim.devices[0].device_id
    tokens = {
        role: add_token(fed, role, f"{role}-1", device if role == "device" else None)
        for role in ROLES
    }
    yield Api(fed, app, tokens)
    database = app.extensions["storecast.database"]
    assert isinstance(database, Database)
    database.engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
) -> Iterator[Api]:
    """The API over the simulated fleet (SQLite and PostgreSQL)."""
    home = tmp_path_factory.mktemp("home")
    if request.param == "sqlite":
        yield from serve(feed(f"sqlite:///{home / 'cloud.db'}", FLEET), home)
        return
    if not postgres_available:
        pytest.skip("PostgreSQL is not reachable (set STORECAST_REQUIRE_POSTGRES=1 to fail)")
    with postgres_database() as url:
        fed = feed(url, FLEET)
        yield from serve(fed, home)
        fed.sessions.kw["bind"].dispose()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _window(start: datetime, end: datetime) -> dict[str, str]:
    return {"start": _iso(start), "end": _iso(end)}


def _last(span: timedelta, end: datetime = NOW) -> Window:
    return Window(start=end - span, end=end)


DAY, WEEK = timedelta(days=1), timedelta(days=7)


def test_store_endpoints_answer_with_the_queries(api: Api) -> None:
    store = api.fed.sim.devices[2].store_id
    got = api.get("/v1/analytics/stores")
    assert got.status_code == 200
    assert got.json == api.answer(queries_stores.list_stores, _last(WEEK), NOW)
    window = Window(start=END - timedelta(hours=40), end=END)
    got = api.get(
        f"/v1/analytics/stores/{store}/summary",
        granularity="day",
        horizon=6,
        **_window(window.start, window.end),
    )
    assert got.json == api.answer(queries_stores.store_summary, store, window, "day", 6)
    assert got.json["totals"]["actual"] > 0
    default = api.get(f"/v1/analytics/stores/{store}/summary")
    assert default.json == api.answer(queries_stores.store_summary, store, _last(WEEK), "hour", 1)
    assert len(default.json["series"]) == 7 * 24  # every hour starting in the window
    missing = api.get("/v1/analytics/stores/S404/summary")
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "not_found"


def test_model_and_fleet_endpoints_answer_with_the_queries(api: Api) -> None:
    assert api.get("/v1/analytics/models").json == api.answer(
        queries_models.model_performance, _last(DAY)
    )
    window = Window(start=END - timedelta(hours=36), end=END)
    got = api.get(
        "/v1/analytics/models", model_name="demand-lstm", **_window(window.start, window.end)
    )
    assert got.json == api.answer(queries_models.model_performance, window, "demand-lstm")
    assert [v["model_version"] for v in got.json["versions"]] == [1, 2, 3]
    assert api.get("/v1/analytics/fleet").json == api.answer(fleet.fleet_kpis, NOW, _last(DAY))
    at = END - timedelta(hours=5)
    got = api.get("/v1/analytics/fleet", at=_iso(at), window_hours=12)
    assert got.json == api.answer(fleet.fleet_kpis, at, _last(timedelta(hours=12), at))
    assert got.json["devices"]["total"] == 9
    series = api.get("/v1/analytics/fleet/series")
    assert series.json == api.answer(fleet.fleet_series, _last(timedelta(hours=48)))


def test_event_and_diagnostic_endpoints_answer_with_the_queries(api: Api) -> None:
    store = api.fed.sim.devices[4].store_id
    got = api.get("/v1/analytics/model-events", action="activated", store_id=store, limit=5)
    assert got.json == api.answer(
        queries_usage.model_events, _last(WEEK), actions=("activated",), store_id=store, limit=5
    )
    assert got.json["events"]
    window = Window(start=END - timedelta(hours=12), end=END)
    got = api.get("/v1/analytics/rootcause", metric="latency_p95", **_window(window.start, END))
    assert got.json == api.answer(
        diagnostics.root_cause, "latency_p95", window, diagnostics.baseline_before(window)
    )
    assert got.json["findings"][0]["value"] == "demand-lstm:v3"
    baseline = Window(start=END - timedelta(days=2), end=END - timedelta(days=1))
    got = api.get(
        "/v1/analytics/rootcause",
        metric="wape",
        baseline_start=_iso(baseline.start),
        baseline_end=_iso(baseline.end),
    )
    assert got.json == api.answer(diagnostics.root_cause, "wape", _last(DAY), baseline)
    got = api.get("/v1/analytics/incidents", at=_iso(END), window_hours=12)
    assert got.json == api.answer(diagnostics.incidents, END, 12)
    assert {i["metric"] for i in got.json["incidents"]} >= {"error_rate", "latency_p95"}
    assert api.get("/v1/analytics/incidents").json == api.answer(diagnostics.incidents, NOW, 6)


def _parsed(response: Any, fmt: str) -> list[dict[str, Any]]:
    text = response.get_data(as_text=True)
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    return list(csv.DictReader(io.StringIO(text)))


def _as_text(row: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in row.items()}


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/v1/analytics/usage/forecasts", {}, "forecast-usage"),
        (
            "/v1/analytics/usage/api",
            {"start": "2026-02-20T00:00:00Z", "actor": "alice"},
            "api-usage",
        ),
    ],
)
def test_usage_exports_parse_back_to_the_json_rows(
    api: Api, path: str, params: dict[str, str], name: str
) -> None:
    rows = api.get(path, **params).json["rows"]
    assert rows
    for fmt, media in (("csv", "text/csv"), ("jsonl", "application/x-ndjson")):
        got = api.get(path, format=fmt, **params)
        assert got.status_code == 200
        assert got.mimetype == media
        assert got.headers["Content-Disposition"] == f"attachment; filename={name}.{fmt}"
        parsed = _parsed(got, fmt)
        assert parsed == (rows if fmt == "jsonl" else [_as_text(r) for r in rows])


def test_forecast_usage_defaults_to_the_last_seven_whole_days(api: Api) -> None:
    got = api.get("/v1/analytics/usage/forecasts", store_id=api.fed.sim.devices[0].store_id)
    midnight = NOW.replace(hour=0, minute=0)
    window = Window(start=midnight - timedelta(days=6), end=NOW)
    assert got.json == api.answer(
        queries_usage.forecast_usage, window, api.fed.sim.devices[0].store_id
    )
    assert {r["day"] for r in got.json["rows"]} == {"2026-03-07", "2026-03-08", "2026-03-09"}


def test_api_usage_counts_the_callers_requests(api: Api) -> None:
    token = add_token(api.fed, "viewer", "auditor-x")
    api.tokens["auditor"] = token
    for _ in range(3):
        assert api.get("/v1/analytics/fleet", role="auditor").status_code == 200
    assert api.get("/v1/analytics/fleet", role="auditor", window_hours=0).status_code == 422
    rows = api.get("/v1/analytics/usage/api", actor="auditor-x").json["rows"]
    assert [(r["endpoint"], r["status"], r["count"], r["day"]) for r in rows] == [
        ("/v1/analytics/fleet", 200, 3, NOW.date().isoformat()),
        ("/v1/analytics/fleet", 422, 1, NOW.date().isoformat()),
    ]
    assert {r["role"] for r in rows} == {"viewer"}
