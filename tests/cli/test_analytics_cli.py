"""``storecast analytics serve``: analytics alone, over the registry's home and database."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from storecast._process import server_process
from tests.analytics.conftest import HOUR0, EventMaker
from tests.cli.test_registry_cli import TOKEN, run


def test_analytics_serves_alone_next_to_the_registry(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init = run("registry", "init", "--home", home)
    assert init.returncode == 0, init.stderr
    found = TOKEN.search(init.stdout)
    assert found is not None
    admin = found.group(0)
    serve = ("serve", "--home", str(home), "--port", "0", "--workers", "1")
    with (
        server_process("registry", *serve) as registry,
        server_process("analytics", *serve) as analytics,
    ):
        with httpx.Client(base_url=registry, headers={"Authorization": f"Bearer {admin}"}) as http:
            enrolled = http.post(
                "/v1/devices",
                json={"device_id": "dev-1", "store_id": "S0001", "region": "north", "tags": []},
            )
            assert enrolled.status_code == 201, enrolled.text
            device_token = enrolled.json()["token"]
            # Telemetry is not the registry's: it answers 404 there.
            assert http.post("/v1/telemetry", json={"events": []}).status_code == 404
        maker = EventMaker("dev-1", "S0001")
        events = [maker.heartbeat(HOUR0), maker.inference(HOUR0, [4, 1])]
        auth = {"Authorization": f"Bearer {device_token}"}
        with httpx.Client(base_url=analytics, headers=auth) as http:
            answer = http.post("/v1/telemetry", json={"events": events})
            assert answer.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
            document = http.get("/openapi.json").json()
            assert "/v1/telemetry" in document["paths"]
            assert not any(re.match(r"^/v1/models", path) for path in document["paths"])
