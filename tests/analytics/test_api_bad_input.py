"""The analytics read API refuses bad query parameters (422 naming them) and wrong roles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storecast.analytics.app import create_app
from storecast.common.auth import TokenRow, mint_token
from storecast.common.clock import FixedClock
from storecast.common.cloud import Database
from storecast.common.db import upgrade
from tests.analytics.test_queries import NOW
from tests.registry.conftest import LiveRegistry

ENDPOINTS = (
    "/v1/analytics/stores",
    "/v1/analytics/stores/S001/summary",
    "/v1/analytics/models",
    "/v1/analytics/fleet",
    "/v1/analytics/fleet/series",
    "/v1/analytics/model-events",
    "/v1/analytics/usage/forecasts",
    "/v1/analytics/usage/api",
    "/v1/analytics/rootcause?metric=wape",
    "/v1/analytics/incidents",
)


class Client:
    """The analytics service on an empty database, with a token per role."""

    def __init__(self, home: Path) -> None:
        url = f"sqlite:///{home / 'cloud.db'}"
        upgrade(url)
        self.app = create_app(home, url, FixedClock(NOW))
        self.database = self.app.extensions["storecast.database"]
        assert isinstance(self.database, Database)
        self.tokens: dict[str, str] = {}
        with self.database.transaction(write=True) as session:
            for role in ("admin", "publisher", "viewer", "device"):
                token = mint_token()
                session.add(
                    TokenRow(
                        id=token.token_id,
                        name=role,
                        role=role,
                        device_id="dev-1" if role == "device" else None,
                        secret_sha256=token.secret_sha256,
                        created_at=NOW,
                    )
                )
                self.tokens[role] = token.secret

    def get(self, path: str, role: str | None = "viewer", **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return self.app.test_client().get(path, query_string=params or None, headers=headers)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    made = Client(tmp_path_factory.mktemp("empty"))
    yield made
    made.database.engine.dispose()


BAD = [
    ("/v1/analytics/stores", {"start": "2026-03-10T00:00Z", "end": "2026-03-09T00:00Z"}, "start"),
    ("/v1/analytics/stores", {"start": "2025-11-01T00:00Z", "end": "2026-03-01T00:00Z"}, "start"),
    ("/v1/analytics/stores", {"start": "2026-03-11T00:00:00Z"}, "start"),  # after now (the end)
    ("/v1/analytics/stores", {"start": "yesterday"}, "start"),
    ("/v1/analytics/stores", {"limit": "5"}, "limit"),
    ("/v1/analytics/stores/S001/summary", {"granularity": "week"}, "granularity"),
    ("/v1/analytics/stores/S001/summary", {"horizon": "0"}, "horizon"),
    ("/v1/analytics/stores/S001/summary", {"horizon": "169"}, "horizon"),
    ("/v1/analytics/models", {"model_name": "no such/model"}, "model_name"),
    ("/v1/analytics/fleet", {"window_hours": "0"}, "window_hours"),
    ("/v1/analytics/fleet", {"window_hours": str(93 * 24)}, "window_hours"),
    ("/v1/analytics/fleet", {"at": "2026-13-01T00:00:00Z"}, "at"),
    ("/v1/analytics/fleet", {"at": "0001-01-01T00:00:00Z"}, "at"),
    ("/v1/analytics/fleet/series", {"end": "0001-01-01T01:00:00Z"}, "end"),
    ("/v1/analytics/model-events", {"action": "exploded"}, "action"),
    ("/v1/analytics/model-events", {"limit": "0"}, "limit"),
    ("/v1/analytics/model-events", {"store_id": "S\x00"}, "store_id"),
    ("/v1/analytics/usage/forecasts", {"format": "xml"}, "format"),
    ("/v1/analytics/usage/api", {"actor": "a\x00b"}, "actor"),
    ("/v1/analytics/rootcause", {}, "metric"),
    ("/v1/analytics/rootcause", {"metric": "cpu"}, "metric"),
    ("/v1/analytics/rootcause", {"metric": "wape", "end": "2026-03-01T00:00:00Z",
                                 "baseline_start": "2026-03-02T00:00:00Z"}, "baseline_start"),
    ("/v1/analytics/rootcause", {"metric": "wape", "baseline_start": "2025-01-01T00:00:00Z"},
     "baseline_start"),
    ("/v1/analytics/incidents", {"window_hours": "169"}, "window_hours"),
    ("/v1/analytics/incidents", {"at": "0001-01-02T00:00:00Z"}, "at"),
    ("/v1/analytics/fleet/series", {"end": "9999-12-31T23:30:00Z"}, "end"),
    ("/v1/analytics/stores/S001/summary", {"end": "9999-12-31T23:30:00Z"}, "end"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "params", "field"), BAD)
def test_a_bad_query_parameter_is_a_422_naming_it(
    client: Client, path: str, params: dict[str, str], field: str
) -> None:
    got = client.get(path, **params)
    assert got.status_code == 422, got.json
    error = got.json["error"]
    assert error["code"] == "validation_error"
    assert error["fields"][0]["field"] == field
    assert error["message"].startswith(f"{field}: ")


def test_naive_times_are_utc_and_zones_are_converted(client: Client) -> None:
    naive = client.get("/v1/analytics/fleet/series", start="2026-03-09T10:00:00")
    zoned = client.get("/v1/analytics/fleet/series", start="2026-03-09T12:00:00+02:00")
    assert naive.status_code == zoned.status_code == 200
    assert naive.json["window"] == zoned.json["window"]
    assert naive.json["window"]["start"] == "2026-03-09T10:00:00Z"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_only_viewers_and_admins_may_read_analytics(client: Client, path: str) -> None:
    assert client.get(path, role=None).status_code == 401
    assert client.get(path, role="device").status_code == 403
    assert client.get(path, role="publisher").status_code == 403
    expected = 404 if "/summary" in path else 200  # an empty database knows no store
    assert client.get(path, role="viewer").status_code == expected
    assert client.get(path, role="admin").status_code == expected


def test_openapi_documents_every_analytics_endpoint_and_its_parameters(client: Client) -> None:
    document = client.get("/openapi.json", role=None).json
    paths = document["paths"]
    for path in ENDPOINTS:
        bare = path.split("?")[0].replace("S001", "{store_id}")
        operation = paths[bare]["get"]
        assert operation["tags"] == ["analytics"]
        assert operation["security"] == [{"bearer": []}]
        assert "200" in operation["responses"]
    rootcause = {p["name"]: p for p in paths["/v1/analytics/rootcause"]["get"]["parameters"]}
    assert rootcause["metric"]["required"] is True
    assert set(rootcause) == {"start", "end", "metric", "baseline_start", "baseline_end"}
    exports = paths["/v1/analytics/usage/api"]["get"]["responses"]["200"]["content"]
    assert set(exports) == {"application/json", "text/csv", "application/x-ndjson"}


def test_the_cloud_serves_the_analytics_api(cloud: LiveRegistry) -> None:
    viewer = cloud.token("viewer")
    with cloud.client(viewer) as http:
        kpis = http.get("/v1/analytics/fleet")
        assert kpis.status_code == 200
        assert kpis.json()["devices"]["total"] == 0
        assert http.get("/v1/analytics/stores").json()["stores"] == []
    device = cloud.enrol("dev-1", "S001", region="south")
    with cloud.client(viewer) as http:
        stores = http.get("/v1/analytics/stores").json()["stores"]
        assert [(s["store_id"], s["region"], s["status"]) for s in stores] == [
            ("S001", "south", "offline")
        ]
    with cloud.client(device) as http:
        assert http.get("/v1/analytics/fleet").status_code == 403
